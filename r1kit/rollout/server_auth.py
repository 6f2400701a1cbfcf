"""A shared secret in front of every route of ``r1kit vllm-serve`` but ``/health``.

vLLM's own ``--api-key`` (``VLLM_API_KEY``) guards only its ``/v1``-style routes, not the
weight-update routes a trainer calls (``/collective_rpc``, ``/reset_prefix_cache``), so the
server loads this ASGI middleware (vLLM's ``--middleware``) instead. The secret comes from the
environment variable ``R1KIT_SERVER_SECRET`` or a file, never from the command line, where
``ps`` would show it; clients send it as ``Authorization: Bearer SECRET``.
"""

from __future__ import annotations

import hmac
import json
import os
from pathlib import Path

SECRET_ENV = "R1KIT_SERVER_SECRET"
OPEN_PATHS = ("/health",)  # readiness probes carry no secret


class SecretError(ValueError):
    pass


def read_secret(env_name: str = SECRET_ENV, file: str | None = None) -> str | None:
    """The shared secret from ``file`` (its first line) if given, else from ``env_name``; None if neither holds one."""
    if file:
        path = Path(file).expanduser()
        if not path.is_file():
            raise SecretError(f"secret file {path} does not exist")
        text = path.read_text().strip().splitlines()
        if not text or not text[0].strip():
            raise SecretError(f"secret file {path} is empty")
        return text[0].strip()
    value = os.environ.get(env_name, "").strip()
    return value or None


def authorization_header(secret: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"} if secret else {}


class SecretMiddleware:
    """ASGI middleware: HTTP 401 for any request but ``OPEN_PATHS`` without ``Bearer <secret>``."""

    def __init__(self, app, secret: str | None = None):
        self.app = app
        self.secret = (secret or os.environ.get(SECRET_ENV, "")).strip().encode()
        if not self.secret:
            raise SecretError(f"SecretMiddleware needs a secret: set {SECRET_ENV}")

    def _authorized(self, scope) -> bool:
        for name, value in scope.get("headers", []):
            if name.lower() == b"authorization" and value.startswith(b"Bearer "):
                return hmac.compare_digest(value[len(b"Bearer "):].strip(), self.secret)
        return False

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or scope.get("path") in OPEN_PATHS or self._authorized(scope):
            return await self.app(scope, receive, send)
        body = json.dumps({"error": "Unauthorized: this server needs its shared secret (Authorization: Bearer ...)"}).encode()
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
