"""The vllm-server client against a fake vLLM server on 127.0.0.1 (stdlib HTTP, no vLLM), plus
the vllm-serve command line, the vLLM import error and the new config keys."""

import argparse
import json
import os
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

import r1kit.rollout.vllm as vllm_mod
from r1kit.config import ConfigError, load_config
from r1kit.rollout.vllm import RolloutError, VLLMServerRollout, _find_key, import_vllm
from r1kit.rollout.vllm_serve import _is_loopback, add_arguments, server_argv, split_passthrough
from r1kit.rollout.weights import hf_weights
from r1kit.testing import tiny_model
from r1kit.types import Sample

MODEL_ID = "fake/tiny"


class FakeVLLM:
    """Just enough of vLLM's OpenAI server (dev mode) for the client.

    ``fail_next(n, code)`` answers the next n requests (any path) with ``code``;
    ``fail_next(n, 0)`` drops the connection without an answer instead. ``requests`` records
    (method, path, body) of every request, failed ones included.
    """

    def __init__(self, eos):
        self.eos = eos
        self.requests: list[tuple[str, str, object]] = []
        self.lock = threading.Lock()
        self._fail = 0
        self._fail_code = 503
        self.server_info = {"vllm_config": {"model_config": [{"dtype": "float32"}, {"logprobs_mode": "processed_logprobs"}]}}
        # completion scripts by choice index: (token ids, log-probs)
        self.script = [
            ([5, 6, eos], [-0.1, -0.2, -0.3]),  # stopped at EOS
            ([7, 8, 9], [-1.0, -1.5, -2.0]),  # ran into max_tokens
            ([eos], [-0.05]),  # EOS right away: empty text, not truncated
        ]
        self.order = [2, 0, 1]  # choices come back shuffled
        self.rpc_seen: dict = {}
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _send(self, code, obj=None, text=None):
                data = (text if text is not None else json.dumps(obj)).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                body = json.loads(raw) if raw else None
                with fake.lock:
                    fake.requests.append((method, self.path, body))
                    fail, code = fake._fail > 0, fake._fail_code
                    if fail:
                        fake._fail -= 1
                if fail:
                    if code == 0:  # connection dropped mid-request
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                        return
                    return self._send(code, text=f"fake failure {code}: try later" if code >= 500 else
                                      json.dumps({"message": "max_tokens is too large (fake detail)"}))
                fake.route(self, method, body)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
        self.thread.start()

    def fail_next(self, n, code=503):
        with self.lock:
            self._fail, self._fail_code = n, code

    def route(self, h, method, body):
        if method == "GET" and h.path == "/health":
            return h._send(200, text="")
        if method == "GET" and h.path == "/v1/models":
            return h._send(200, {"object": "list", "data": [{"id": MODEL_ID, "object": "model"}]})
        if method == "GET" and h.path.split("?")[0] == "/server_info":
            if self.server_info is None:
                return h._send(404, {"detail": "Not Found"})
            return h._send(200, self.server_info)
        if method == "POST" and h.path == "/v1/completions":
            if body.get("prompt_logprobs") is not None:
                ids = body["prompt"][0]
                plp = [None] + [{str(t): {"logprob": -0.5 * i, "rank": 1, "decoded_token": "x"}} for i, t in enumerate(ids[1:], 1)]
                return h._send(200, {"choices": [{"index": 0, "text": "", "token_ids": [3], "prompt_logprobs": plp}]})
            n = body["n"]
            choices = [
                {"index": i, "text": "(server text, ignored)", "token_ids": self.script[i][0],
                 "logprobs": {"token_logprobs": self.script[i][1], "tokens": [], "top_logprobs": None},
                 "finish_reason": "stop"}
                for i in [j for j in self.order if j < n]
            ]
            return h._send(200, {"id": "cmpl-1", "model": MODEL_ID, "choices": choices})
        if method == "POST" and h.path == "/collective_rpc":
            from safetensors.torch import load_file

            folder = Path(body["kwargs"]["weights_path"])
            self.rpc_seen = {
                "method": body["method"], "folder": folder, "files": sorted(os.listdir(folder)),
                "tensors": load_file(str(folder / "model.safetensors")),
            }
            return h._send(200, {"results": [None]})
        if method == "POST" and h.path == "/reset_prefix_cache":
            return h._send(200, text="")
        return h._send(404, {"detail": "Not Found"})

    def paths(self, method=None):
        return [p for m, p, _ in self.requests if method is None or m == method]

    def bodies(self, path):
        return [b for _, p, b in self.requests if p == path]

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def tied(tok):
    return tiny_model(tok, tie=True)


