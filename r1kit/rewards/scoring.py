"""Combine rewards into the scalar GRPO optimises: ``total_i = sum_k weight_k * r_k(i)``.

A reward never raises into the training loop, and never hangs it. Each reward runs under a
deadline, in the way it declared (``Runs``, from ``register(name, runs=...)`` or the ``runs``
decorator, see ``r1kit.rewards.registry``):

- ``Runs.IN_PROCESS`` ("in-process"): r1kit's linear-time, pure rewards (format, soft_format,
  tag_count, overlong, repetition, language): called directly, there is nothing to guard.
- in the worker pool (``r1kit.rewards.pool``), for everything a worker can import:
    - ``Runs.POOL_ITEM`` ("per-item"): rewards that check answers one completion at a time
      (accuracy, cosine_length): one call per completion with one-element lists, each with its
      own deadline ``timeout_s``, all of them within ``batch_timeout_s``; the pool's workers share
      the items, so this is also parallel;
    - ``Runs.POOL_BATCH`` ("per-batch"): ``length``, and every reward that declares nothing (user
      ``module:function`` and TRL-style rewards): one call on the whole batch within
      ``batch_timeout_s``. TRL's contract hands a reward the whole batch and some rewards use it
      (``length`` normalises over the group, reward models batch), so r1kit does not split a
      batch it does not know to be per-sample.
- ``Runs.THREAD`` ("thread"): a daemon thread, within ``batch_timeout_s``, for what a worker
  cannot import (lambdas, closures, functions defined in ``__main__``, whatever they declared
  unless in-process) and for a function that asks for it; a thread cannot be killed, so one that
  runs past the deadline is abandoned with a warning.

TRL's extra keyword arguments: a reward whose signature takes them (by name or ``**kwargs``)
also gets ``trainer_state`` (``score``'s argument: r1kit's training loop passes a
``TrainerState``), ``log_metric(name, value)`` and ``log_extra(column, values)``, in every mode
(in a worker, they collect what is logged and it comes back with the result). What was logged
comes back in ``Scores.logged`` (per name, the mean of the values logged in this call, as TRL
averages them per step) and ``Scores.logged_extra`` (per column, the values in call order), from
calls that finished; a per-item reward's columns hold one entry per item (None where that item
logged nothing).

Outcomes per entry: a value cut off by a deadline scores 0.0 and is counted in ``timeouts``; an
exception, a dead worker or NaN/inf scores 0.0 and is counted in ``errors`` (so is a verifier
failure that the reward caught itself, when it reports it: ``r1kit.rewards.pool.report``);
``None`` ("does not apply") scores 0.0 and is counted in ``skipped``. Returning the wrong number
of values is a programming error and raises.
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from r1kit.rewards.pool import (
    DEFAULT_BATCH_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    ERROR,
    OK,
    TIMEOUT,
    Result,
    get_pool,
    resolve_target,
    target_of,
)
from r1kit.rewards.registry import TRL_KWARGS, PluginReward, Runs, declared_runs, resolve_reward
from r1kit.rewards.verifier import warm_up

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class TrainerState:
    """What a reward's ``trainer_state`` holds in r1kit: the fields of TRL's (a transformers
    ``TrainerState``) that r1kit's loop knows. ``global_step``: optimizer steps done so far."""

    global_step: int = 0
    max_steps: int = 0


@dataclass
class Scores:
    total: list[float]
    per_reward: dict[str, list[float]]
    errors: dict[str, int]
    skipped: dict[str, int]
    # entries cut off by a deadline (scored 0.0), per reward
    timeouts: dict[str, int] = field(default_factory=dict)
    # what rewards logged through TRL's log_metric: name -> mean of the values logged in this call
    logged: dict[str, float] = field(default_factory=dict)
    # what rewards logged through TRL's log_extra: column -> values, in call order
    logged_extra: dict[str, list[Any]] = field(default_factory=dict)


def isolation(fn: Callable) -> Runs:
    """How the scorer runs reward ``fn`` (what ``resolve_reward`` returned)."""
    declared = declared_runs(fn)
    if declared in (Runs.IN_PROCESS, Runs.THREAD):
        return declared
    if target_of(fn.fn if isinstance(fn, PluginReward) else fn) is None:
        return Runs.THREAD
    return declared or Runs.POOL_BATCH


