"""Shaping rewards on length and repetition: ``length``, ``cosine_length``, ``repetition``, ``overlong``.

Lengths count generated tokens (``completion_ids``, which r1kit and TRL both pass) and fall back
to whitespace-separated words when no token ids are given. Every parameter is a keyword argument
with a default, set per run through the config: ``reward_options: {overlong: {max_len: 512}}``.
Rewards that need correctness (``length``, ``cosine_length``) call another reward on the same
inputs, ``accuracy`` unless told otherwise; a value > 0 counts as correct, ``None`` stays ``None``.

How the scorer runs them (``r1kit.rewards.scoring``): ``repetition`` and ``overlong`` are pure and
linear-time, so they run in-process; ``cosine_length`` runs per completion in the worker pool,
under the per-answer deadline, because its accuracy check may hang; ``length`` compares the
completions of a group, so it runs on the whole batch in one worker, under the batch deadline.
"""

from __future__ import annotations

import math
from typing import Any

from r1kit.rewards.registry import Runs, completion_text, register, resolve_reward


def completion_lengths(completions: list[Any], completion_ids: list[list[int]] | None = None) -> list[int]:
    """Tokens per completion from ``completion_ids``, else whitespace-separated words of the text."""
    if completion_ids is None:
        return [len(completion_text(c).split()) for c in completions]
    if len(completion_ids) != len(completions):
        raise ValueError(f"{len(completion_ids)} completion_ids for {len(completions)} completions")
    return [len(ids) for ids in completion_ids]


def correctness(name: str, prompts: list[Any], completions: list[Any], columns: dict[str, Any]) -> list[bool | None]:
    """Reward ``name`` (registered or ``module:function``) on the same inputs, as correct/wrong/None."""
    values = resolve_reward(name)(prompts=prompts, completions=completions, **columns)
    if len(values) != len(completions):
        raise ValueError(f"correctness reward '{name}' returned {len(values)} values for {len(completions)}")
    return [None if v is None else float(v) > 0 for v in values]


@register("length", runs=Runs.POOL_BATCH)  # needs the whole group
def length_reward(
    prompts, completions, *, completion_ids=None, correctness_reward: str = "accuracy", **columns
) -> list[float | None]:
    """Kimi k1.5's length reward (arXiv 2501.12599, sec. 2.3.3): within the completions of one
    prompt, the shortest earn most, but only a correct completion can earn a positive reward::

        lambda_i = 0.5 - (len_i - min_len) / (max_len - min_len)    (min/max over the group)
        r_i      = lambda_i if correct_i else min(0, lambda_i)

    So r is in [-0.5, 0.5]: correct and shortest +0.5, longest -0.5 whether right or wrong, and a
    wrong answer is never paid for being short. A group is the completions whose prompts are equal;
    a group whose lengths are all equal scores 0. Correctness is reward ``correctness_reward``
    (default ``accuracy``) on the same inputs.
    """
    lengths = completion_lengths(completions, completion_ids)
    correct = correctness(correctness_reward, prompts, completions, {"completion_ids": completion_ids, **columns})
    groups: dict[Any, list[int]] = {}
    for i, p in enumerate(prompts):
        groups.setdefault(p if isinstance(p, str) else repr(p), []).append(i)
    out: list[float | None] = [0.0] * len(completions)
    for members in groups.values():
        lo = min(lengths[i] for i in members)
        hi = max(lengths[i] for i in members)
        for i in members:
            if correct[i] is None:
                out[i] = None
            elif hi > lo:
                lam = 0.5 - (lengths[i] - lo) / (hi - lo)
                out[i] = lam if correct[i] else min(0.0, lam)
    return out


