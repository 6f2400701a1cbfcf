"""Outcome reward: is the final answer right? One checker per task, chosen by the ``task`` column."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction
from typing import Any, Callable

from r1kit.rewards.expr import evaluate_expression
from r1kit.rewards.extract import answer_tag_content, extract_answer, last_boxed
from r1kit.rewards.math import answers_match, parse_number
from r1kit.rewards.registry import Runs, completion_text, register


def arithmetic_correct(response: str, answer: Any) -> bool:
    """The ``<answer>`` content is the integer ``answer`` (``" 7 "``, ``"7."``, ``"7.0"`` count;
    ``"17"``, ``"7 apples"`` or an answer outside the tags do not)."""
    content = answer_tag_content(response)
    if not content:
        return False
    value = parse_number(last_boxed(content) or content)
    return value is not None and value.denominator == 1 and value == Fraction(int(answer))


def countdown_correct(response: str, numbers: list[int], target: int) -> bool:
    """The ``<answer>`` content is an expression over ``+ - * /`` and parentheses that uses each of
    ``numbers`` at most once and equals ``target`` exactly. ``"expr = target"`` is accepted when
    every right-hand side also equals the target."""
    content = answer_tag_content(response)
    if not content:
        return False
    left, *rights = content.split("=")
    target = Fraction(str(target))
    try:
        value, used = evaluate_expression(left)
        for right in rights:
            if evaluate_expression(right)[0] != target:
                return False
    except ValueError:
        return False
    if Counter(used) - Counter(Fraction(str(x)) for x in numbers):
        return False  # a number used more often than given, or not given at all
    return value == target


def math_correct(response: str, answer: Any) -> bool:
    """``answers_match(extract_answer(response), answer)``."""
    return answers_match(extract_answer(response), None if answer is None else str(answer))


def _col(columns: dict[str, Any], name: str, task: str) -> Any:
    if name not in columns:
        raise KeyError(f"accuracy: task '{task}' needs the column '{name}', got {sorted(columns)}")
    return columns[name]


# task column value -> checker(response, columns of this sample)
TASK_CHECKS: dict[str, Callable[[str, dict[str, Any]], bool]] = {
    "arithmetic": lambda r, c: arithmetic_correct(r, _col(c, "answer", "arithmetic")),
    "countdown": lambda r, c: countdown_correct(
        r, _col(c, "numbers", "countdown"), _col(c, "target", "countdown")
    ),
    "math": lambda r, c: math_correct(r, _col(c, "answer", "math")),
}


@register("accuracy", runs=Runs.POOL_ITEM)  # may call sympy: one deadline per answer
def accuracy_reward(prompts, completions, **kwargs) -> list[float]:
    """1.0 for a correct final answer, else 0.0, judged per sample by its ``task``:
    ``arithmetic`` (needs ``answer``), ``countdown`` (needs ``numbers``, ``target``) or ``math``
    (needs ``answer``; the default when there is no ``task`` column). An unknown task raises
    ValueError: that is a data bug, not a wrong answer."""
    tasks = kwargs.get("task") or [None] * len(completions)
    out = []
    for i, completion in enumerate(completions):
        task = tasks[i] or "math"
        check = TASK_CHECKS.get(task)
        if check is None:
            raise ValueError(f"accuracy: unknown task '{task}' (known: {', '.join(TASK_CHECKS)})")
        columns = {k: v[i] for k, v in kwargs.items() if isinstance(v, (list, tuple)) and len(v) > i}
        out.append(float(check(completion_text(completion), columns)))
    return out