def trl_kwargs(fn: Callable) -> tuple[str, ...]:
    """Which of ``TRL_KWARGS`` reward ``fn`` takes: by name, or all of them with ``**kwargs``."""
    inner = fn.fn if isinstance(fn, PluginReward) else fn
    try:
        params = inspect.signature(inner).parameters
    except (TypeError, ValueError):  # no signature to read: pass nothing it may not take
        return ()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return TRL_KWARGS
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return tuple(k for k in TRL_KWARGS if k in params and params[k].kind in named)


class RewardLog:
    """Collects what one reward call logs through TRL's ``log_metric`` and ``log_extra``."""

    def __init__(self) -> None:
        self.metrics: dict[str, list[float]] = {}
        self.extra: dict[str, list[Any]] = {}

    def log_metric(self, name: str, value: float) -> None:
        self.metrics.setdefault(name, []).append(float(value))

    def log_extra(self, column: str, values: list[Any]) -> None:
        self.extra.setdefault(column, []).extend(values)


def call_reward(fn: Callable, kwargs: dict[str, Any], accepts: tuple[str, ...], trainer_state: Any) -> tuple:
    """``fn(**kwargs)`` plus the TRL arguments it ``accepts``: (its value, metrics, extra columns).
    The same in this process and in a worker, where the logs come back with the result."""
    log = RewardLog()
    given = {"trainer_state": trainer_state, "log_metric": log.log_metric, "log_extra": log.log_extra}
    value = fn(**kwargs, **{k: given[k] for k in accepts})
    return value, log.metrics, log.extra


def _worker_target(name: str, fn: Callable) -> tuple[str, tuple]:
    """What a worker loads for reward ``name``: see ``load_reward``."""
    if isinstance(fn, PluginReward):
        return ("r1kit.rewards.scoring:load_reward", (name, None))
    return ("r1kit.rewards.scoring:load_reward", (name, target_of(fn)))


def load_reward(name: str, target: str | None) -> Callable:
    """Worker side: reward ``name``, imported before any deadline starts, as ``call_reward``
    calls it (so the worker takes ``(kwargs, accepts, trainer_state)``).

    ``target`` is the function's ``module:qualname``; None for a user's ``module:function``, which
    the worker's registry then wraps as the caller's does. r1kit's own rewards that run here check
    math answers, so math-verify is imported and warmed up now too.
    """
    fn = resolve_reward(name) if target is None else resolve_target(target)
    inner = fn.fn if isinstance(fn, PluginReward) else fn
    if (getattr(inner, "__module__", "") or "").startswith("r1kit."):
        try:
            warm_up()
        except Exception as e:  # noqa: BLE001 - the reward will report it if it needs math
            logger.warning("math-verify does not work in the reward worker: %s", e)
    return functools.partial(call_reward, fn)


