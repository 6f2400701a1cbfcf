import math
from fractions import Fraction

import pytest

from r1kit.eval import MetricsError, dataset_metrics, majority_index, pass_at_k, reported_ks
from r1kit.eval.metrics import format_table, problem_metrics


def exact_pass_at_k(n, c, k):
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


@pytest.mark.parametrize(("n", "c", "k", "want"), [
    (5, 2, 1, 0.4),  # c / n
    (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
    (4, 0, 4, 0.0),
    (4, 4, 1, 1.0),
    (4, 1, 4, 1.0),  # n - c < k: some draw always holds the correct one
    (10, 3, 4, 1 - 35 / 210),
])
def test_pass_at_k_hand_values(n, c, k, want):
    assert pass_at_k(n, c, k) == pytest.approx(want, abs=1e-12)


def test_pass_at_k_equals_the_binomial_formula_and_stays_stable_for_large_n():
    for n in range(1, 13):
        for c in range(n + 1):
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(float(exact_pass_at_k(n, c, k)), abs=1e-12)
    # C(1000, 500) has ~300 digits; the product form needs none of them
    assert pass_at_k(1000, 10, 500) == pytest.approx(float(exact_pass_at_k(1000, 10, 500)), rel=1e-12)
    assert pass_at_k(1024, 1, 1) == pytest.approx(1 / 1024)


@pytest.mark.parametrize(("n", "c", "k"), [(4, 5, 1), (4, -1, 1), (4, 2, 0), (4, 2, 5)])
def test_pass_at_k_rejects_impossible_arguments(n, c, k):
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k(n, c, k)


def test_reported_ks_are_powers_of_two_and_k():
    assert reported_ks(1) == [1]
    assert reported_ks(4) == [1, 2, 4]
    assert reported_ks(6) == [1, 2, 4, 6]
    assert reported_ks(64) == [1, 2, 4, 8, 16, 32, 64]


def numeric_same(a, b):
    return float(Fraction(a)) == float(Fraction(b))


def test_majority_groups_equal_answers_and_breaks_ties_by_first_sample():
    # "1/2" and "0.5" are one class of two; "3" has one vote
    assert majority_index(["3", "1/2", "0.5"], numeric_same) == 1
    # a tie between classes {3, 3.0} and {1/2, 0.5}: the class whose first sample came first
    assert majority_index(["1/2", "3", "0.5", "3.0"], numeric_same) == 0
    assert majority_index(["3", "1/2", "0.5", "3.0"], numeric_same) == 0
    # no answer does not vote; all missing: no winner
    assert majority_index([None, None, "2"], numeric_same) == 2
    assert majority_index([None, None], numeric_same) is None


def sample(correct, extracted, tokens=10, clipped=False, well_formed=True):
    return {"correct": correct, "extracted": extracted, "tokens": tokens, "clipped": clipped, "well_formed": well_formed}


def test_problem_metrics_votes_over_answers_not_text():
    # three samples say 1/2 in different spellings (wrong), one says 2 (right)
    samples = [sample(False, "1/2"), sample(True, "2"), sample(False, "0.5"), sample(False, "2/4")]
    m = problem_metrics("p", samples, 4, numeric_same)
    assert m["pass@1"] == 0.25
    assert m["maj@4"] == 0.0 and m["majority_answer"] == "1/2"
    assert m["maj@1"] == 0.0 and m["maj@2"] == 0.0  # first two: a tie, the first sample's class wins
    assert m["pass@4"] == 1.0 and m["pass@2"] == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)


def test_dataset_metrics_by_hand():
    problems = [
        {"id": "a", "subject": "Algebra", "level": 1,
         "completions": [sample(True, "1", tokens=4), sample(True, "1", tokens=6, well_formed=False)]},
        {"id": "b", "subject": "Geometry", "level": 1,
         "completions": [sample(False, "2", tokens=8, clipped=True), sample(True, "3", tokens=2)]},
        {"id": "c", "subject": "Algebra", "level": 2,
         "completions": [sample(False, None, tokens=8, clipped=True), sample(False, None, tokens=8, clipped=True)]},
    ]
    m = dataset_metrics(problems, 2, numeric_same)
    per_problem = [1.0, 0.5, 0.0]
    assert m["pass@1"] == pytest.approx(0.5)
    mean = sum(per_problem) / 3
    sd = math.sqrt(sum((x - mean) ** 2 for x in per_problem) / 2)
    assert m["pass@1_se"] == pytest.approx(sd / math.sqrt(3))
    assert m["pass@2"] == pytest.approx((1 + 1 + 0) / 3)
    assert m["maj@2"] == pytest.approx(1 / 3)  # b: tie -> first sample "2" (wrong); c: no answer
    assert m["maj@1"] == pytest.approx(1 / 3)
    assert m["format_rate"] == pytest.approx(5 / 6)
    assert m["length_mean"] == pytest.approx(36 / 6) and m["length_median"] == 7 and m["length_max"] == 8
    assert m["clip_rate"] == pytest.approx(3 / 6)
    assert (m["n_problems"], m["k"]) == (3, 2)
    assert m["by_subject"] == {"Algebra": {"n_problems": 2, "pass@1": 0.5}, "Geometry": {"n_problems": 1, "pass@1": 0.5}}
    assert m["by_level"] == {"1": {"n_problems": 2, "pass@1": 0.75}, "2": {"n_problems": 1, "pass@1": 0.0}}
    table = format_table({"toy": m})
    assert "50.0 ± 28.9" in table and "toy" in table


def test_fewer_than_k_samples_is_an_error_naming_the_problem():
    problems = [{"id": "ok", "completions": [sample(True, "1")] * 4}, {"id": "short-7", "completions": [sample(True, "1")] * 3}]
    with pytest.raises(MetricsError, match="problem 'short-7' has 3 samples, fewer than k=4"):
        dataset_metrics(problems, 4, numeric_same)


def test_unknown_lengths_are_reported_as_unknown():
    problems = [{"id": "a", "completions": [{"correct": True, "extracted": "1", "well_formed": True}]}]
    m = dataset_metrics(problems, 1, numeric_same)
    assert m["length_mean"] is None and m["clip_rate"] is None and m["pass@1_se"] is None