@pytest.fixture
def server(tok):
    s = FakeVLLM(tok.eos_token_id)
    yield s
    s.close()


@pytest.fixture
def sleeps(monkeypatch):
    """No real back-off waits; the waits asked for are recorded."""
    calls = []
    monkeypatch.setattr(vllm_mod.time, "sleep", lambda s: calls.append(s))
    return calls


def _cfg(url, *extra):
    return load_config(None, ["rollout.backend=vllm-server", f"rollout.url={url}", "rollout.group_size=3",
                              "rollout.max_new_tokens=3", "rollout.temperature=0.7", "rollout.top_p=0.9",
                              "rollout.top_k=5", *extra]).rollout


def _closed_port_url():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return f"http://127.0.0.1:{port}"


SAMPLES = [Sample("What is 3 + 4? <think>", "<think>"), Sample("Hi <think>", "<think>")]


# -- generate --------------------------------------------------------------------------------
def test_generate_builds_groups(tok, tied, server):
    client = VLLMServerRollout(tied, tok, _cfg(server.url + "/"))
    assert client.url == server.url and client.model_id == MODEL_ID
    assert client.logprobs_mode == "processed_logprobs"  # found nested inside a list
    groups = client.generate(SAMPLES)
    eos = tok.eos_token_id
    assert len(groups) == 2
    for g, s in zip(groups, SAMPLES):
        assert g.sample is s
        assert g.prompt_ids == tok(s.prompt)["input_ids"]
        assert g.completion_ids == [[5, 6, eos], [7, 8, 9], [eos]]  # sorted by index
        assert g.sampling_logps == [[-0.1, -0.2, -0.3], [-1.0, -1.5, -2.0], [-0.05]]
        assert g.truncated == [False, True, False]
        assert g.completions == [tok.decode([5, 6]), tok.decode([7, 8, 9]), ""]
        assert g.completions[0] and "<|im_end|>" not in g.completions[0]


def test_request_body(tok, tied, server):
    client = VLLMServerRollout(tied, tok, _cfg(server.url))
    client.generate(SAMPLES)
    bodies = server.bodies("/v1/completions")
    assert len(bodies) == 2  # one request per prompt, each with its own seed
    for b, s in zip(bodies, SAMPLES):
        assert b["model"] == MODEL_ID
        assert b["prompt"] == [tok(s.prompt)["input_ids"]]
        assert b["n"] == 3 and b["max_tokens"] == 3
        assert b["temperature"] == pytest.approx(0.7) and b["top_p"] == pytest.approx(0.9) and b["top_k"] == 5
        assert b["logprobs"] == 0
        assert isinstance(b["seed"], int) and 0 <= b["seed"] < 2**31
        assert b["stop_token_ids"] == [tok.eos_token_id]
        assert b["return_token_ids"] is True
    assert bodies[0]["seed"] != bodies[1]["seed"]


def test_greedy_asks_for_one_completion_and_repeats_it(tok, tied, server):
    # vLLM rejects n > 1 with temperature 0; greedy completions of a prompt are identical anyway
    client = VLLMServerRollout(tied, tok, _cfg(server.url, "rollout.temperature=0"))
    groups = client.generate(SAMPLES)
    assert [b["n"] for b in server.bodies("/v1/completions")] == [1, 1]
    eos = tok.eos_token_id
    for g in groups:
        assert g.completion_ids == [[5, 6, eos]] * 3
        assert g.sampling_logps == [[-0.1, -0.2, -0.3]] * 3 and g.truncated == [False] * 3


def test_seeds_follow_torch_rng(tok, tied, server):
    client = VLLMServerRollout(tied, tok, _cfg(server.url))
    torch.manual_seed(123)
    client.generate(SAMPLES)
    torch.manual_seed(123)
    client.generate(SAMPLES)
    torch.manual_seed(124)
    client.generate(SAMPLES)
    seeds = [b["seed"] for b in server.bodies("/v1/completions")]
    assert seeds[0:2] == seeds[2:4]
    assert seeds[4:6] != seeds[0:2]


