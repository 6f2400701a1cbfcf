"""Procedural tasks: an endless, reproducible supply of problems with checkable answers.

Problem ``index`` of run ``seed`` is a pure function of ``(seed, index)``: the generator is
``random.Random("<task>:<seed>:<index>")``, which seeds from the string's SHA-512 and so is the
same on every machine and Python run (``hash()`` is salted per process and is not).
"""

from __future__ import annotations

import operator
import random
from fractions import Fraction
from typing import Any

from r1kit.config import ArithmeticSection, CountdownSection
from r1kit.data.loaders import DataError
from r1kit.rewards.expr import evaluate_expression

OPS = "+-*/"
_APPLY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
# Deterministic retries for draws that give a fraction, a division by zero or a bad target.
MAX_TRIES = 1000


def _ops(ops: str, key: str) -> list[str]:
    chosen = [c for c in dict.fromkeys(ops) if not c.isspace()]
    bad = [c for c in chosen if c not in OPS]
    if bad or not chosen:
        raise DataError(f"{key}: '{ops}' must be a non-empty string of the operators {OPS}")
    return chosen


def _range(lo: int, hi: int, key: str) -> None:
    if lo > hi:
        raise DataError(f"{key}: min ({lo}) is larger than max ({hi})")


def _num(x: int) -> str:
    return f"({x})" if x < 0 else str(x)


def make_arithmetic(cfg: ArithmeticSection, seed: int, index: int) -> dict[str, Any]:
    """``{"question": "What is 3 + 5 * 2?", "answer": "13", "task": "arithmetic"}``.

    ``num_operands`` integers in ``[min_value, max_value]`` joined by operators drawn from ``ops``,
    with the usual precedence; draws whose value is not an integer are redrawn. Negative operands
    are parenthesised; the answer may be negative.
    """
    if cfg.num_operands < 2:
        raise DataError(f"data.arithmetic.num_operands: must be >= 2, got {cfg.num_operands}")
    _range(cfg.min_value, cfg.max_value, "data.arithmetic")
    ops = _ops(cfg.ops, "data.arithmetic.ops")
    rng = random.Random(f"arithmetic:{seed}:{index}")
    for _ in range(MAX_TRIES):
        operands = [rng.randint(cfg.min_value, cfg.max_value) for _ in range(cfg.num_operands)]
        expr = _num(operands[0])
        for x in operands[1:]:
            expr += f" {rng.choice(ops)} {_num(x)}"
        try:
            value, _ = evaluate_expression(expr)
        except ValueError:  # division by zero
            continue
        if value.denominator == 1:
            return {"question": f"What is {expr}?", "answer": str(value.numerator), "task": "arithmetic"}
    raise DataError(f"data.arithmetic: no integer-valued problem in {MAX_TRIES} draws with {cfg}")


def make_countdown(cfg: CountdownSection, seed: int, index: int) -> dict[str, Any]:
    """A Countdown puzzle: reach ``target`` from ``numbers`` with ``ops``, each number at most once.

    The target is built, not searched for: a random subset of the numbers (at least two, in random
    order) is folded into a random expression tree, so ``answer`` holds a solution. Draws with a
    fractional intermediate, a division by zero, a target below 1 or above
    ``max(1000, max_number * num_numbers)`` are redrawn.
    """
    if cfg.num_numbers < 2:
        raise DataError(f"data.countdown.num_numbers: must be >= 2, got {cfg.num_numbers}")
    _range(cfg.min_number, cfg.max_number, "data.countdown")
    ops = _ops(cfg.ops, "data.countdown.ops")
    max_target = max(1000, cfg.max_number * cfg.num_numbers)
    rng = random.Random(f"countdown:{seed}:{index}")
    for _ in range(MAX_TRIES):
        numbers = [rng.randint(cfg.min_number, cfg.max_number) for _ in range(cfg.num_numbers)]
        used = rng.sample(numbers, rng.randint(2, len(numbers)))
        built = _random_tree(used, ops, rng)
        if built is None:
            continue
        expr, value = built
        if value.denominator == 1 and 1 <= value <= max_target:
            target = int(value)
            ops_text = " ".join(ops)
            question = (
                f"Using the numbers {numbers}, create an equation that equals {target}. "
                f"You may use {ops_text} and each number at most once."
            )
            return {
                "question": question,
                "answer": expr,
                "numbers": numbers,
                "target": target,
                "task": "countdown",
            }
    raise DataError(f"data.countdown: no valid puzzle in {MAX_TRIES} draws with {cfg}")


def _random_tree(numbers: list[int], ops: list[str], rng: random.Random) -> tuple[str, Fraction] | None:
    """Combine random neighbours until one expression is left; None on a bad intermediate."""
    items: list[tuple[str, Fraction, bool]] = [(_num(x), Fraction(x), True) for x in numbers]
    while len(items) > 1:
        i = rng.randrange(len(items) - 1)
        (a, va, leaf_a), (b, vb, leaf_b) = items[i], items[i + 1]
        op = rng.choice(ops)
        if op == "/" and vb == 0:
            return None
        value = _APPLY[op](va, vb)
        if value.denominator != 1:
            return None
        text = f"{a if leaf_a else f'({a})'} {op} {b if leaf_b else f'({b})'}"
        items[i : i + 2] = [(text, value, False)]
    return items[0][0], items[0][1]
