"""Combine rewards into the scalar GRPO optimises: ``total_i = sum_k weight_k * r_k(i)``.

A reward never raises into the training loop: if one crashes, all its entries score 0.0 and are
counted in ``errors``; ``None`` entries ("does not apply") score 0.0 and are counted in
``skipped``; NaN/inf score 0.0 and count as errors. Returning the wrong number of values is a
programming error and raises.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from r1kit.rewards.registry import resolve_reward

logger = logging.getLogger(__name__)


@dataclass
class Scores:
    total: list[float]
    per_reward: dict[str, list[float]]
    errors: dict[str, int]
    skipped: dict[str, int]
    # entries cut off by a deadline (scored 0.0), per reward
    timeouts: dict[str, int] = field(default_factory=dict)


def score(
    prompts: list[Any],
    responses: list[Any],
    columns: dict[str, list[Any]],
    weights: dict[str, float],
    options: dict[str, dict[str, Any]] | None = None,
) -> Scores:
    """Call each reward once on the whole batch and return the weighted sum plus its parts.

    ``options[name]`` are extra keyword arguments for reward ``name`` (from ``reward_options``).
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
    for name in weights:
        fn = resolve_reward(name)
        errors[name] = skipped[name] = 0
        try:
            raw = fn(prompts=prompts, completions=responses, **columns, **options.get(name, {}))
        except Exception as e:  # noqa: BLE001 - see module docstring
            logger.warning("reward '%s' raised %s: %s; scoring 0.0 for %d responses",
                           name, type(e).__name__, e, n)
            per_reward[name] = [0.0] * n
            errors[name] = n
            continue
        try:
            count = len(raw)
        except TypeError:
            raise ValueError(f"reward '{name}' returned {type(raw).__name__}, not a list") from None
        if count != n:
            raise ValueError(f"reward '{name}' returned {count} values for {n} responses")
        values = []
        for v in raw:
            if v is None:
                skipped[name] += 1
                values.append(0.0)
                continue
            try:
                x = float(v)
            except (TypeError, ValueError):
                x = math.nan
            if not math.isfinite(x):
                errors[name] += 1
                x = 0.0
            values.append(x)
        per_reward[name] = values
    total = [sum(w * per_reward[name][i] for name, w in weights.items()) for i in range(n)]
    return Scores(total=total, per_reward=per_reward, errors=errors, skipped=skipped)
