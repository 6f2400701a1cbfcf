"""A reused pool of worker processes that run reward code under hard wall-clock deadlines.

``WorkerPool.map("package.module:function", calls)`` runs ``function(*args, **kwargs)`` for each
``(args, kwargs)`` in ``calls`` on up to ``size`` worker processes and returns one ``Result`` per
call: ``("ok", value)``, ``("timeout", None)`` or ``("error", None)`` with a message. Each call has
its own deadline (``timeout_s``) and the whole map has one more (``batch_timeout_s``); a worker
that runs past a deadline is SIGKILLed and replaced, and so is one that dies (a segfault,
``os._exit``, the memory cap). Nothing here uses ``signal.alarm``, so it works from any thread,
and from several threads at once: they share the workers.

Why processes and not threads: a thread stuck in sympy (or in ``str()`` of a huge integer, which
holds the GIL) cannot be stopped; a process can. Why not ``multiprocessing``: its spawn mode
re-imports the user's ``__main__`` (a training script) in every worker, and its fork mode copies
the trainer (and any CUDA state) into the workers. Here a worker is a fresh
``python -m r1kit.rewards.verify_worker`` that imports only the module of the function it is asked
to run. Workers start on first use and stay up; they know what they are (``in_worker()``), so
code that would normally hand work to the pool runs it in-process inside a worker instead.

The frames the pool and a worker exchange, and what a target is: ``r1kit.rewards.worker_protocol``;
starting and killing one worker process: ``r1kit.rewards.worker_process``.
"""

from __future__ import annotations

import atexit
import logging
import os
import pickle
import select
import sys
import threading
import time
import weakref
from collections import deque
from typing import Any, Callable, Iterable, NamedTuple, Sequence

from r1kit.rewards.worker_process import Worker, forget_parent_workers, start_worker
from r1kit.rewards.worker_protocol import (  # noqa: F401  (in_worker, report, target_of: public here too)
    HEADER,
    describe_exception,
    in_worker,
    load_target,
    report,
    resolve_target,
    take_events,
    target_key,
    target_of,
)

logger = logging.getLogger(__name__)

SIZE_ENV = "R1KIT_REWARD_WORKERS"  # default pool size override

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_BATCH_TIMEOUT_S = 60.0
# Starting Python and importing a target (sympy: ~0.5 s, more on a loaded machine) is not part of
# any one call's budget; it is still bounded, by this and by the batch deadline.
DEFAULT_IMPORT_TIMEOUT_S = 60.0
# Address space a worker may add to what it maps at start: a runaway big integer then ends in
# MemoryError instead of swapping the machine. None: no cap.
DEFAULT_MEMORY_LIMIT_BYTES = 4 * 1024**3

# While a map has work queued but no free worker, how often it looks for one another thread freed.
_POLL_S = 0.02

OK, TIMEOUT, ERROR = "ok", "timeout", "error"
_DEAD, _STUCK = object(), object()  # why a request could not be sent


class Result(NamedTuple):
    """Outcome of one call: ``status`` is ``"ok"`` (``value`` is the return value), ``"timeout"``
    or ``"error"`` (``value`` is None and ``error`` says what happened)."""

    status: str
    value: Any = None
    error: str | None = None
    # What the called code reported through ``report()`` (e.g. "error": a verifier failure it
    # caught itself and scored as a wrong answer), so the caller can still count it.
    events: tuple[str, ...] = ()


def _origin_of(target: str | tuple[str, tuple]) -> str | None:
    name = target if isinstance(target, str) else target[0]
    module = sys.modules.get(name.partition(":")[0])
    origin = getattr(module, "__file__", None)
    return os.path.abspath(origin) if origin else None


def _caller_sys_path() -> tuple[str, ...]:
    # "" means "the current directory" to the caller; the worker may run elsewhere later.
    cwd = os.getcwd()
    return tuple(p if p else cwd for p in sys.path if isinstance(p, str))


class _Job:
    __slots__ = ("index", "worker", "deadline", "sent")

    def __init__(self, index: int, worker: Worker, deadline: float) -> None:
        self.index, self.worker, self.deadline = index, worker, deadline


_POOLS: "weakref.WeakSet[WorkerPool]" = weakref.WeakSet()


