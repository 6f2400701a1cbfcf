"""One reward worker process, seen from the process that started it: starting it, its pipes and
the frames read from them, why it ended, killing it, and letting go of a parent's workers after
``os.fork()``. The pool (``r1kit.rewards.pool``) decides when; this module only does it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import weakref
from pathlib import Path
from typing import Any

from r1kit.rewards.worker_protocol import (
    MEMORY_ENV,
    PARENT_ENV,
    PDEATHSIG_ENV,
    WORKER_ENV,
    read_frames,
)

# Popen objects of a parent's workers, kept alive in a forked child so that their finalizers never
# wait on (or warn about) processes that belong to the parent.
_INHERITED: list[subprocess.Popen] = []


class Worker:
    """Client side of one worker process: its pipes, read buffer and what it has already loaded."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.rfd = proc.stdout.fileno()
        self.wfd = proc.stdin.fileno()
        os.set_blocking(self.wfd, False)
        self.buf = bytearray()
        self.targets: set[str] = set()  # already imported in the worker
        self.sys_path: tuple[str, ...] | None = None  # last sys.path sent
        self.owner_pid = os.getpid()
        LIVE.add(self)

    def frames(self) -> list[Any]:
        """Complete frames in the buffer (the rest stays for the next read)."""
        return read_frames(self.buf)

    def exit_reason(self) -> str:
        code = self.proc.wait()
        if code < 0:
            try:
                return f"the worker was killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"the worker was killed by signal {-code}"
        return f"the worker exited with code {code}"

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass


LIVE: weakref.WeakSet[Worker] = weakref.WeakSet()  # every worker this process started


def start_worker(python: str, memory_limit_bytes: int | None) -> Worker:
    """Start ``python -m r1kit.rewards.verify_worker`` with this r1kit on its path."""
    env = dict(os.environ)
    env[WORKER_ENV] = "1"
    env[PARENT_ENV] = str(os.getpid())
    env[MEMORY_ENV] = str(memory_limit_bytes or 0)
    # Linux sends the parent-death signal when the *thread* that started the child ends, so
    # ask for it only from the main thread (which ends with the process).
    env[PDEATHSIG_ENV] = "1" if threading.current_thread() is threading.main_thread() else "0"
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    proc = subprocess.Popen(
        [python, "-m", "r1kit.rewards.verify_worker"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        close_fds=True,
    )
    return Worker(proc)


def forget_parent_workers() -> None:
    """In a forked child: drop the parent's workers (idle, or busy in a parent thread) without
    signalling them. Closing our copies of their pipes only affects this process, and keeps a
    worker's stdin from staying open after the parent closes it."""
    for w in list(LIVE):
        if w.owner_pid == os.getpid():
            continue
        for pipe in (w.proc.stdin, w.proc.stdout):
            try:
                pipe.close()
            except OSError:
                pass
        _INHERITED.append(w.proc)
        LIVE.discard(w)
