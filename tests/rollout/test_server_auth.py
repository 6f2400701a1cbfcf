"""The shared secret of `r1kit vllm-serve`: the ASGI check in front of every route but /health,
where the secret comes from, and the refusal to listen beyond loopback without one."""

import argparse
import asyncio

import pytest

from r1kit.rollout.server_auth import SECRET_ENV, SecretError, SecretMiddleware, authorization_header, read_secret
from r1kit.rollout.vllm_serve import add_arguments, server_argv


async def _app(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def request(mw, path, headers=()):
    sent = []

    async def send(msg):
        sent.append(msg)

    async def receive():
        return {"type": "http.request", "body": b""}

    scope = {"type": "http", "method": "POST", "path": path, "headers": [(k.encode(), v.encode()) for k, v in headers]}
    asyncio.run(mw(scope, receive, send))
    return sent[0]["status"], sent[-1]["body"]


def test_requests_without_the_secret_are_refused_and_with_it_pass():
    mw = SecretMiddleware(_app, secret="right")
    for path in ("/collective_rpc", "/reset_prefix_cache", "/v1/completions", "/v1/models"):
        assert request(mw, path)[0] == 401, path
        assert request(mw, path, [("Authorization", "Bearer wrong")])[0] == 401
        assert request(mw, path, [("Authorization", "right")])[0] == 401  # not a Bearer token
        assert request(mw, path, [("authorization", "Bearer right")]) == (200, b"ok")
    assert request(mw, "/health") == (200, b"ok")  # readiness probes carry no secret
    assert b"shared secret" in request(mw, "/v1/completions")[1]


def test_the_secret_comes_from_the_environment_or_a_file(monkeypatch, tmp_path):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    assert read_secret() is None
    with pytest.raises(SecretError, match="needs a secret"):
        SecretMiddleware(_app)
    monkeypatch.setenv(SECRET_ENV, " from-env \n")
    assert read_secret() == "from-env" and SecretMiddleware(_app).secret == b"from-env"
    f = tmp_path / "secret"
    f.write_text("from-file\n")
    assert read_secret(SECRET_ENV, str(f)) == "from-file"  # a file wins over the environment
    f.write_text("\n")
    with pytest.raises(SecretError, match="is empty"):
        read_secret(SECRET_ENV, str(f))
    with pytest.raises(SecretError, match="does not exist"):
        read_secret(SECRET_ENV, str(tmp_path / "missing"))
    assert authorization_header("x") == {"Authorization": "Bearer x"} and authorization_header(None) == {}


def _args(argv):
    p = argparse.ArgumentParser()
    add_arguments(p)
    return p.parse_args(argv)


def test_serving_beyond_loopback_needs_a_secret(monkeypatch, capsys):
    from r1kit.cli import main

    monkeypatch.delenv(SECRET_ENV, raising=False)
    assert main(["vllm-serve", "tiny", "--host", "0.0.0.0", "--port", "8999"]) != 0
    err = capsys.readouterr().err
    assert "--host 0.0.0.0 is reachable from other machines" in err and SECRET_ENV in err
    # with a secret the middleware is on the command line; the secret itself never is
    argv = server_argv(_args(["tiny", "--host", "0.0.0.0"]), "/m", on_gpu=False, guarded=True)
    assert argv[argv.index("--middleware") + 1] == "r1kit.rollout.server_auth.SecretMiddleware"
    assert "--middleware" not in server_argv(_args(["tiny"]), "/m", on_gpu=False)


def test_the_client_names_the_missing_secret(monkeypatch):
    """A server that answers 401: one error saying which setting carries the secret."""
    import http.server
    import threading

    from r1kit.config import load_config
    from r1kit.rollout.vllm import RolloutError, VLLMServerRollout
    from r1kit.testing import tiny_model, tiny_tokenizer

    seen = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            seen.append(self.headers.get("Authorization"))
            self.send_response(200 if self.path == "/health" else 401)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *a):
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("MY_SECRET", "abc")
        cfg = load_config(None, ["rollout.backend=vllm-server", f"rollout.url=http://127.0.0.1:{httpd.server_port}",
                                 "rollout.vllm.secret_env=MY_SECRET"]).rollout
        tok = tiny_tokenizer()
        with pytest.raises(RolloutError, match=r"HTTP 401.*\$MY_SECRET"):
            VLLMServerRollout(tiny_model(tok), tok, cfg)
        assert seen[-1] == "Bearer abc"
    finally:
        httpd.shutdown()
        httpd.server_close()
