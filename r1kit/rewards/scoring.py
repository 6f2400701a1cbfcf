"""Combine rewards into the scalar GRPO optimises: ``total_i = sum_k weight_k * r_k(i)``.

A reward never raises into the training loop, and never hangs it. Each reward runs under a
deadline, in one of three ways:

- **in-process**: r1kit's linear-time, pure rewards (``IN_PROCESS``: format, soft_format,
  tag_count, overlong, repetition, language) and any function with ``_r1kit_inprocess = True``:
  called directly, there is nothing to guard.
- **in the worker pool** (``r1kit.rewards.pool``), for everything a worker can import:
    - *per item* for rewards that check answers one completion at a time (``PER_ITEM``:
      accuracy, cosine_length) and any function with ``_r1kit_per_item = True``: one call per
      completion with one-element lists, each with its own deadline ``timeout_s``, all of them
      within ``batch_timeout_s``; the pool's workers share the items, so this is also parallel;
    - *per batch* for every other reward (``length``, user ``module:function`` and TRL-style
      rewards): one call on the whole batch within ``batch_timeout_s``. TRL's contract hands a
      reward the whole batch and some rewards use it (``length`` normalises over the group,
      reward models batch), so r1kit does not split a batch it does not know to be per-sample.
- **in a daemon thread** for what a worker cannot import (lambdas, closures, functions defined in
  ``__main__``), within ``batch_timeout_s``; a thread cannot be killed, so one that runs past the
  deadline is abandoned with a warning.

Outcomes per entry: a value cut off by a deadline scores 0.0 and is counted in ``timeouts``; an
exception, a dead worker or NaN/inf scores 0.0 and is counted in ``errors`` (so is a verifier
failure that the reward caught itself, when it reports it: ``r1kit.rewards.pool.report``);
``None`` ("does not apply") scores 0.0 and is counted in ``skipped``. Returning the wrong number
of values is a programming error and raises.
"""

from __future__ import annotations

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
from r1kit.rewards.registry import REWARDS, PluginReward, resolve_reward
from r1kit.rewards.verifier import warm_up

logger = logging.getLogger(__name__)

# Registered rewards known to be linear-time and pure: cheaper to call than to ship to a worker.
IN_PROCESS = frozenset({"format", "soft_format", "tag_count", "overlong", "repetition", "language"})
# Registered rewards that judge each completion on its own and may call sympy: split per item.
PER_ITEM = frozenset({"accuracy", "cosine_length"})

# How a reward runs (see the module docstring).
INPROCESS, PER_ITEM_MODE, PER_BATCH, THREAD = "in-process", "per-item", "per-batch", "thread"


@dataclass
class Scores:
    total: list[float]
    per_reward: dict[str, list[float]]
    errors: dict[str, int]
    skipped: dict[str, int]
    # entries cut off by a deadline (scored 0.0), per reward
    timeouts: dict[str, int] = field(default_factory=dict)


def isolation(name: str, fn: Callable) -> str:
    """How reward ``name`` (function ``fn``) runs: in-process, per-item, per-batch or thread."""
    inner = fn.fn if isinstance(fn, PluginReward) else fn
    if _is_registered(fn, IN_PROCESS) or getattr(inner, "_r1kit_inprocess", False):
        return INPROCESS
    if target_of(inner) is None:
        return THREAD
    if _is_registered(fn, PER_ITEM) or getattr(inner, "_r1kit_per_item", False):
        return PER_ITEM_MODE
    return PER_BATCH


def _is_registered(fn: Callable, names: frozenset[str]) -> bool:
    # By identity, so "r1kit.rewards.format:format_reward" counts as "format".
    return any(REWARDS.get(name) is fn for name in names)


def _worker_target(name: str, fn: Callable) -> tuple[str, tuple]:
    """What a worker loads for reward ``name``: see ``load_reward``."""
    if isinstance(fn, PluginReward):
        return ("r1kit.rewards.scoring:load_reward", (name, None))
    return ("r1kit.rewards.scoring:load_reward", (name, target_of(fn)))