def test_wrong_number_of_choices(tok, tied, server):
    client = VLLMServerRollout(tied, tok, _cfg(server.url))
    server.order = [0, 1]  # n=3 asked, 2 returned
    with pytest.raises(RolloutError, match="returned 2 completions, expected 3"):
        client.generate(SAMPLES[:1])


def test_prompt_logprobs(tok, tied, server):
    client = VLLMServerRollout(tied, tok, _cfg(server.url))
    assert client.prompt_logprobs([4, 7, 9, 11]) == [-0.5, -1.0, -1.5]
    b = server.bodies("/v1/completions")[-1]
    assert b["prompt"] == [[4, 7, 9, 11]] and b["n"] == 1 and b["max_tokens"] == 1
    assert b["prompt_logprobs"] == 0 and b["logprobs"] is None and b["temperature"] == 1.0


# -- retries and errors ------------------------------------------------------------------------
def test_503_then_success(tok, tied, server, sleeps):
    client = VLLMServerRollout(tied, tok, _cfg(server.url, "rollout.vllm.retries=2"))
    server.fail_next(2, 503)
    groups = client.generate(SAMPLES[:1])
    assert groups[0].completion_ids[0] == [5, 6, tok.eos_token_id]
    assert server.paths("POST").count("/v1/completions") == 3  # two failures, then the answer
    assert len(sleeps) == 2 and sleeps[0] > 0 and sleeps[1] > sleeps[0]  # growing back-off
    # the retried request is the same request (same seed)
    seeds = {b["seed"] for b in server.bodies("/v1/completions")}
    assert len(seeds) == 1


def test_dropped_connection_is_retried(tok, tied, server, sleeps):
    client = VLLMServerRollout(tied, tok, _cfg(server.url, "rollout.vllm.retries=1"))
    server.fail_next(1, 0)
    assert len(client.generate(SAMPLES[:1])[0].completion_ids) == 3
    assert server.paths("POST").count("/v1/completions") == 2


def test_health_503_while_loading(tok, tied, server, sleeps):
    server.fail_next(2, 503)  # the server is still loading the model
    client = VLLMServerRollout(tied, tok, _cfg(server.url, "rollout.vllm.connect_timeout_s=30"))
    assert client.model_id == MODEL_ID
    assert server.paths()[:3] == ["/health"] * 3


def test_503_beyond_retries(tok, tied, server, sleeps):
    client = VLLMServerRollout(tied, tok, _cfg(server.url, "rollout.vllm.retries=1"))
    server.fail_next(5, 503)
    with pytest.raises(RolloutError) as e:
        client.generate(SAMPLES[:1])
    msg = str(e.value)
    assert server.url in msg and "/v1/completions" in msg and "2 tries" in msg and "503" in msg
    assert server.paths("POST").count("/v1/completions") == 2


def test_400_fails_at_once_with_detail(tok, tied, server, sleeps):
    client = VLLMServerRollout(tied, tok, _cfg(server.url, "rollout.vllm.retries=3"))
    server.fail_next(1, 400)
    with pytest.raises(RolloutError) as e:
        client.generate(SAMPLES[:1])
    msg = str(e.value)
    assert "HTTP 400" in msg and "max_tokens is too large (fake detail)" in msg and server.url in msg
    assert server.paths("POST").count("/v1/completions") == 1 and sleeps == []


def test_unreachable_url(tok, tied):
    url = _closed_port_url()
    t0 = time.monotonic()
    with pytest.raises(RolloutError) as e:
        VLLMServerRollout(tied, tok, _cfg(url, "rollout.vllm.connect_timeout_s=1"))
    assert time.monotonic() - t0 < 5
    assert url in str(e.value) and "r1kit vllm-serve" in str(e.value)


def test_server_without_server_info(tok, tied, server):
    server.server_info = None  # a plain `vllm serve` without VLLM_SERVER_DEV_MODE
    with pytest.raises(RolloutError, match="vllm-serve") as e:
        VLLMServerRollout(tied, tok, _cfg(server.url))
    assert server.url in str(e.value)


