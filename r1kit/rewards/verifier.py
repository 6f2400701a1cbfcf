"""Math answer comparison behind a process boundary, so a sympy call that never ends costs a
timeout, not a run.

``math_verify`` guards its own calls with ``signal.alarm``, which only works on the main thread,
and with the alarm off nothing stops ``parse``/``verify`` on answers like ``2^{2^{40}}`` or
``\\binom{10^9}{5\\cdot 10^5}`` (both hang sympy). So ``r1kit.rewards.equivalence.verify_pair``
runs in the shared worker pool (``r1kit.rewards.pool``): each comparison has a wall-clock deadline,
and a worker that runs past it is killed and replaced; the comparison counts as not equal and as a
timeout. A worker that crashes (or ends in MemoryError under its memory cap) counts as an error.

Inside a pool worker (a reward function that the pool runs calls ``answers_match``) the
comparison runs in-process: that worker is already under a deadline, and a pool inside a pool
would only multiply processes.
"""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import Iterable

from r1kit.rewards.pool import (
    DEFAULT_BATCH_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    ERROR,
    OK,
    TIMEOUT,
    WorkerPool,
    describe_exception,
    get_pool,
    in_worker,
    report,
    resolve_target,
)

logger = logging.getLogger(__name__)

VERIFY_TARGET = "r1kit.rewards.equivalence:verify_pair"

__all__ = ["DEFAULT_BATCH_TIMEOUT_S", "DEFAULT_TIMEOUT_S", "MathVerifier", "VERIFIER", "VERIFY_TARGET"]


class MathVerifier:
    """``equivalent(gold, prediction, timeout_s) -> bool`` through the worker pool.

    ``target`` is the comparison run in the workers (``module:qualname``, called as
    ``fn(gold, prediction)``); ``pool`` defaults to the process-wide pool. ``timeouts`` and
    ``errors`` count comparisons cut off or crashed since creation (thread-safe; for metrics).
    """

    def __init__(self, pool: WorkerPool | None = None, target: str = VERIFY_TARGET) -> None:
        self._pool = pool
        self.target = target
        self._lock = threading.Lock()
        self._timeouts = 0
        self._errors = 0
        _VERIFIERS.add(self)

    @property
    def pool(self) -> WorkerPool:
        return self._pool or get_pool()

    @property
    def timeouts(self) -> int:
        with self._lock:
            return self._timeouts

    @property
    def errors(self) -> int:
        with self._lock:
            return self._errors

    def equivalent(self, gold: str, prediction: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
        """The comparison's answer; False when it fails or takes longer than ``timeout_s``."""
        return self.equivalent_many([(gold, prediction)], timeout_s, batch_timeout_s=None)[0]

    def equivalent_many(
        self,
        pairs: Iterable[tuple[str, str]],
        timeout_s: float = DEFAULT_TIMEOUT_S,
        batch_timeout_s: float | None = DEFAULT_BATCH_TIMEOUT_S,
    ) -> list[bool]:
        """``equivalent`` for each ``(gold, prediction)``, in parallel on the pool's workers.

        Each comparison may take ``timeout_s``; all of them together ``batch_timeout_s`` (None:
        no batch limit beyond the per-answer one and the worker start-up). Identical pairs are
        compared once.
        """
        pairs = [(str(g), str(p)) for g, p in pairs]
        unique = list(dict.fromkeys(pairs))
        answers: dict[tuple[str, str], bool] = {}
        failed: list[tuple[str, str, tuple[str, str]]] = []  # (status, message, pair)
        if in_worker():
            fn = resolve_target(self.target)
            for pair in unique:
                try:
                    answers[pair] = bool(fn(*pair))
                except Exception as e:  # noqa: BLE001 - MemoryError, RecursionError, sympy internals
                    answers[pair] = False
                    failed.append((ERROR, describe_exception(e), pair))
        else:
            pool = self.pool
            if batch_timeout_s is None:
                # Only the per-answer deadline, plus starting a worker and importing sympy.
                rounds = -(-len(unique) // pool.size)
                batch_timeout_s = timeout_s * rounds + pool.import_timeout_s
            calls = [(pair, {}) for pair in unique]
            target = ("r1kit.rewards.verifier:load_comparison", (self.target,))
            results = pool.map(target, calls, timeout_s=timeout_s, batch_timeout_s=batch_timeout_s)
            for pair, res in zip(unique, results):
                answers[pair] = res.status == OK and bool(res.value)
                if res.status != OK:
                    failed.append((res.status, res.error or "", pair))
        if failed:
            self._record(failed, timeout_s)
        return [answers[pair] for pair in pairs]

    def _record(self, failed: list[tuple[str, str, tuple[str, str]]], timeout_s: float) -> None:
        timeouts = [pair for status, _, pair in failed if status == TIMEOUT]
        errors = [(message, pair) for status, message, pair in failed if status != TIMEOUT]
        with self._lock:
            self._timeouts += len(timeouts)
            self._errors += len(errors)
        for _ in errors:
            report(ERROR)  # inside a worker: tell the pool's caller (the scorer) about it
        if timeouts:
            logger.warning(
                "%d math comparison(s) took longer than %.1fs (e.g. %r); scored as wrong",
                len(timeouts), timeout_s, timeouts[0][1][:80],
            )
        for message, pair in errors[:1]:
            logger.warning("%d math comparison(s) failed (e.g. %s on %r); scored as wrong", len(errors), message, pair[1][:80])


# Comparisons that make sympy import and build what the first real answers will need.
_WARM_UP_PAIRS = [("$\\frac{1}{2}$", "$0.5$"), ("\\sqrt{12}", "2\\sqrt{3}"), ("$x^2+1$", "$1+x^2$")]


def warm_up() -> None:
    """Import math-verify and sympy and run a few comparisons (~0.5 s, once per worker), so
    that no answer's deadline is spent on imports; an install that cannot compare raises here."""
    from r1kit.rewards.equivalence import verify_pair

    logging.getLogger("math_verify").setLevel(logging.ERROR)
    for gold, prediction in _WARM_UP_PAIRS:
        verify_pair(gold, prediction)


def load_comparison(target: str):
    """Worker side: the comparison ``target``, warmed up when it is the default one (this runs as
    the worker's import step, charged to its start-up rather than to an answer's deadline)."""
    fn = resolve_target(target)
    if target == VERIFY_TARGET:
        warm_up()
    return fn


_VERIFIERS: "weakref.WeakSet[MathVerifier]" = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for verifier in list(_VERIFIERS):
        verifier._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork_in_child)

VERIFIER = MathVerifier()
