"""Exact evaluation of small arithmetic expressions (countdown answers, generated tasks).

Parsed with ``ast`` and evaluated over ``fractions.Fraction`` -- never ``eval``. Only number
literals, ``+ - * /``, unary ``+``/``-`` and parentheses are accepted, so there is no ``**`` and
nothing can grow faster than the (bounded) input length allows.
"""

from __future__ import annotations

import ast
from fractions import Fraction

MAX_EXPRESSION_CHARS = 512

_BINOPS = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Div: lambda a, b: a / b,
}
# Symbols a model may write for the same operators.
_NORMALISE = str.maketrans({"×": "*", "·": "*", "÷": "/", "−": "-", "–": "-"})


def evaluate_expression(text: str) -> tuple[Fraction, list[Fraction]]:
    """``"(3 + 5) * 7"`` -> ``(Fraction(56), [3, 5, 7])``: the exact value and the number literals
    in order of appearance. Raises ValueError for anything else (names, calls, ``**``, division
    by zero, syntax errors, over-long input).
    """
    text = text.translate(_NORMALISE).strip()
    if not text:
        raise ValueError("empty expression")
    if len(text) > MAX_EXPRESSION_CHARS:
        raise ValueError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(text, mode="eval")
    except (SyntaxError, RecursionError, MemoryError) as e:
        raise ValueError(f"not an arithmetic expression: {text!r}") from e
    literals: list[Fraction] = []
    try:
        value = _eval(tree.body, literals)
    except RecursionError as e:
        raise ValueError(f"expression too deeply nested: {text!r}") from e
    return value, literals


def _eval(node: ast.AST, literals: list[Fraction]) -> Fraction:
    if isinstance(node, ast.Constant):
        v = node.value
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"not a number: {v!r}")
        # Fraction(str) keeps "0.1" exact instead of the nearest binary float.
        number = Fraction(v) if isinstance(v, int) else Fraction(repr(v))
        literals.append(number)
        return number
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _eval(node.operand, literals)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp) and type(node.op) in _BINOPS:
        left = _eval(node.left, literals)
        right = _eval(node.right, literals)
        if isinstance(node.op, ast.Div) and right == 0:
            raise ValueError("division by zero")
        return _BINOPS[type(node.op)](left, right)
    raise ValueError(f"operation not allowed: {ast.dump(node)[:60]}")