def load_reward(name: str, target: str | None) -> Callable:
    """Worker side: reward ``name``, imported before any deadline starts.

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
    return fn


def score(
    prompts: list[Any],
    responses: list[Any],
    columns: dict[str, list[Any]],
    weights: dict[str, float],
    options: dict[str, dict[str, Any]] | None = None,
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    batch_timeout_s: float = DEFAULT_BATCH_TIMEOUT_S,
) -> Scores:
    """Call each reward on the batch, under deadlines, and return the weighted sum plus its parts.

    ``options[name]`` are extra keyword arguments for reward ``name`` (from ``reward_options``).
    ``timeout_s`` bounds each completion of a per-item reward, ``batch_timeout_s`` each reward
    as a whole; so ``score`` returns within about ``len(weights) * batch_timeout_s``.
    """
    options = options or {}
    n = len(responses)
    if len(prompts) != n:
        raise ValueError(f"score: {len(prompts)} prompts but {n} responses")
    for key, values in columns.items():
        if key in ("prompts", "completions"):
            raise ValueError(f"score: column '{key}' would shadow the reward argument of that name")
        if len(values) != n:
            raise ValueError(f"score: column '{key}' has {len(values)} values for {n} responses")
    per_reward: dict[str, list[float]] = {}
    errors: dict[str, int] = {}
    skipped: dict[str, int] = {}
    timeouts: dict[str, int] = {}
    for name in weights:
        fn = resolve_reward(name)
        extra = options.get(name, {})
        mode = isolation(name, fn)
        if n == 0:
            outcomes = []
        elif mode == PER_ITEM_MODE:
            outcomes = _per_item(name, fn, prompts, responses, columns, extra, timeout_s, batch_timeout_s)
        else:
            kwargs = {"prompts": prompts, "completions": responses, **columns, **extra}
            if mode == INPROCESS:
                try:
                    res = Result(OK, fn(**kwargs))
                except Exception as e:  # noqa: BLE001 - see module docstring
                    res = Result(ERROR, None, f"{type(e).__name__}: {e}")
            elif mode == PER_BATCH:
                (res,) = get_pool().map(
                    _worker_target(name, fn), [((), kwargs)], timeout_s=batch_timeout_s, batch_timeout_s=batch_timeout_s
                )
            else:
                res = _in_thread(name, fn, kwargs, batch_timeout_s)
            outcomes = _split(name, res, n)
        values, counts = _values(outcomes)
        per_reward[name] = values
        errors[name], skipped[name], timeouts[name] = counts
        _warn(name, mode, outcomes, counts, timeout_s if mode == PER_ITEM_MODE else batch_timeout_s)
    total = [sum(w * per_reward[name][i] for name, w in weights.items()) for i in range(n)]
    return Scores(total=total, per_reward=per_reward, errors=errors, skipped=skipped, timeouts=timeouts)


def _per_item(name, fn, prompts, responses, columns, extra, timeout_s, batch_timeout_s) -> list[Result]:
    calls = [
        ((), {"prompts": [prompts[i]], "completions": [responses[i]], **{k: [v[i]] for k, v in columns.items()}, **extra})
        for i in range(len(responses))
    ]
    results = get_pool().map(_worker_target(name, fn), calls, timeout_s=timeout_s, batch_timeout_s=batch_timeout_s)
    out = []
    for res in results:
        if res.status == OK:
            (value,) = _split(name, res, 1)
            res = value._replace(events=res.events)
        out.append(res)
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
            "process (a lambda, closure or __main__ function cannot be moved to a worker process), "
            "which cannot be killed: it is abandoned and may keep using CPU. Define it in an "
            "importable module to have it run, and be killed, in a worker.",
            name, batch_timeout_s,
        )
        return Result(TIMEOUT, None, "batch deadline")
    return box[0]


def _warn(name: str, mode: str, outcomes: list[Result], counts: tuple[int, int, int], deadline_s: float) -> None:
    errors, _, timeouts = counts
    n = len(outcomes)
    if timeouts and mode != THREAD:  # the thread path has said it already
        logger.warning(
            "reward '%s' (%s): %d of %d entries cut off by the deadline (%.1fs); scored 0.0",
            name, mode, timeouts, n, deadline_s,
        )
    failed = [res.error for res in outcomes if res.status == ERROR]
    if failed:
        logger.warning("reward '%s' (%s) failed for %d of %d entries (%s); scored 0.0", name, mode, len(failed), n, failed[0])
    elif errors:
        logger.warning("reward '%s' (%s): %d of %d entries errored or were not finite; scored 0.0", name, mode, errors, n)
