"""The answer-equivalence case set (``equivalence_cases.jsonl``): every case through
``equivalence.verify_pair`` in this process, a sample through ``answers_match`` end to end (the
in-process fast path plus the verifier's worker), and the data file's own shape.

Each case: ``gold`` as a dataset stores it, ``pred`` as a model writes it, ``equal``, a
``category``, the ``source`` that documents the edge case (a public grader, or "r1kit"), an
optional ``note``; ``blind`` marks cases labelled before they were first run.
"""

import json
from collections import Counter
from pathlib import Path

import pytest

from r1kit.rewards.equivalence import verify_pair
from r1kit.rewards.math import answers_match, gold_answer, parse_number, strip_answer

CASES_PATH = Path(__file__).with_name("equivalence_cases.jsonl")
CASES = [json.loads(line) for line in CASES_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
SOURCES = {
    "math-verify", "hendrycks-math", "prm800k", "minerva", "lm-eval", "qwen2.5-math", "gsm8k", "deepscaler",
    "simple-evals", "r1kit",
}
# (gold, pred) pairs r1kit is known to misjudge; they must keep failing until fixed (strict xfail).
KNOWN_MISJUDGEMENTS = {
    (
        "\\begin{pmatrix} 2 & 4 \\\\ 6 & 8 \\end{pmatrix}",
        "2\\begin{pmatrix} 1 & 2 \\\\ 3 & 4 \\end{pmatrix}",
    ): "matrix arithmetic in the prediction is not evaluated",
}


def _case_id(case: dict) -> str:
    return f"{case['category']}:{case['gold'][:30]}|{case['pred'][:30]}"


def _params(cases):
    out = []
    for case in cases:
        reason = KNOWN_MISJUDGEMENTS.get((case["gold"], case["pred"]))
        marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
        out.append(pytest.param(case, id=_case_id(case), marks=marks))
    return out


def test_the_case_set_is_large_balanced_and_sourced():
    assert len(CASES) >= 300
    equal = sum(c["equal"] for c in CASES)
    assert 0.35 <= equal / len(CASES) <= 0.65, f"{equal} equal of {len(CASES)}"
    for c in CASES:
        assert set(c) <= {"category", "gold", "pred", "equal", "source", "note", "blind"}, c
        assert isinstance(c["equal"], bool) and c["gold"].strip() and c["category"], c
        assert c["source"] in SOURCES, c
    pairs = Counter((c["gold"], c["pred"]) for c in CASES)
    assert [p for p, n in pairs.items() if n > 1] == []
    known = {(c["gold"], c["pred"]) for c in CASES}
    assert set(KNOWN_MISJUDGEMENTS) <= known
    # Most of the hard not-equal cases come from what other graders get wrong.
    assert sum(not c["equal"] and c["source"] != "r1kit" for c in CASES) >= 40


@pytest.mark.parametrize("case", _params(CASES))
def test_verify_pair(case):
    assert verify_pair(case["gold"], case["pred"]) is case["equal"]


# Every 7th case end to end through answers_match (fast path + worker), plus all cases that the
# fast path decides on its own (both sides plain numbers), which never reach the worker.
_FAST = [c for c in CASES if parse_number(gold_answer(c["gold"])) is not None
         and parse_number(strip_answer(c["pred"])) is not None]
_END_TO_END = CASES[::7] + [c for c in _FAST if c not in CASES[::7]]


@pytest.mark.parametrize("case", _params(_END_TO_END))
def test_answers_match_end_to_end(case):
    assert answers_match(case["pred"], case["gold"]) is case["equal"]


@pytest.mark.parametrize(
    "gold, pred",
    [
        ("5", "\\frac{"),
        ("5", "}}}{{{"),
        ("\\frac{1}{2}", "\\left( \\right."),
        ("5", "\\begin{pmatrix} 1 & \\\\ \\end{pmatrix}"),
        ("x", "=" * 50),
        ("(1, 2]", "(" * 200),
        ("5", "\\sqrt{-}"),
        ("\\text{(A)}", ""),
        ("", "5"),
        ("5", "NaN"),
        ("5", "inf"),
        ("5", "1" * 5000),
    ],
)
def test_verify_pair_never_raises_on_junk(gold, pred):
    assert verify_pair(gold, pred) is False


def test_verify_pair_takes_non_strings():
    assert verify_pair(72, 72.0) is True  # type: ignore[arg-type]
    assert verify_pair(None, "5") is False  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "response, expected",
    [
        (r"so $x = \boxed{1}, \boxed{2}$", "1, 2"),
        (r"$\boxed{1}$ and $\boxed{2}$", "1, 2"),
        (r"\boxed{1} \text{ and } \boxed{2}", "1, 2"),
        (r"first \boxed{1}, then after checking again the answer is \boxed{2}", "2"),
        (r"\boxed{\boxed{5}}", "5"),
        (r"<answer>\boxed{3} or \boxed{4}</answer>", "3, 4"),
    ],
)
def test_extract_answer_keeps_a_list_of_boxes_together(response, expected):
    from r1kit.rewards.math import extract_answer

    assert extract_answer(response) == expected


