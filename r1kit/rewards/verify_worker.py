"""The math-verify worker process started by ``r1kit.rewards.verifier`` (not imported by r1kit)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys

# Address space the worker may add to what it has mapped at start: a runaway big integer then
# ends in MemoryError (-> False) instead of swapping the machine.
WORKER_EXTRA_MEMORY_BYTES = 4 * 1024**3


def _limit_memory() -> None:
    try:
        import resource

        with open("/proc/self/statm") as f:
            mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        limit = mapped + WORKER_EXTRA_MEMORY_BYTES
        resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    except (ImportError, OSError, ValueError):
        pass  # not Linux, or a hard limit already lower: run without the cap


def serve() -> None:
    """Worker loop: one JSON request per stdin line, one ``{"ok": bool}`` per stdout line.

    Exits when stdin closes (the client went away or killed it).
    """
    # Ctrl-C in the terminal reaches the whole process group; the client decides when we stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _limit_memory()
    from r1kit.rewards.equivalence import verify_pair

    # The worker is the timeout, so math-verify's signal-based one stays off (and quiet about it).
    logging.getLogger("math_verify").setLevel(logging.ERROR)

    # The protocol owns the real stdout; anything a library prints goes to stderr instead.
    out = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    # Prove the comparison works before taking requests, so a broken install is loud, not
    # a silent stream of "wrong answer".
    try:
        ready = verify_pair("$0.5$", "$\\frac{1}{2}$")
    except Exception:  # noqa: BLE001
        ready = False
    out.write(json.dumps({"ready": ready}) + "\n")
    out.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            ok = verify_pair(request["gold"], request["pred"])
        except Exception:  # noqa: BLE001 - MemoryError, RecursionError, sympy internals
            ok = False
        out.write(json.dumps({"ok": ok}) + "\n")
        out.flush()


if __name__ == "__main__":
    serve()