class WorkerPool:
    """Up to ``size`` reused worker processes; ``map``/``call`` with per-call and per-batch deadlines.

    ``size`` defaults to ``$R1KIT_REWARD_WORKERS`` or ``min(2, os.cpu_count())``. Thread-safe.
    After ``os.fork()`` the child starts with no workers and never touches the parent's.
    """

    def __init__(
        self,
        size: int | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        batch_timeout_s: float = DEFAULT_BATCH_TIMEOUT_S,
        import_timeout_s: float = DEFAULT_IMPORT_TIMEOUT_S,
        memory_limit_bytes: int | None = DEFAULT_MEMORY_LIMIT_BYTES,
        python: str | None = None,
    ) -> None:
        if size is None:
            size = int(os.environ.get(SIZE_ENV) or min(2, os.cpu_count() or 1))
        if size < 1:
            raise ValueError(f"WorkerPool: size must be >= 1, got {size}")
        self.size = size
        self.timeout_s = timeout_s
        self.batch_timeout_s = batch_timeout_s
        self.import_timeout_s = import_timeout_s
        self.memory_limit_bytes = memory_limit_bytes
        self.python = python or sys.executable
        # Counters (under the lock): worker processes started, killed at a deadline, found dead.
        self.starts = self.kills = self.deaths = 0
        self._reset_state()
        _POOLS.add(self)

    def _reset_state(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._idle: list[Worker] = []
        self._count = 0  # live workers, idle or busy (and ones being started)
        self._waiting = 0  # threads blocked in _acquire: freed workers go to them first
        self._closed = False
        self._owner_pid = os.getpid()

    # ---- public API -------------------------------------------------------------------------

    def call(
        self,
        target: str | tuple[str, tuple] | Callable,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
        *,
        timeout_s: float | None = None,
    ) -> Result:
        """One call with a deadline of ``timeout_s`` (default: the pool's)."""
        t = self.timeout_s if timeout_s is None else timeout_s
        return self.map(target, [(tuple(args), kwargs or {})], timeout_s=t, batch_timeout_s=t + self.import_timeout_s)[0]

    def map(
        self,
        target: str | tuple[str, tuple] | Callable,
        calls: Iterable[tuple[Sequence[Any], dict[str, Any]]],
        *,
        timeout_s: float | None = None,
        batch_timeout_s: float | None = None,
    ) -> list[Result]:
        """``target(*args, **kwargs)`` for each ``(args, kwargs)`` in ``calls``, in parallel.

        Each call may run ``timeout_s`` once its worker has imported ``target``; the whole map
        returns within ``batch_timeout_s`` (plus the time to kill a worker): calls still running
        then, or never started, are ``"timeout"``. Results are in the order of ``calls``.
        """
        calls = [(tuple(a), dict(k or {})) for a, k in calls]
        if callable(target):
            name = target_of(target)
            if name is None:
                raise ValueError(f"{target!r} cannot be imported by a worker (lambda, closure or __main__)")
            target = name
        if in_worker():
            fn = load_target(target)
            return [_run_here(fn, a, k) for a, k in calls]
        timeout_s = self.timeout_s if timeout_s is None else timeout_s
        batch_timeout_s = self.batch_timeout_s if batch_timeout_s is None else batch_timeout_s
        return self._map(target, calls, timeout_s, time.monotonic() + batch_timeout_s)

    def warm(self, targets: Sequence[str | tuple[str, tuple] | Callable] = (), timeout_s: float | None = None) -> None:
        """Start every worker now and import ``targets`` in each, so that the first batch is fast."""
        targets = [target_of(t) if callable(t) else t for t in targets]
        specs = [(t, _origin_of(t)) for t in targets if t]
        deadline = time.monotonic() + (self.import_timeout_s if timeout_s is None else timeout_s)
        held: list[Worker] = []
        try:
            while len(held) < self.size:
                w = self._acquire(deadline, yield_to_waiters=False)
                if w is None:
                    break
                held.append(w)
            for w in held[:]:
                held.remove(w)
                given = [w]
                (res,) = self._engine(
                    "r1kit.rewards.pool:_import_all",
                    [((specs,), {})],
                    self.import_timeout_s,
                    deadline,
                    lambda _deadline, _busy: given.pop() if given else None,
                    held.append,
                )
                if res.status != OK:
                    logger.warning("warming a reward worker failed: %s", res.error)
        finally:
            for w in held:
                self._release(w)

    def close(self) -> None:
        """Kill every idle worker now; busy ones are killed when their call returns."""
        with self._cond:
            if self._owner_pid != os.getpid():
                return
            self._closed = True
            idle, self._idle = self._idle, []
            self._count -= len(idle)
            self._cond.notify_all()
        for w in idle:
            w.kill()

    @property
    def workers(self) -> int:
        """Worker processes alive now (idle or busy)."""
        with self._cond:
            return self._count

    def pids(self) -> list[int]:
        """Process ids of the idle workers (for tests and debugging)."""
        with self._cond:
            return [w.proc.pid for w in self._idle]

    # ---- the engine ---------------------------------------------------------------------------

    def _map(self, target: str | tuple[str, tuple], calls: list[tuple[tuple, dict]], timeout_s: float, batch_deadline: float) -> list[Result]:
        return self._engine(
            target,
            calls,
            timeout_s,
            batch_deadline,
            lambda deadline, busy: self._acquire(deadline if not busy else 0.0, yield_to_waiters=busy),
            self._release,
        )

    def _engine(
        self,
        target: str | tuple[str, tuple],
        calls: list[tuple[tuple, dict]],
        timeout_s: float,
        batch_deadline: float,
        acquire: Callable[[float, bool], Worker | None],
        release: Callable[[Worker], None],
    ) -> list[Result]:
        """Run ``calls`` on workers from ``acquire(deadline, busy)`` (``busy``: this map already has
        work running, so do not block); healthy workers go back through ``release``."""
        n = len(calls)
        results: list[Result | None] = [None] * n
        sys_path = _caller_sys_path()
        origin = _origin_of(target)
        key = target_key(target)
        pending = deque(range(n))
        running: dict[int, _Job] = {}  # worker's read fd -> job
        retried: set[int] = set()
        try:
            while (pending or running) and time.monotonic() < batch_deadline:
                while pending:  # hand out work
                    try:
                        w = acquire(batch_deadline, bool(running))
                    except OSError as e:  # cannot start a worker process (or the pool is closed)
                        results[pending.popleft()] = Result(ERROR, None, f"no reward worker: {e}")
                        continue
                    if w is None:
                        break
                    i = pending.popleft()
                    error = self._send(w, target, origin, sys_path, calls[i], batch_deadline)
                    if error is None:
                        budget = timeout_s if key in w.targets else self.import_timeout_s
                        running[w.rfd] = _Job(i, w, min(time.monotonic() + budget, batch_deadline))
                    elif error is _DEAD and i not in retried:
                        # It died while idle (killed from outside): replace it, retry the call once.
                        retried.add(i)
                        pending.appendleft(i)
                    elif error is _DEAD:
                        results[i] = Result(ERROR, None, w.exit_reason())
                    elif error is _STUCK:
                        results[i] = Result(TIMEOUT, None, "the worker did not take the request")
                    else:
                        results[i] = Result(ERROR, None, error)
                        release(w)
                if not running:
                    continue  # all failed to start, or no worker before the batch deadline
                wait = max(0.0, min(job.deadline for job in running.values()) - time.monotonic())
                if pending:  # another thread may free a worker meanwhile
                    wait = min(wait, _POLL_S)
                ready, _, _ = select.select(list(running), [], [], wait)
                for fd in ready:
                    job = running[fd]
                    result, keep = self._receive(job, key, timeout_s, batch_deadline)
                    if result is None:
                        continue  # only part of the answer has arrived, or "imported"
                    del running[fd]
                    results[job.index] = result
                    if keep:
                        release(job.worker)
                now = time.monotonic()
                for fd, job in list(running.items()):
                    if now >= job.deadline:
                        del running[fd]
                        results[job.index] = Result(TIMEOUT, None, f"no answer within {timeout_s:g}s")
                        self._discard(job.worker, dead=False)
        finally:
            # The batch deadline, or KeyboardInterrupt: whatever still runs is cut off.
            for job in running.values():
                results[job.index] = Result(TIMEOUT, None, "batch deadline")
                self._discard(job.worker, dead=False)
        return [r if r is not None else Result(TIMEOUT, None, "batch deadline (not started)") for r in results]

    def _send(self, w: Worker, target, origin: str | None, sys_path: tuple[str, ...], call, deadline: float):
        """Send one request. None, or why not: an error message (the worker is fine), ``_DEAD``
        or ``_STUCK`` (it did not read the request before ``deadline``; both discard it)."""
        try:
            payload = pickle.dumps(call, protocol=pickle.HIGHEST_PROTOCOL)
            request = (sys_path if w.sys_path != sys_path else None, target, origin, payload)
            data = pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as e:  # noqa: BLE001 - unpicklable arguments are this call's error
            return f"arguments cannot be pickled: {describe_exception(e)}"
        view = memoryview(HEADER.pack(len(data)) + data)
        # The pipe is non-blocking: a request bigger than the pipe buffer goes out as the worker
        # reads it, and a worker that never reads cannot hold this thread past the deadline.
        while view:
            try:
                view = view[os.write(w.wfd, view) :]
            except BlockingIOError:
                pass
            except OSError:
                self._discard(w, dead=True)
                return _DEAD
            if view:
                left = deadline - time.monotonic()
                if left <= 0:
                    self._discard(w, dead=False)
                    return _STUCK
                select.select([], [w.wfd], [], left)
        w.sys_path = sys_path
        return None

    def _receive(self, job: _Job, key: str, timeout_s: float, batch_deadline: float) -> tuple[Result | None, bool]:
        """Read what a worker wrote: (the call's result or None if it is not complete, whether the
        worker may be reused). A worker that died or wrote garbage is discarded here."""
        w = job.worker
        try:
            chunk = os.read(w.rfd, 1 << 20)
        except OSError:
            chunk = b""
        if not chunk:
            reason = w.exit_reason()
            self._discard(w, dead=True)
            return Result(ERROR, None, reason), False
        w.buf += chunk
        try:
            frames = w.frames()
        except Exception as e:  # noqa: BLE001 - a value this process cannot unpickle
            self._discard(w, dead=False)
            return Result(ERROR, None, f"the result cannot be unpickled: {describe_exception(e)}"), False
        for frame in frames:
            if frame[0] == "imported":
                w.targets.add(key)
                job.deadline = min(time.monotonic() + timeout_s, batch_deadline)
            elif frame[0] == OK:
                return Result(OK, frame[1], events=frame[2]), True
            else:
                _, message, retire = frame
                if retire:  # MemoryError and the like: the worker exits, do not reuse it
                    self._discard(w, dead=False)
                return Result(ERROR, None, message), not retire
        return None, True

    # ---- worker bookkeeping -------------------------------------------------------------------

    def _acquire(self, deadline: float, yield_to_waiters: bool) -> Worker | None:
        """An idle worker, else a new one while fewer than ``size`` exist, else wait for one until
        ``deadline`` (None then). ``yield_to_waiters``: a map that already has work running leaves
        freed workers to threads blocked here, so concurrent callers share the pool fairly."""
        if self._owner_pid != os.getpid():  # forked without the at-fork hook having run
            _forget_inherited(self)
        with self._cond:
            while True:
                if self._closed:
                    raise OSError("the worker pool is closed")
                if not (yield_to_waiters and self._waiting):
                    while self._idle:
                        w = self._idle.pop()
                        if w.proc.poll() is None:
                            return w
                        self._count -= 1  # died while idle (killed from outside): forget it
                        self.deaths += 1
                        w.kill()
                    if self._count < self.size:
                        self._count += 1
                        break
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._waiting += 1
                try:
                    self._cond.wait(left)
                finally:
                    self._waiting -= 1
        try:
            return self._spawn()
        except BaseException:
            with self._cond:
                self._count -= 1
                self._cond.notify()
            raise

    def _release(self, w: Worker) -> None:
        with self._cond:
            if self._owner_pid != os.getpid():
                return
            if not self._closed:
                self._idle.append(w)
                self._cond.notify()
                return
            self._count -= 1
        w.kill()

    def _discard(self, w: Worker, dead: bool) -> None:
        """Kill (if needed) and forget a worker; the next acquire may start a replacement."""
        w.kill()
        with self._cond:
            if self._owner_pid != os.getpid():
                return
            self._count -= 1
            if dead:
                self.deaths += 1
            else:
                self.kills += 1
            self._cond.notify()

    def _spawn(self) -> Worker:
        w = start_worker(self.python, self.memory_limit_bytes)
        with self._cond:
            self.starts += 1
        return w


def _import_all(specs: list[tuple[str, str | None]]) -> None:
    """Worker-side helper for ``warm``: import targets without calling them."""
    for target, origin in specs:
        load_target(target, origin)


def _run_here(fn: Callable, args: tuple, kwargs: dict) -> Result:
    take_events()
    try:
        return Result(OK, fn(*args, **kwargs), events=take_events())
    except Exception as e:  # noqa: BLE001 - same contract as a worker: errors are results
        take_events()
        return Result(ERROR, None, describe_exception(e))


def _forget_inherited(pool: WorkerPool | None) -> None:
    """In a forked child: drop the parent's workers without signalling them, and start ``pool``
    (or every pool) afresh."""
    forget_parent_workers()
    for p in [pool] if pool is not None else list(_POOLS):
        p._reset_state()


def _after_fork_in_child() -> None:
    _forget_inherited(None)


os.register_at_fork(after_in_child=_after_fork_in_child)


_default: WorkerPool | None = None
_default_lock = threading.Lock()


def get_pool() -> WorkerPool:
    """The process-wide pool that rewards and the math verifier share (created on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = WorkerPool()
        return _default


def configure(size: int | None = None, **options: Any) -> WorkerPool:
    """Replace the process-wide pool (e.g. ``configure(size=4, memory_limit_bytes=None)``)."""
    global _default
    with _default_lock:
        old, _default = _default, WorkerPool(size, **options)
    if old is not None:
        old.close()
    return _default


def _close_all() -> None:
    for pool in list(_POOLS):
        pool.close()


atexit.register(_close_all)