def test_gold_answer_finds_the_answer_in_stored_solutions():
    assert gold_answer("Natalia sold 48/2 = <<48/2=24>>24 clips.\n#### 72") == "72"
    assert gold_answer("#### 1,000") == "1,000"
    assert gold_answer(r"So $x = \boxed{\frac{1}{2}}$.") == r"\frac{1}{2}"
    assert gold_answer(r"$\frac{1}{2}$") == r"\frac{1}{2}"
    assert gold_answer(r"\text{(B)}") == r"\text{(B)}"
    # A MATH solution longer than any answer: the answer is taken out before the length check.
    solution = "We compute. " * 200 + r"Hence the answer is $\boxed{2\sqrt{3}}$."
    assert answers_match(r"\sqrt{12}", solution) is True
    assert answers_match(r"\sqrt{13}", solution) is False


@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("The final answer is $5$. I hope it is correct.", "5"),
        (r"**Final Answer:** $\frac{3}{4}$", r"\frac{3}{4}"),
        (r"Answer: \( 9 \)", "9"),
        (r"<think>t</think> <answer>The answer is \boxed{7}.</answer>", "7"),
        ("#### 72", "72"),
        ("So the answer is 12.", "12"),
    ],
)
def test_strip_answer(prediction, expected):
    assert strip_answer(prediction) == expected


def test_the_fast_path_compares_plain_numbers_exactly():
    assert answers_match("0.1000000001", "0.1") is False
    assert answers_match("1,000", "1000.0") is True
    assert answers_match("50%", "50") is True
    assert answers_match("0.5", "50%") is True  # x% stands for x or x/100
    assert answers_match("50%", "0.5") is True
    assert answers_match("0.05", "50%") is False
    assert answers_match("\\$5", "5\\%") is False  # a currency amount is not a percent
    assert answers_match("0.5", "50") is False  # no percent sign, no scaling


def test_extraction_and_normalisation_are_idempotent():
    # answers_match hands verify_pair answers it has already extracted; extracting again must not
    # change them.
    from r1kit.rewards.equivalence import normalize

    for c in CASES:
        g, p = gold_answer(c["gold"]), strip_answer(c["pred"])
        assert gold_answer(g) == g and strip_answer(p) == p, c
        for s in (g, p):
            assert normalize(normalize(s)) == normalize(s), s


def test_the_held_back_set_stays_apart_from_the_tuning_set():
    """``benchmarks/answers_heldout.jsonl`` measures generalisation: none of its pairs may be
    copied here, and it keeps its own shape (hand labels, two splits)."""
    path = Path(__file__).parents[2] / "benchmarks" / "answers_heldout.jsonl"
    held = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(held) >= 500

    def key(c):
        return (" ".join(c["gold"].split()), " ".join(c["pred"].split()))

    assert {key(c) for c in held}.isdisjoint({key(c) for c in CASES})
    assert {1, 2} <= {c["split"] for c in held} <= {1, 2, 3, 4, 5, 6, 7}
    assert all(isinstance(c["equal"], bool) and c["source"] and c["category"] for c in held)
    assert 0.3 <= sum(not c["equal"] for c in held) / len(held) <= 0.6


def test_plain_sqrt_is_read_in_one_pass_even_when_deeply_nested():
    from r1kit.rewards.equivalence.normalize import _plain_sqrt

    nested = "sqrt(" * 2000 + "4" + ")" * 2000  # one pass: a rescan per sqrt took 15 s here
    assert _plain_sqrt(nested) == "\\sqrt{" * 2000 + "4" + "}" * 2000
    assert _plain_sqrt("sqrt((x+1)*(x+2)) + sqrt(3)") == "\\sqrt{(x+1)*(x+2)} + \\sqrt{3}"
    assert _plain_sqrt("sqrt(2") == "sqrt(2"  # unbalanced: unchanged
