import pytest

from r1kit.rewards import REWARDS
from r1kit.rewards.format import is_well_formed, soft_format_score, tag_count_score

GOOD = "<think> 3 + 4 = 7 </think> <answer> 7 </answer>"


@pytest.mark.parametrize(
    "response, ok",
    [
        (GOOD, True),
        ("<think>a</think><answer>7</answer>", True),  # no whitespace needed
        ("<think>\nreasoning\n</think>\n\n<answer>\n7\n</answer>", True),
        ("  <think>a</think> <answer>7</answer>  \n", True),  # surrounding whitespace
        ("<think>a</think> <answer>7</answer><|im_end|>", True),
        ("<think>a</think> <answer>7</answer>\n<|endoftext|>", True),
        ("<think>a</think> <answer>7</answer></s>", True),
        ("<think></think><answer>7</answer>", True),  # empty reasoning is allowed
        ("<think>a</think> <answer>7</answer> and more", False),  # text after </answer>
        ("so <think>a</think> <answer>7</answer>", False),  # text before <think>
        ("<think>a</think> <answer> </answer>", False),  # empty answer
        ("<think>a</think> <answer>7", False),  # missing </answer>
        ("<think>a <answer>7</answer>", False),  # missing </think>
        ("a</think> <answer>7</answer>", False),  # missing <think>
        ("<think>a</think> 7", False),  # no answer tags
        ("<think>a</think> x <answer>7</answer>", False),  # text between the blocks
        ("<think>a</think></think> <answer>7</answer>", False),  # duplicated </think>
        ("<think><think>a</think> <answer>7</answer>", False),  # duplicated <think>
        ("<think>a</think> <answer>7</answer><answer>8</answer>", False),  # two answers
        ("<answer>7</answer> <think>a</think>", False),  # wrong order
        ("<think>a<answer>7</answer></think>", False),  # answer nested in think
        ("", False),
        ("<|im_end|>", False),
    ],
)
def test_is_well_formed(response, ok):
    assert is_well_formed(response) is ok


def test_format_reward_values_and_conversational_form():
    out = REWARDS["format"](["p", "p"], [GOOD, [{"role": "assistant", "content": GOOD + " x"}]])
    assert out == [1.0, 0.0]


@pytest.mark.parametrize(
    "response, expected",
    [
        (GOOD, 1.0),
        ("I don't know", 0.0),
        ("reasoning </think> no answer", 0.25),
        ("reasoning </think> <answer>", 0.5),
        ("reasoning </think> <answer>7</answer>", 1.0),  # <think> comes from the prefill
        ("reasoning </think> <answer> </answer>", 0.75),  # empty answer: no order credit
        ("<answer>7</answer> </think>", 0.75),  # tags once each, wrong order
        ("</think> </think> <answer>7</answer>", 0.75),  # duplicate </think>, order still fine
        ("<think>a</think> <answer>7</answer> trailing", 1.0),  # trailing text is format's job
    ],
)
def test_soft_format_partial_credit(response, expected):
    assert soft_format_score(response) == expected
    assert REWARDS["soft_format"]([""], [response]) == [expected]


@pytest.mark.parametrize(
    "response, expected",
    [
        (GOOD, 1.0),
        ("a </think> <answer>7</answer>", 0.75),
        ("<think><think> a </think> <answer>7</answer>", 0.75),
        ("<answer>7</answer>", 0.5),
        ("nothing", 0.0),
    ],
)
def test_tag_count(response, expected):
    assert tag_count_score(response) == expected
    assert REWARDS["tag_count"]([""], [response]) == [expected]


def test_is_well_formed_on_adversarial_input():
    # timing lives in benchmarks/bench_format.py; here: the verdicts on a backtracking trap
    nasty = "<think>" + "</think><answer>" * 200_000 + "</s>" * 50_000
    assert not is_well_formed(nasty)
    assert soft_format_score(nasty) == 0.0