@register("cosine_length", runs=Runs.POOL_ITEM)
def cosine_length_reward(
    prompts, completions, *, completion_ids=None,
    max_len: int = 1024,
    min_value_correct: float = 0.5,
    max_value_correct: float = 1.0,
    min_value_wrong: float = -1.0,
    max_value_wrong: float = -0.5,
    correctness_reward: str = "accuracy",
    **columns,
) -> list[float | None]:
    """Cosine-scaled length reward (Yeo et al. 2025, "Demystifying Long Chain-of-Thought
    Reasoning in LLMs", arXiv 2502.03373, sec. 4.2 / App. C.1), with ``t = min(len, max_len)``::

        r(t) = v_short + (v_long - v_short) * (1 - cos(pi * t / max_len)) / 2

    correct: v_short = ``max_value_correct`` (1.0), v_long = ``min_value_correct`` (0.5) -
    correct and short beats correct and long; wrong: v_short = ``min_value_wrong`` (-1.0),
    v_long = ``max_value_wrong`` (-0.5) - wrong and long beats wrong and short (the model is not
    pushed to give up early). Every correct completion beats every wrong one as long as
    ``min_value_correct > max_value_wrong``. Lengths past ``max_len`` keep the value at ``max_len``
    (the cosine would climb back otherwise); pair with ``overlong`` to punish them. Same numbers
    as TRL's ``get_cosine_scaled_reward`` and open-r1's ``cosine_scaled_reward``.
    """
    if max_len < 1:
        raise ValueError(f"cosine_length: max_len must be >= 1, got {max_len}")
    lengths = completion_lengths(completions, completion_ids)
    correct = correctness(correctness_reward, prompts, completions, {"completion_ids": completion_ids, **columns})
    out: list[float | None] = []
    for n, ok in zip(lengths, correct):
        if ok is None:
            out.append(None)
            continue
        short, long = (max_value_correct, min_value_correct) if ok else (min_value_wrong, max_value_wrong)
        progress = min(n / max_len, 1.0)
        out.append(long + 0.5 * (short - long) * (1.0 + math.cos(math.pi * progress)))
    return out


@register("repetition", runs=Runs.IN_PROCESS)
def repetition_reward(
    prompts, completions, *, completion_ids=None,
    ngram_size: int = 3,
    max_penalty: float = -1.0,
    unit: str = "words",
    **columns,
) -> list[float]:
    """N-gram repetition penalty (Demystifying Long CoT, App. C.2; open-r1's
    ``repetition_penalty_reward``)::

        r = (1 - #distinct n-grams / #n-grams) * max_penalty        in [max_penalty, 0]

    ``unit="words"`` (default, as open-r1): n-grams of the lower-cased whitespace-separated words
    of the whole response; ``unit="tokens"``: n-grams of ``completion_ids`` (as TRL's
    ``get_repetition_penalty_reward``). Fewer than ``ngram_size`` units: 0.
    """
    if max_penalty > 0:
        raise ValueError(f"repetition: max_penalty must be <= 0, got {max_penalty}")
    if ngram_size < 1:
        raise ValueError(f"repetition: ngram_size must be >= 1, got {ngram_size}")
    if unit == "words":
        seqs: list[list[Any]] = [completion_text(c).lower().split() for c in completions]
    elif unit == "tokens":
        if completion_ids is None:
            raise ValueError("repetition: unit='tokens' needs the completion_ids column")
        seqs = [list(ids) for ids in completion_ids]
    else:
        raise ValueError(f"repetition: unit must be 'words' or 'tokens', got '{unit}'")
    out = []
    for seq in seqs:
        if len(seq) < ngram_size:
            out.append(0.0)
            continue
        ngrams = list(zip(*(seq[k:] for k in range(ngram_size))))
        repeated = 1.0 - len(set(ngrams)) / len(ngrams)
        out.append(repeated * max_penalty if repeated else 0.0)
    return out


@register("overlong", runs=Runs.IN_PROCESS)
def overlong_reward(
    prompts, completions, *, completion_ids=None, max_len: int = 1024, buffer: int = 256, **columns
) -> list[float]:
    """DAPO's soft overlong punishment (arXiv 2503.14476, eq. 13), with L = length in tokens::

        r = 0                              if L <= max_len - buffer
        r = (max_len - buffer - L) / buffer  if max_len - buffer < L <= max_len   (0 down to -1)
        r = -1                             if L > max_len

    Set ``max_len`` to the generation limit (``rollout.max_new_tokens``): a completion cut off at
    the limit then scores -1. ``buffer=0`` is a hard cut (0 up to ``max_len``, -1 beyond). Same
    numbers as TRL's ``get_soft_overlong_punishment(max_len, buffer)``.
    """
    if max_len < 1 or not 0 <= buffer <= max_len:
        raise ValueError(f"overlong: need max_len >= 1 and 0 <= buffer <= max_len, got {max_len}, {buffer}")
    out = []
    for n in completion_lengths(completions, completion_ids):
        if n <= max_len - buffer:
            out.append(0.0)
        elif n <= max_len:
            out.append((max_len - buffer - n) / buffer)
        else:
            out.append(-1.0)
    return out
