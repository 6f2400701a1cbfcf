"""Asynchronous (off-policy) rollout: generation for the next steps runs while the learner updates.

``rollout.async_steps = K``. Step j's batch is generated from the weights of update
``max(0, j - 1 - K)``, on a fixed schedule (so a run is reproducible and resumes exactly):

    step k:  submit generation for steps up to k + K   (engine at version k - 1)
             take step k's batch                        (waits if it is not ready)
             learner update -> version k                (the generation thread runs meanwhile)
             settle: wait for every submitted generation, then sync the engine to version k

A sample trained at step k was generated ``staleness = (k - 1) - version`` updates ago, at most K.
The weight update waits for the generation in flight (``settle``), so an engine never changes its
weights mid-generation. K = 0 generates in the calling thread, at the moment the step needs it:
the synchronous loop, call for call.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any


@dataclass
class Generated:
    """One step's generated and scored batch: the ``produce`` result, the policy version it was
    generated with (learner updates applied to the generator's weights), and its own seconds."""

    result: Any
    version: int
    seconds: float


def staleness(step: int, version: int) -> int:
    """Updates between the weights a batch was generated with and the learner training on it."""
    return (step - 1) - version


class RolloutAhead:
    """Generates step j's batch with ``produce(j, version)``, up to ``ahead`` steps before the
    learner needs it, in one background thread (one generation at a time, in step order)."""

    def __init__(self, produce: Callable[[int, int], Any], ahead: int, last_step: int):
        if ahead < 0:
            raise ValueError(f"ahead must be >= 0, got {ahead}")
        self.produce, self.ahead, self.last_step = produce, ahead, last_step
        self._futures: dict[int, Future] = {}
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="r1kit-rollout") if ahead else None
        self.wait_s = 0.0  # seconds the last take() spent waiting for its batch

    def _timed(self, step: int, version: int) -> Generated:
        t0 = time.perf_counter()
        result = self.produce(step, version)
        return Generated(result, version, time.perf_counter() - t0)

    def take(self, step: int) -> Generated:
        """Step ``step``'s batch; first submits the generations due, with the generator at
        version ``step - 1`` (every earlier update synced)."""
        version = step - 1
        t0 = time.perf_counter()
        if self._pool is None:
            out = self._timed(step, version)
        else:
            for j in range(step, min(step + self.ahead, self.last_step) + 1):
                if j not in self._futures:
                    self._futures[j] = self._pool.submit(self._timed, j, version)
            out = self._futures.pop(step).result()  # re-raises what the generation raised
        self.wait_s = time.perf_counter() - t0
        return out

    def settle(self) -> None:
        """Wait for every submitted generation (before the generator's weights change)."""
        for f in list(self._futures.values()):
            f.result()

    def pending(self) -> dict[int, Generated]:
        """The generated batches not yet taken, by step (for a checkpoint; waits for them)."""
        return {j: f.result() for j, f in sorted(self._futures.items())}

    def restore(self, pending: dict[int, Generated]) -> None:
        """Batches a checkpoint saved with ``pending``: taken before anything new is generated."""
        for j, gen in pending.items():
            f: Future = Future()
            f.set_result(gen)
            self._futures[j] = f

    def close(self) -> None:
        """Stop: a generation in flight finishes (it cannot be interrupted), queued ones are dropped."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
