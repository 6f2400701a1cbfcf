"""Shared by the deadline tests: what a worker restart costs here, and timing work in threads.

How long replacing a killed reward worker takes on this machine, right now:

The deadline tests check "cut off within the deadline + 1 s". When a test's call follows a kill,
its wall time also holds the replacement worker's start (a Python process importing sympy), which
is the machine's speed, not the deadline's: the tests add this measured cost to their slack.
"""

from __future__ import annotations

import functools
import threading
import time


@functools.lru_cache(maxsize=1)
def worker_restart_seconds() -> float:
    from r1kit.rewards.pool import WorkerPool
    from r1kit.rewards.verifier import MathVerifier

    pool = WorkerPool(size=1)
    try:
        t0 = time.monotonic()
        assert MathVerifier(pool=pool).equivalent("$0.5$", "$\\frac{1}{2}$", 120.0)
        return time.monotonic() - t0
    finally:
        pool.close()


def run_in_threads(work, n: int, join_timeout_s: float = 30.0) -> float:
    """Run ``work(k)`` for k in range(n) on n threads at once; seconds until all joined."""
    threads = [threading.Thread(target=work, args=(k,)) for k in range(n)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=join_timeout_s)
    return time.monotonic() - t0


def timed(fn, *args, **kwargs):
    """``(fn(*args, **kwargs), seconds it took)``."""
    t0 = time.monotonic()
    out = fn(*args, **kwargs)
    return out, time.monotonic() - t0
