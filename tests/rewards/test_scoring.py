import logging
import math

import pytest

from r1kit.rewards import REWARDS, Scores, register, score

GOOD = "<think> 3 + 4 = 7 </think> <answer>7</answer>"
WRONG = "<think> 3 + 4 = 8 </think> <answer>8</answer>"
SLOPPY = "it is 7 </think> <answer>7</answer> done"


def test_weighted_sum_by_hand():
    columns = {"task": ["arithmetic"] * 3, "answer": ["7"] * 3}
    out = score(["p"] * 3, [GOOD, WRONG, SLOPPY], columns, {"accuracy": 1.0, "format": 0.2, "soft_format": 0.5})
    assert out.per_reward == {
        "accuracy": [1.0, 0.0, 1.0],
        "format": [1.0, 1.0, 0.0],
        "soft_format": [1.0, 1.0, 1.0],
    }
    # 1*acc + 0.2*format + 0.5*soft_format
    assert out.total == pytest.approx([1.7, 0.7, 1.5])
    assert out.errors == {"accuracy": 0, "format": 0, "soft_format": 0}
    assert out.skipped == {"accuracy": 0, "format": 0, "soft_format": 0}


@register("_test_crashes")
def _crashes(prompts, completions, **kwargs):
    raise RuntimeError("verifier exploded")


@register("_test_partial")
def _partial(prompts, completions, **kwargs):
    return [None, math.nan, 2, float("inf")]


@register("_test_wrong_length")
def _wrong_length(prompts, completions, **kwargs):
    return [1.0]


def test_crashing_reward_is_counted_not_raised(caplog):
    with caplog.at_level(logging.WARNING):
        out = score(["p"] * 2, [GOOD, WRONG], {}, {"_test_crashes": 1.0, "format": 0.5})
    assert out.per_reward["_test_crashes"] == [0.0, 0.0]
    assert out.errors["_test_crashes"] == 2
    assert out.total == [0.5, 0.5]
    assert "verifier exploded" in caplog.text


def test_none_is_skipped_and_non_finite_is_an_error():
    out = score(["p"] * 4, ["a", "b", "c", "d"], {}, {"_test_partial": 3.0})
    assert out.per_reward["_test_partial"] == [0.0, 0.0, 2.0, 0.0]
    assert out.total == [0.0, 0.0, 6.0, 0.0]
    assert out.skipped == {"_test_partial": 1}
    assert out.errors == {"_test_partial": 2}


def test_programming_errors_raise():
    with pytest.raises(ValueError, match="_test_wrong_length"):
        score(["p"] * 2, ["a", "b"], {}, {"_test_wrong_length": 1.0})
    with pytest.raises(ValueError, match="column 'answer'"):
        score(["p"] * 2, ["a", "b"], {"answer": ["1"]}, {"format": 1.0})
    with pytest.raises(KeyError):
        score(["p"], ["a"], {}, {"no_such_reward": 1.0})


def test_scores_is_the_documented_record():
    assert isinstance(score([], [], {}, {"format": 1.0}), Scores)
    assert "_test_crashes" in REWARDS