def test_raw_logprobs_server_rejected_with_temperature(tok, tied, server):
    server.server_info = {"model_config": {"logprobs_mode": "raw_logprobs"}}
    with pytest.raises(RolloutError, match="processed_logprobs"):
        VLLMServerRollout(tied, tok, _cfg(server.url))  # temperature 0.7
    client = VLLMServerRollout(tied, tok, _cfg(server.url, "rollout.temperature=1.0"))
    assert client.logprobs_mode == "raw_logprobs"
    # vLLM's /server_info only nests the config as JSON (not one string) when asked to
    assert any(path == "/server_info?config_format=json" for _, path, _ in server.requests)


def test_find_key():
    tree = {"a": [1, {"b": None}, {"c": {"logprobs_mode": "x"}}], "logprobs": 0}
    assert _find_key(tree, "logprobs_mode") == "x"
    assert _find_key(tree, "missing") is None
    assert _find_key({"k": 0}, "k") == 0


# -- weight sync -----------------------------------------------------------------------------
def test_sync_weights(tok, tied, server, tmp_path):
    client = VLLMServerRollout(tied, tok, _cfg(server.url, f"rollout.vllm.sync_dir={tmp_path}"))
    n_before = len(server.requests)
    client.sync_weights(tied)
    seen = server.rpc_seen
    assert seen["method"] == "reload_weights"
    assert seen["folder"].parent == tmp_path and seen["files"] == ["model.safetensors"]
    expected = dict(hf_weights(tied))
    assert "lm_head.weight" in expected
    assert set(seen["tensors"]) == set(expected)
    for n, t in expected.items():
        assert torch.equal(seen["tensors"][n], t), n
    assert not seen["folder"].exists() and list(tmp_path.iterdir()) == []  # cleaned up
    assert server.paths()[n_before:] == ["/collective_rpc", "/reset_prefix_cache"]
    assert client.last_sync_s > 0


def test_sync_weights_cleans_up_on_failure(tok, tied, server, tmp_path, sleeps):
    client = VLLMServerRollout(tied, tok, _cfg(server.url, f"rollout.vllm.sync_dir={tmp_path}", "rollout.vllm.retries=0"))
    server.fail_next(1, 500)
    with pytest.raises(RolloutError, match="collective_rpc") as e:
        client.sync_weights(tied)
    assert list(tmp_path.iterdir()) == []
    # a server that answers with an error is not reported as down; the likely cause is named
    assert "500" in str(e.value) and "is it running" not in str(e.value)
    assert "must run on this machine" in str(e.value) and "sync_dir" in str(e.value)


# -- import, vllm-serve, config ----------------------------------------------------------------
def test_import_vllm_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "WARNING")
    with pytest.raises(RolloutError) as e:
        import_vllm()
    assert "pip install" in str(e.value) and "r1kit[vllm" in str(e.value)
    assert "rollout.backend=vllm" in str(e.value)


def _serve_args(argv):
    p = argparse.ArgumentParser()
    add_arguments(p)
    ours, passthrough = split_passthrough(argv)
    args = p.parse_args(ours)
    args.vllm_args = passthrough
    return args


def _has(argv, *seq):
    return any(argv[i : i + len(seq)] == list(seq) for i in range(len(argv)))


def test_server_argv_cpu():
    args = _serve_args(["--port", "8123", "--host", "127.0.0.1", "tiny", "--", "--max-num-seqs", "4"])
    argv = server_argv(args, "/models/tiny", on_gpu=False)
    assert argv[:3] == [sys.executable, "-m", "vllm.entrypoints.openai.api_server"]
    assert _has(argv, "--model", "/models/tiny")
    assert _has(argv, "--dtype", "float32") and "--enforce-eager" in argv
    assert _has(argv, "--logprobs-mode", "processed_logprobs")
    assert _has(argv, "--kv-cache-memory-bytes", "1073741824")
    assert _has(argv, "--host", "127.0.0.1") and _has(argv, "--port", "8123")
    assert argv[-2:] == ["--max-num-seqs", "4"] and "--" not in argv
    assert "--gpu-memory-utilization" not in argv


def test_server_argv_gpu_and_options():
    args = _serve_args(["--dtype", "bfloat16", "--compile", "--kv-cache-gb", "2", "--max-model-len", "512", "tiny"])
    argv = server_argv(args, "/m", on_gpu=True)
    assert _has(argv, "--dtype", "bfloat16") and "--enforce-eager" not in argv
    assert _has(argv, "--kv-cache-memory-bytes", str(2 << 30)) and _has(argv, "--max-model-len", "512")
    assert _has(argv, "--gpu-memory-utilization", "0.9")
    plain = server_argv(_serve_args(["tiny"]), "/m", on_gpu=True)
    assert _has(plain, "--dtype", "auto") and "--kv-cache-memory-bytes" not in plain


