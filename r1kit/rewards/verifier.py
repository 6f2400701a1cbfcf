"""math-verify behind a process boundary, so a sympy call that never ends costs a timeout, not a run.

``math_verify`` guards its own calls with ``signal.alarm``, which only works on the main thread,
and with the alarm off nothing stops ``parse``/``verify`` on answers like ``2^{2^{40}}`` or
``\\binom{10^9}{5\\cdot 10^5}`` (both hang sympy). So the comparison runs in one long-lived worker
subprocess (``python -m r1kit.rewards.verify_worker``) speaking JSON lines over stdin/stdout; the client
waits at most ``timeout_s`` for an answer, and on a timeout kills the worker, answers False and
starts a fresh worker for the next call. The worker's address space is capped so a runaway big
integer ends in MemoryError (-> False) instead of swapping the machine.

The client is thread-safe (one request in flight at a time) and does not use ``multiprocessing``,
so it never re-imports the user's ``__main__``.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import select
import subprocess
import sys
import threading
import time
from pathlib import Path

logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
# Starting Python and importing sympy is not part of any one comparison's budget.
STARTUP_TIMEOUT_S = 120.0


class MathVerifier:
    """Client of the worker: ``equivalent(gold, prediction, timeout_s) -> bool``."""

    def __init__(self, command: list[str] | None = None) -> None:
        self.command = command or [sys.executable, "-m", "r1kit.rewards.verify_worker"]
        self._lock = threading.Lock()
        self._proc: subprocess.Popen | None = None
        self._owner_pid = os.getpid()
        # Counters for metrics and tests: comparisons that timed out, worker processes started.
        self.timeouts = 0
        self.starts = 0

    def equivalent(self, gold: str, prediction: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
        """math-verify's ``verify(parse(gold), parse(prediction))``; False on error or timeout."""
        request = json.dumps({"gold": gold, "pred": prediction}) + "\n"
        with self._lock:
            try:
                proc = self._ensure_started()
                proc.stdin.write(request.encode())
                proc.stdin.flush()
                line = self._read_line(proc, timeout_s)
            except (OSError, ValueError, TimeoutError) as e:
                if isinstance(e, TimeoutError):
                    self.timeouts += 1
                    logger.warning("math-verify took longer than %.1fs on %r; scored as wrong",
                                   timeout_s, prediction[:80])
                else:
                    logger.warning("math-verify worker failed (%s); scored as wrong", e)
                self._kill()
                return False
        try:
            return bool(json.loads(line)["ok"])
        except (ValueError, KeyError, TypeError):
            return False

    def close(self) -> None:
        with self._lock:
            self._kill()

    def _ensure_started(self) -> subprocess.Popen:
        if self._owner_pid != os.getpid():
            # A forked child inherited the parent's pipes: leave that worker alone, start its own.
            self._proc, self._owner_pid = None, os.getpid()
        if self._proc is not None and self._proc.poll() is None:
            return self._proc
        root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        self.starts += 1
        self._proc = subprocess.Popen(
            self.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        ready = self._read_line(self._proc, STARTUP_TIMEOUT_S)
        if json.loads(ready).get("ready") is not True:
            raise OSError(f"the math-verify worker did not start properly: {ready.strip()!r}")
        return self._proc

    @staticmethod
    def _read_line(proc: subprocess.Popen, timeout_s: float) -> str:
        # One request, one response line: after a readline nothing is left buffered, so select()
        # on the pipe tells the truth about whether the next line has arrived.
        deadline = time.monotonic() + timeout_s
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            ready, _, _ = select.select([proc.stdout], [], [], left)
            if ready:
                line = proc.stdout.readline()
                if not line:
                    raise OSError(f"math-verify worker exited with code {proc.wait()}")
                return line.decode()

    def _kill(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or self._owner_pid != os.getpid():
            return
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


VERIFIER = MathVerifier()
atexit.register(VERIFIER.close)
