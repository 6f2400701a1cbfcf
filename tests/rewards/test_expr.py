from fractions import Fraction

import pytest

from r1kit.rewards.expr import evaluate_expression


@pytest.mark.parametrize(
    "text, value, literals",
    [
        ("(3 + 5) * 7", 56, [3, 5, 7]),
        ("20 / 8", Fraction(5, 2), [20, 8]),
        ("2 - 3 * 4", -10, [2, 3, 4]),
        ("-(4 - 6) / 4", Fraction(1, 2), [4, 6, 4]),
        ("0.1 + 0.2", Fraction(3, 10), [Fraction(1, 10), Fraction(1, 5)]),
        ("6 × 7 ÷ 2", 21, [6, 7, 2]),
    ],
)
def test_evaluates_exactly(text, value, literals):
    assert evaluate_expression(text) == (value, literals)


@pytest.mark.parametrize(
    "text",
    ["2 ** 10", "__import__('os')", "x + 1", "3 // 2", "5 / (2 - 2)", "1 +", "", "abs(-3)", "True + 1",
     "(" * 5000 + "1" + ")" * 5000, "1e999"],
)
def test_rejects_everything_else(text):
    with pytest.raises(ValueError):
        evaluate_expression(text)