def test_server_options_after_model(monkeypatch):
    # the usage r1kit's own error messages suggest: `r1kit vllm-serve MODEL --port PORT`
    args = _serve_args(["tiny", "--port", "8123", "--kv-cache-gb", "2"])
    assert args.port == 8123 and args.kv_cache_gb == 2.0 and args.vllm_args == []
    # through the CLI too: options after MODEL, vLLM's after `--`
    import r1kit.rollout.vllm_serve as vs
    from r1kit.cli import main

    seen = {}
    monkeypatch.setattr(vs, "serve", lambda a: seen.update(vars(a)))
    assert main(["vllm-serve", "tiny", "--port", "8124", "--", "--max-num-seqs", "4"]) == 0
    assert seen["port"] == 8124 and seen["model"] == "tiny" and seen["vllm_args"] == ["--max-num-seqs", "4"]
    # an unknown option for r1kit (before `--`) is a usage error, not silently passed on
    assert main(["vllm-serve", "tiny", "--max-num-seqs", "4"]) == 2


def test_port_in_use():
    from r1kit.rollout.vllm_serve import _port_in_use

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert _port_in_use("127.0.0.1", port)
    assert not _port_in_use("127.0.0.1", port)


def test_not_a_vllm_server(tok, tied, tmp_path):
    # a plain HTTP server answers /health with 404: say so, do not call it unreachable
    import functools
    import http.server

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        t0 = time.monotonic()
        with pytest.raises(RolloutError) as e:
            VLLMServerRollout(tied, tok, _cfg(url, "rollout.vllm.connect_timeout_s=30"))
        assert time.monotonic() - t0 < 5  # no waiting for the timeout
        assert "HTTP 404" in str(e.value) and "not a vLLM server" in str(e.value) and url in str(e.value)
    finally:
        httpd.shutdown()


def test_is_loopback():
    assert all(_is_loopback(h) for h in ("localhost", "127.0.0.1", "127.1.2.3", "::1"))
    assert not any(_is_loopback(h) for h in ("0.0.0.0", "10.0.0.1", "example.com", "::"))


def test_cli_vllm_serve_help(capsys):
    from r1kit.cli import main

    assert main(["vllm-serve", "--help"]) == 0
    out = capsys.readouterr().out
    assert "vllm-serve" in out and "--kv-cache-gb" in out and "model" in out


def test_config_vllm_keys():
    r = load_config(None, ["rollout.backend=vllm-server", "rollout.url=http://10.0.0.2:8000",
                           "rollout.vllm.retries=5", "rollout.vllm.sync_dir=/tmp/x",
                           "grpo.is_correction=sequence_mask", "grpo.is_cap=3"])
    assert r.rollout.backend == "vllm-server" and r.rollout.vllm.retries == 5 and r.rollout.vllm.sync_dir == "/tmp/x"
    assert r.grpo.is_correction == "sequence_mask" and r.grpo.is_cap == 3.0
    d = load_config(None, [])
    assert d.rollout.backend == "hf" and d.grpo.is_correction == "token_truncate" and d.grpo.is_cap == 2.0
    assert load_config(None, ["rollout.backend=vllm"]).rollout.backend == "vllm"


@pytest.mark.parametrize("overrides, key", [
    (["rollout.backend=vllm-server", "rollout.url=localhost:8000"], "rollout.url"),
    (["grpo.is_correction=bogus"], "grpo.is_correction"),
    (["rollout.backend=tgi"], "rollout.backend"),
    (["grpo.is_cap=0"], "grpo.is_cap"),
    (["rollout.vllm.retries=-1"], "rollout.vllm.retries"),
    (["rollout.vllm.connect_timeout_s=0"], "rollout.vllm.connect_timeout_s"),
    (["rollout.vllm.gpu_memory_utilization=1.5"], "rollout.vllm.gpu_memory_utilization"),
    (["rollout.vllm.bogus=1"], "rollout.vllm.bogus"),
])
def test_config_errors(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(None, overrides)
