"""`r1kit generate`: traces from a local tiny model and from an OpenAI-compatible endpoint (a fake
server in this process that can fail on demand: HTTP 500s, timeouts, dropped connections),
resumed after SIGKILL to the same final set."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from r1kit.cli import main
from r1kit.config import load_config
from r1kit.distill.generate import PAUSE_ENV, GenerateError, generate
from r1kit.distill.traces import read_traces
from r1kit.testing import run_until_then_sigkill, save_tiny

FIELDS = {"id", "prompt", "answer", "completion", "finish_reason", "completion_tokens", "teacher", "sampling",
          "sample_index", "question", "task"}


def sorted_rows(path):
    return sorted(read_traces(path), key=lambda r: (r["id"], r["sample_index"]))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("gen") / "tiny", "qwen2")


def local_args(tiny, out, *extra):
    return [f"output={out}", f"teacher.model.name_or_path={tiny}", "data.num_problems=4", "sampling.k=2",
            "sampling.max_new_tokens=6", "teacher.batch_size=2", "progress=false", *extra]


def test_local_teacher_rows_and_exact_restart_after_sigkill(tiny, tmp_path):
    ref = tmp_path / "ref.jsonl"
    generate(load_config(None, local_args(tiny, ref), stage="generate"))
    rows = read_traces(ref)
    assert len(rows) == 8 and {r["id"] for r in rows} == {f"arithmetic-12345-{i}" for i in range(4)}
    assert all(set(r) == FIELDS for r in rows)
    r = rows[0]
    assert r["completion"].startswith("<think>") and not r["prompt"].endswith("<think>")
    assert r["finish_reason"] in ("stop", "length") and 0 < r["completion_tokens"] <= 6
    assert r["sampling"] == {"k": 2, "temperature": 0.6, "top_p": 0.95, "top_k": 0, "max_new_tokens": 6}
    assert json.loads((tmp_path / "ref.meta.json").read_text())["teacher"] == {"backend": "hf", "model": str(tiny)}

    out = tmp_path / "killed.jsonl"
    cmd = [sys.executable, "-m", "r1kit.cli", "generate", *local_args(tiny, out)]
    env = dict(os.environ, **{PAUSE_ENV: "2"})
    assert run_until_then_sigkill(cmd, env, tmp_path / "log", "paused after 2 prompts") == -9
    assert len(read_traces(out)) == 4
    with open(out, "a") as f:
        f.write('{"id": "arithmetic-12345-2", "prom')  # as if killed mid-write
    assert main(["generate", *local_args(tiny, out)]) == 0
    assert sorted_rows(out) == sorted_rows(ref)
    # another sampling setting in the same output is an error; overwrite starts over
    assert main(["generate", *local_args(tiny, out, "sampling.temperature=1.0")]) == 2
    assert main(["generate", *local_args(tiny, out, "sampling.temperature=1.0", "overwrite=true")]) == 0
    assert len(read_traces(out)) == 8 and read_traces(out)[0]["sampling"]["temperature"] == 1.0


class FakeTeacher(ThreadingHTTPServer):
    """/v1/completions and /v1/chat/completions with answers made from the request's seed; faults
    per prompt text: ``fail`` (always that status), ``flaky`` (500, then a dropped connection, then
    a stall longer than the client's timeout, then an answer)."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict] = []
        self.headers_seen: list[dict] = []
        self.fail: dict[str, int] = {}
        self.flaky: dict[str, int] = {}
        self.lock = threading.Lock()

    def handle_error(self, request, client_address):
        pass  # the client gave up on a stalled request: writing its answer fails, as it should

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path == "/v1/models":
            return self._reply(200, {"object": "list", "data": [{"id": "listed-model", "object": "model"}]})
        return self._reply(404, {"error": "not found"})

    def do_POST(self):
        srv: FakeTeacher = self.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with srv.lock:
            srv.requests.append(body)
            srv.headers_seen.append(dict(self.headers))
        text = body.get("prompt") or json.dumps(body.get("messages"))
        key = next((k for k in srv.fail if k in text), None)
        if key is not None:
            return self._reply(srv.fail[key], {"error": "injected"})
        flaky = next((k for k in srv.flaky if k in text), None)
        if flaky is not None:
            with srv.lock:
                n = srv.flaky[flaky]
                srv.flaky[flaky] += 1
            if n == 0:
                return self._reply(500, {"error": "injected"})
            if n == 1:
                self.connection.close()  # dropped without a response
                return
            if n == 2:
                time.sleep(1.5)  # longer than the client's timeout
        seed = body["seed"]
        answer = f"<answer>{seed % 10}</answer>"
        usage = {"completion_tokens": 3 + seed % 5}
        if body.get("messages"):
            msg = {"role": "assistant", "content": answer, "reasoning_content": f"thinking {seed % 7}"}
            return self._reply(200, {"choices": [{"message": msg, "finish_reason": "stop"}], "usage": usage})
        finish = "length" if seed % 3 == 0 else "stop"
        return self._reply(200, {"choices": [{"text": f" step {seed % 7}</think> {answer}", "finish_reason": finish}],
                                 "usage": usage})

    def _reply(self, status, obj):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def teacher():
    srv = FakeTeacher()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def http_args(srv, out, *extra):
    return [f"output={out}", "teacher.backend=openai", f"teacher.url={srv.url}", "teacher.served_model=teach",
            "teacher.model.name_or_path=smollm2-135m-instruct", "template=r1zero", "data.num_problems=6",
            "sampling.k=3", "teacher.concurrency=4", "teacher.backoff_s=0.01", "teacher.timeout_s=1", "progress=false",
            *extra]


def test_endpoint_rows_seeds_key_from_the_environment(teacher, tmp_path, monkeypatch):
    monkeypatch.setenv("TEACH_KEY", "sk-secret-123")
    out = tmp_path / "t.jsonl"
    generate(load_config(None, http_args(teacher, out, "teacher.api_key_env=TEACH_KEY"), stage="generate"))
    rows = sorted_rows(out)
    assert len(rows) == 18 and all(set(r) == FIELDS for r in rows)
    assert len(teacher.requests) == 18 and {r["model"] for r in teacher.requests} == {"teach"}
    assert all(req["prompt"].endswith("Assistant: <think>") and req["n"] == 1 for req in teacher.requests)
    assert len({req["seed"] for req in teacher.requests}) == 18  # one seed per (prompt, trace)
    assert {h["Authorization"] for h in teacher.headers_seen} == {"Bearer sk-secret-123"}
    for f in tmp_path.iterdir():
        assert "sk-secret" not in f.read_text()
    r = rows[0]
    assert r["completion"].startswith("<think> step ") and r["teacher"] == f"teach@{teacher.url}"
    assert r["completion_tokens"] in range(3, 8) and r["finish_reason"] in ("stop", "length")
    assert not r["prompt"].endswith("<think>")
    # the same config against the same server: nothing is requested again
    before = len(teacher.requests)
    generate(load_config(None, http_args(teacher, out, "teacher.api_key_env=TEACH_KEY"), stage="generate"))
    assert len(teacher.requests) == before
    monkeypatch.delenv("TEACH_KEY")
    with pytest.raises(GenerateError, match="the environment variable TEACH_KEY is not set"):
        generate(load_config(None, http_args(teacher, tmp_path / "u.jsonl", "teacher.api_key_env=TEACH_KEY"),
                             stage="generate"))


def test_transient_faults_are_retried(teacher, tmp_path):
    teacher.flaky = {_questions(6)[0]: 0}  # that prompt fails three ways, then is answered
    out = tmp_path / "t.jsonl"
    generate(load_config(None, http_args(teacher, out, "teacher.retries=4", "sampling.k=1"), stage="generate"))
    assert len(read_traces(out)) == 6
    assert list(teacher.flaky.values()) == [4]  # 500, dropped, timed out, answered


def test_a_failing_endpoint_names_url_and_status_and_keeps_finished_rows(teacher, tmp_path, capsys):
    bad = _questions(6)[-1]
    teacher.fail = {bad: 503}
    out = tmp_path / "t.jsonl"
    assert main(["generate", *http_args(teacher, out, "teacher.retries=2", "teacher.concurrency=1")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"r1kit: error: teacher {teacher.url}/completions: HTTP 503") and "after 2 retries" in err
    assert sum(bad in r["prompt"] for r in teacher.requests) == 3  # the first try and two retries
    rows = read_traces(out)
    assert len(rows) == 15 and all(bad not in r["prompt"] for r in rows)  # the 5 finished prompts, whole
    teacher.fail = {bad: 400}  # a bad request is not retried
    n = len(teacher.requests)
    assert main(["generate", *http_args(teacher, out, "teacher.retries=2", "teacher.concurrency=1")]) == 2
    assert "HTTP 400" in capsys.readouterr().err and len(teacher.requests) == n + 1
    teacher.fail = {}
    assert main(["generate", *http_args(teacher, out)]) == 0
    assert len(read_traces(out)) == 18


def test_restart_after_sigkill_gives_the_uninterrupted_set(teacher, tmp_path):
    ref = tmp_path / "ref.jsonl"
    generate(load_config(None, http_args(teacher, ref), stage="generate"))
    out = tmp_path / "killed.jsonl"
    cmd = [sys.executable, "-m", "r1kit.cli", "generate", *http_args(teacher, out)]
    assert run_until_then_sigkill(cmd, dict(os.environ, **{PAUSE_ENV: "2"}), tmp_path / "log", "paused after 2 prompts") == -9
    assert 6 <= len(read_traces(out)) < 18
    generate(load_config(None, http_args(teacher, out), stage="generate"))
    assert sorted_rows(out) == sorted_rows(ref)


def test_chat_api_sends_messages_and_keeps_the_reasoning(teacher, tmp_path):
    out = tmp_path / "t.jsonl"
    generate(load_config(None, http_args(teacher, out, "teacher.api=chat", "system_prompt=Be careful.",
                                         "teacher.served_model=null"), stage="generate"))
    req = teacher.requests[0]
    assert req["model"] == "listed-model"  # no served_model: the first one the endpoint lists
    assert req["messages"][0] == {"role": "system", "content": "Be careful."} and req["messages"][1]["role"] == "user"
    row = read_traces(out)[0]
    assert isinstance(row["prompt"], list) and row["prompt"][0]["content"] == "Be careful."
    assert row["completion"].startswith("<think>thinking ") and "</think> <answer>" in row["completion"]


def _questions(n):
    from r1kit.config import EvalDatasetSpec
    from r1kit.eval.benchmarks import load_benchmark

    return [p["question"] for p in load_benchmark(EvalDatasetSpec(name="arithmetic", num_problems=n)).problems]
