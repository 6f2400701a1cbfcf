import threading
from fractions import Fraction

import pytest

from r1kit.rewards.math import answers_match, extract_answer, parse_number
from r1kit.rewards.verifier import VERIFIER, MathVerifier


@pytest.mark.parametrize(
    "response, expected",
    [
        ("<think>x</think> <answer> 42 </answer>", "42"),
        ("<answer>1</answer> then <answer>2</answer>", "2"),
        (r"<answer>The answer is $\boxed{\frac{1}{2}}$</answer>", r"\frac{1}{2}"),
        (r"no tags, so $\boxed{\sqrt{2}}$.", r"\sqrt{2}"),
        (r"<answer>5 truncated... \boxed{6}", "6"),  # unclosed <answer>: fall back to the box
        ("the total is 1,250 apples", None),
    ],
)
def test_extract_answer(response, expected):
    assert extract_answer(response) == expected


def test_extract_answer_last_number_fallback():
    assert extract_answer("3 then 1,250 apples.", fallback_last_number=True) == "1250"
    assert extract_answer("it was -2.5 degrees", fallback_last_number=True) == "-2.5"
    assert extract_answer("no digits", fallback_last_number=True) is None


def test_parse_number():
    assert parse_number(" 7. ") == 7
    assert parse_number("7.0") == 7
    assert parse_number("$1,000$") == 1000
    assert parse_number("-0.25") == Fraction(-1, 4)
    assert parse_number("50%") == 50
    assert parse_number("1,2") is None
    assert parse_number("7 apples") is None
    assert parse_number(r"\frac{1}{2}") is None


@pytest.mark.parametrize(
    "prediction, gold, ok",
    [
        ("1,000", "1000", True),
        ("1000.00", "1000", True),
        ("$18", "18", True),
        ("17", "18", False),
        (r"\frac{1}{2}", "0.5", True),
        ("0.5", r"\frac{1}{2}", True),
        (r"\frac{2}{4}", r"\frac{1}{2}", True),
        (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}", True),
        (r"\frac{1}{3}", "0.5", False),
        (r"2\sqrt{3}", r"\sqrt{12}", True),
        ("x^2+1", "1+x^2", True),
        (r"\{2, -2\}", r"\{-2, 2\}", True),
        ("3", "-3", False),
        (r"\pi", "3", False),
        (None, "3", False),
        ("", "3", False),
        ("garbage ]] {{", r"\frac{1}{2}", False),
    ],
)
def test_answers_match(prediction, gold, ok):
    assert answers_match(prediction, gold) is ok


def test_answers_match_off_the_main_thread():
    results = []

    def work():
        results.append(answers_match(r"\frac{3}{6}", "0.5"))
        results.append(answers_match(r"\frac{1}{3}", "0.5"))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=60)
    assert results == [True, False]


def test_a_hanging_sympy_call_times_out_and_the_worker_recovers():
    timeouts = VERIFIER.timeouts
    # sympy would try to build 9^(9^(9^9)) exactly and never finish. (2^{2^{40}}, used here
    # before, returns False in milliseconds once sympy is loaded: it only ran out of time on a
    # cold worker's imports, which no longer count against a comparison's deadline.
    # tests/rewards/test_deadlines.py has more.)
    assert answers_match(r"9^{9^{9^{9}}}", "5", timeout_s=0.5) is False
    assert VERIFIER.timeouts == timeouts + 1
    assert answers_match(r"\frac{1}{2}", "0.5") is True  # a fresh worker answers


def test_a_broken_comparison_is_loud_counted_and_scores_false(caplog):
    # The comparison runs in the worker pool; one that cannot be imported or kills its worker
    # scores False, is counted as an error and says why in the log.
    missing = MathVerifier(target="no_such_module_xyz:verify_pair")
    assert missing.equivalent("$1$", "$1$") is False
    assert missing.errors == 1 and missing.timeouts == 0
    assert "No module named 'no_such_module_xyz'" in caplog.text
    crashed = MathVerifier(target="hanging_rewards:verify_exits")
    assert crashed.equivalent("$1$", "$1$") is False
    assert crashed.errors == 1
    assert "exited with code 3" in caplog.text
    assert answers_match(r"\frac{1}{2}", "0.5") is True  # the shared pool still works