def score(
    prompts: list[Any],
    responses: list[Any],
    columns: dict[str, list[Any]],
    weights: dict[str, float],
    options: dict[str, dict[str, Any]] | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    batch_timeout_s: float = DEFAULT_BATCH_TIMEOUT_S,
    trainer_state: Any = None,
) -> Scores:
    """Call each reward on the batch, under deadlines, and return the weighted sum plus its parts.

    ``options[name]`` are extra keyword arguments for reward ``name`` (from ``reward_options``).
    ``timeout_s`` bounds each completion of a per-item reward, ``batch_timeout_s`` each reward
    as a whole; so ``score`` returns within about ``len(weights) * batch_timeout_s``.
    ``trainer_state`` is what rewards that take TRL's ``trainer_state`` get (default
    ``TrainerState()``); it must pickle, for rewards in the worker pool.
    """
    options = options or {}
    state = TrainerState() if trainer_state is None else trainer_state
    n = len(responses)
    if len(prompts) != n:
        raise ValueError(f"score: {len(prompts)} prompts but {n} responses")
    for key, values in columns.items():
        if key in ("prompts", "completions") or key in TRL_KWARGS:
            raise ValueError(f"score: column '{key}' would shadow the reward argument of that name")
        if len(values) != n:
            raise ValueError(f"score: column '{key}' has {len(values)} values for {n} responses")
    per_reward: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    skipped: dict[str, int] = {}
    timeouts: dict[str, int] = {}
    metrics: dict[str, list[float]] = {}
    extra: dict[str, list[Any]] = {}
    for name in weights:
        fn = resolve_reward(name)
        opts = options.get(name, {})
        mode = isolation(fn)
        batch = {"prompts": prompts, "completions": responses, **columns}
        common = {"accepts": trl_kwargs(fn), "trainer_state": state}
        if n == 0:
            outcomes = []
        elif mode is Runs.POOL_ITEM:
            outcomes = _per_item(name, fn, batch, opts, common, timeout_s, batch_timeout_s, metrics, extra)
        else:
            call = {"kwargs": {**batch, **opts}, **common}
            if mode is Runs.IN_PROCESS:
                try:
                    res = Result(OK, call_reward(fn, **call))
                except Exception as e:  # noqa: BLE001 - see module docstring
                    res = Result(ERROR, None, f"{type(e).__name__}: {e}")
            elif mode is Runs.POOL_BATCH:
                (res,) = get_pool().map(
                    _worker_target(name, fn), [((), call)], timeout_s=batch_timeout_s, batch_timeout_s=batch_timeout_s
                )
            else:
                res = _in_thread(name, call_reward, {"fn": fn, **call}, batch_timeout_s)
            outcomes = _split(name, _take_logs(res, metrics, extra), n)
        values, counts = _values(outcomes)
        per_reward[name] = values
        errors[name], skipped[name], timeouts[name] = counts
        _warn(name, mode, outcomes, counts, timeout_s if mode is Runs.POOL_ITEM else batch_timeout_s)
    total = [sum(w * per_reward[name][i] for name, w in weights.items()) for i in range(n)]
    logged = {k: sum(v) / len(v) for k, v in metrics.items() if v}
    return Scores(total, per_reward, errors, skipped, timeouts, logged, extra)


def _take_logs(res: Result, metrics: dict[str, list[float]], extra: dict[str, list[Any]]) -> Result:
    """A ``call_reward`` result -> the reward's own result; what it logged goes to ``metrics`` and
    ``extra`` (a call that failed or was cut off logged nothing that counts)."""
    if res.status != OK:
        return res
    value, logged, columns = res.value
    for k, v in logged.items():
        metrics.setdefault(k, []).extend(v)
    for k, v in columns.items():
        extra.setdefault(k, []).extend(v)
    return res._replace(value=value)


def _per_item(name, fn, batch, opts, common, timeout_s, batch_timeout_s, metrics, extra) -> list[Result]:
    """One pool call per entry of ``batch`` (prompts, completions and columns, all split) with
    ``opts`` and ``common`` (``call_reward``'s other arguments). An extra column gets one entry
    per item, None where that item logged nothing, so that it stays aligned with the batch."""
    n = len(batch["completions"])
    calls = [((), {"kwargs": {**{k: [v[i]] for k, v in batch.items()}, **opts}, **common}) for i in range(n)]
    results = get_pool().map(_worker_target(name, fn), calls, timeout_s=timeout_s, batch_timeout_s=batch_timeout_s)
    out, logged_columns = [], []
    for res in results:
        columns: dict[str, list[Any]] = {}
        res = _take_logs(res, metrics, columns)
        logged_columns.append(columns)
        if res.status == OK:
            (value,) = _split(name, res, 1)
            res = value._replace(events=res.events)
        out.append(res)
    for column in dict.fromkeys(k for columns in logged_columns for k in columns):
        extra.setdefault(column, []).extend(v for columns in logged_columns for v in columns.get(column, [None]))
    return out


def _split(name: str, res: Result, n: int) -> list[Result]:
    """A whole-batch result -> one Result per entry (a failure applies to every entry)."""
    if res.status != OK:
        return [res] * n
    raw = res.value
    try:
        count = len(raw)
    except TypeError:
        raise ValueError(f"reward '{name}' returned {type(raw).__name__}, not a list") from None
    if count != n:
        raise ValueError(f"reward '{name}' returned {count} values for {n} responses")
    # Events reported during a whole-batch call stay with the first entry, counted once.
    return [Result(OK, v, events=res.events if i == 0 else ()) for i, v in enumerate(raw)]


