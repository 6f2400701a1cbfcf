"""A reward worker process: ``python -m r1kit.rewards.verify_worker``, started by
``r1kit.rewards.pool.WorkerPool`` (never imported by the training process).

Reads length-prefixed pickled requests on stdin, runs ``module:qualname(*args, **kwargs)`` and
writes the answer to (a private copy of) stdout; see ``r1kit.rewards.worker_protocol`` for the frames. It stops
when stdin closes, when its parent is gone, or when the pool kills it at a deadline.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import sys
import threading
import time

from r1kit.rewards.worker_protocol import (
    HEADER,
    MEMORY_ENV,
    PARENT_ENV,
    PDEATHSIG_ENV,
    describe_exception,
    load_target,
    take_events,
    target_key,
    write_frame,
)

# Exceptions after which the process is not worth keeping: it answers, then exits, and the pool
# starts a fresh one (a fragmented heap, a half-built module, a blown C stack).
_RETIRE = (MemoryError, RecursionError, SystemExit)


def _limit_memory() -> None:
    extra = int(os.environ.get(MEMORY_ENV) or 0)
    if extra <= 0:
        return
    try:
        import resource

        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        limit = mapped + extra
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    except (ImportError, OSError, ValueError):
        pass  # not Linux: run without the cap


def _follow_parent() -> None:
    """Exit when the training process is gone, even if it died without closing our stdin."""
    parent = int(os.environ.get(PARENT_ENV) or os.getppid())
    if os.environ.get(PDEATHSIG_ENV) == "1" and sys.platform.startswith("linux"):
        # Also covers a call stuck in C code that holds the GIL (the watcher thread cannot run).
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="r1kit-parent-watch", daemon=True).start()


def _read_exact(stream, size: int) -> bytes | None:
    data = stream.read(size)
    if len(data) < size:
        return None  # the pool closed our stdin: it is done with us
    return data


def serve() -> None:
    # Ctrl-C in the terminal reaches the whole process group; the pool decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _follow_parent()
    _limit_memory()
    # The worker is the timeout, so math-verify's signal-based one stays off (and quiet about it).
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    # The protocol owns the real stdin/stdout; what reward code prints goes to stderr and what it
    # reads comes from /dev/null.
    requests = os.fdopen(os.dup(sys.stdin.fileno()), "rb")
    out = os.dup(sys.stdout.fileno())
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, sys.stdin.fileno())
    os.close(devnull)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())

    functions: dict[str, object] = {}
    base_path = list(sys.path)
    while True:
        header = _read_exact(requests, HEADER.size)
        if header is None:
            return
        body = _read_exact(requests, int.from_bytes(header, "big"))
        if body is None:
            return
        retire = False
        try:
            caller_path, target, origin, payload = pickle.loads(body)
            if caller_path is not None:
                sys.path[:] = list(caller_path) + [p for p in base_path if p not in caller_path]
            key = target_key(target)
            fn = functions.get(key)
            if fn is None:
                fn = functions[key] = load_target(target, origin)
                write_frame(out, ("imported",))
            args, kwargs = pickle.loads(payload)
            take_events()
            value = fn(*args, **kwargs)
            try:
                answer = pickle.dumps(("ok", value, take_events()), protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as e:  # noqa: BLE001
                answer = pickle.dumps(("error", f"the result cannot be pickled: {describe_exception(e)}", False))
        except BaseException as e:  # noqa: BLE001 - the reward's exception is the call's result
            retire = isinstance(e, _RETIRE)
            answer = pickle.dumps(("error", describe_exception(e), retire))
        write_frame(out, data=answer)
        if retire:
            os._exit(0)


if __name__ == "__main__":
    serve()