def _values(outcomes: list[Result]) -> tuple[list[float], tuple[int, int, int]]:
    values, errors, skipped, timeouts = [], 0, 0, 0
    for res in outcomes:
        errors += res.events.count(ERROR)
        if res.status == TIMEOUT:
            timeouts += 1
            values.append(0.0)
            continue
        if res.status != OK:
            errors += 1
            values.append(0.0)
            continue
        if res.value is None:
            skipped += 1
            values.append(0.0)
            continue
        try:
            x = float(res.value)
        except (TypeError, ValueError):
            x = math.nan
        if not math.isfinite(x):
            errors += 1
            x = 0.0
        values.append(x)
    return values, (errors, skipped, timeouts)


def _in_thread(name: str, fn: Callable, kwargs: dict[str, Any], batch_timeout_s: float) -> Result:
    """Run a reward no worker can import on a daemon thread, waiting at most ``batch_timeout_s``."""
    box: list[Result] = []

    def run() -> None:
        try:
            box.append(Result(OK, fn(**kwargs)))
        except BaseException as e:  # noqa: BLE001 - reported to the scorer, not raised in a thread
            box.append(Result(ERROR, None, f"{type(e).__name__}: {e}"))

    thread = threading.Thread(target=run, name=f"r1kit-reward-{name}", daemon=True)
    thread.start()
    thread.join(batch_timeout_s)
    if thread.is_alive() or not box:
        logger.warning(
            "reward '%s' is still running after %.1fs; scored 0.0. It runs in a thread of this "
            "process (a lambda, closure or __main__ function cannot be moved to a worker process, "
            "and a reward may ask for it), which cannot be killed: it is abandoned and may keep using CPU. Define it in an "
            "importable module to have it run, and be killed, in a worker.",
            name, batch_timeout_s,
        )
        return Result(TIMEOUT, None, "batch deadline")
    return box[0]


def _warn(name: str, mode: Runs, outcomes: list[Result], counts: tuple[int, int, int], deadline_s: float) -> None:
    errors, _, timeouts = counts
    n = len(outcomes)
    if timeouts and mode is not Runs.THREAD:  # the thread path has said it already
        logger.warning(
            "reward '%s' (%s): %d of %d entries cut off by the deadline (%.1fs); scored 0.0",
            name, mode, timeouts, n, deadline_s,
        )
    failed = [res.error for res in outcomes if res.status == ERROR]
    if failed:
        logger.warning("reward '%s' (%s) failed for %d of %d entries (%s); scored 0.0", name, mode, len(failed), n, failed[0])
    elif errors:
        logger.warning("reward '%s' (%s): %d of %d entries errored or were not finite; scored 0.0", name, mode, errors, n)


def score_groups(groups_P: list, weights: dict[str, float], options: dict | None = None, runtime=None,
                 trainer_state: TrainerState | None = None) -> Scores:
    """``score`` over groups of completions (``r1kit.types.Group``), flattened to N = P*G rows in
    group order: each row gets its group's prompt and dataset columns, plus ``completion_ids``
    (TRL passes the generated token ids too; length rewards count tokens with them). ``runtime``:
    a ``RewardRuntimeSection`` for the deadlines. Every stage that scores completions -- the GRPO
    loop, pass@k evaluation, rejection sampling -- goes through here."""
    prompts_N = [g.sample.prompt for g in groups_P for _ in g.completions]
    responses_N = [r for g in groups_P for r in g.responses]
    keys = sorted({k for g in groups_P for k in g.sample.columns})
    columns = {k: [g.sample.columns.get(k) for g in groups_P for _ in g.completions] for k in keys}
    columns["completion_ids"] = [ids for g in groups_P for ids in g.completion_ids]
    deadlines = {} if runtime is None else {"timeout_s": runtime.timeout_s, "batch_timeout_s": runtime.batch_timeout_s}
    return score(prompts_N, responses_N, columns, weights, options, trainer_state=trainer_state, **deadlines)
