"""Length, cosine-length, repetition and overlong rewards: hand-computed values and their options."""

import math

import pytest

from r1kit.rewards import REWARDS, check_reward_options, score
from r1kit.rewards.shaping import completion_lengths

RIGHT = "<think>3 + 4 = 7</think><answer>7</answer>"
WRONG = "<think>3 + 4 = 8</think><answer>8</answer>"
ARITH = {"task": "arithmetic", "answer": 7}


def cols(n, **extra):
    return {k: [v] * n for k, v in {**ARITH, **extra}.items()}


def maybe_correct(prompts, completions, **columns):
    """A correctness reward with a "does not apply" answer, for the None path."""
    return [None if "skip" in c else float("7" in c) for c in completions]


SKIPPY = f"{__name__}:maybe_correct"


# --- lengths ---

def test_lengths_count_token_ids_else_words():
    assert completion_lengths(["a b c", "d"], [[1, 2], [3, 4, 5, 6]]) == [2, 4]
    assert completion_lengths(["a b  c\n", [{"role": "assistant", "content": "d e"}]]) == [3, 2]
    with pytest.raises(ValueError):
        completion_lengths(["a"], [[1], [2]])


# --- overlong (DAPO) ---

@pytest.mark.parametrize(
    "length, expected",
    [(0, 0.0), (60, 0.0), (75, 0.0), (76, -0.04), (80, -0.2), (90, -0.6), (99, -0.96), (100, -1.0), (101, -1.0), (500, -1.0)],
)
def test_overlong_piecewise_linear(length, expected):
    out = REWARDS["overlong"]([""], ["x"], completion_ids=[[1] * length], max_len=100, buffer=25)
    assert out == [pytest.approx(expected)]


def test_overlong_defaults_words_fallback_and_hard_cut():
    assert REWARDS["overlong"]([""] * 2, ["w " * 768, "w " * 1024], completion_ids=None) == [0.0, -1.0]
    assert REWARDS["overlong"]([""], ["w " * 900]) == [pytest.approx((768 - 900) / 256)]
    hard = REWARDS["overlong"]([""] * 2, ["", ""], completion_ids=[[1] * 10, [1] * 11], max_len=10, buffer=0)
    assert hard == [0.0, -1.0]


@pytest.mark.parametrize("opts", [{"max_len": 0}, {"max_len": 10, "buffer": 11}, {"buffer": -1}])
def test_overlong_rejects_bad_parameters(opts):
    with pytest.raises(ValueError, match="overlong"):
        REWARDS["overlong"]([""], ["x"], **opts)
    with pytest.raises(ValueError, match="overlong"):
        check_reward_options("overlong", opts)


# --- cosine-scaled length (Demystifying Long CoT) ---

def cosine(t, max_len, short, long):
    return long + 0.5 * (short - long) * (1 + math.cos(math.pi * min(t, max_len) / max_len))


def test_cosine_length_values():
    lengths = [0, 25, 50, 100, 150]
    n = len(lengths)
    ids = [[1] * t for t in lengths]
    right = REWARDS["cosine_length"]([""] * n, [RIGHT] * n, completion_ids=ids, max_len=100, **cols(n))
    wrong = REWARDS["cosine_length"]([""] * n, [WRONG] * n, completion_ids=ids, max_len=100, **cols(n))
    assert right == pytest.approx([cosine(t, 100, 1.0, 0.5) for t in lengths])
    assert wrong == pytest.approx([cosine(t, 100, -1.0, -0.5) for t in lengths])
    assert right[0] == pytest.approx(1.0) and right[2] == pytest.approx(0.75) and right[3] == pytest.approx(0.5)
    assert wrong[0] == pytest.approx(-1.0) and wrong[2] == pytest.approx(-0.75) and wrong[3] == pytest.approx(-0.5)
    assert right[4] == right[3] and wrong[4] == wrong[3]  # past max_len: clamped, not climbing back


def test_cosine_length_orders_by_correctness_then_length():
    # correct & short > correct & long > wrong & long > wrong & short
    completions = [RIGHT, RIGHT, WRONG, WRONG]
    ids = [[1] * 10, [1] * 90, [1] * 90, [1] * 10]
    out = REWARDS["cosine_length"]([""] * 4, completions, completion_ids=ids, max_len=100, **cols(4))
    assert out[0] > out[1] > out[2] > out[3]


def test_cosine_length_options_and_correctness_source():
    out = REWARDS["cosine_length"](
        [""] * 3, ["7", "8", "skip"], completion_ids=[[1] * 4] * 3, max_len=4,
        min_value_correct=2.0, max_value_correct=3.0, min_value_wrong=-3.0, max_value_wrong=-2.0,
        correctness_reward=SKIPPY,
    )
    assert out == [pytest.approx(2.0), pytest.approx(-2.0), None]
    # correctness comes from the accuracy reward on the same inputs and columns
    acc = REWARDS["accuracy"]([""] * 2, [RIGHT, WRONG], **cols(2))
    cos = REWARDS["cosine_length"]([""] * 2, [RIGHT, WRONG], completion_ids=[[1], [1]], **cols(2))
    assert acc == [1.0, 0.0] and cos[0] > 0 > cos[1]


def test_cosine_length_judges_prefill_plus_completion():
    # r1kit scores "<think>" + completion; the answer tag check must see the whole response
    response = "<think>" + " 3 + 4 = 7 </think> <answer>7</answer>"
    out = REWARDS["cosine_length"]([""], [response], completion_ids=[[1] * 3], max_len=6, **cols(1))
    assert out == [pytest.approx(0.75)]


# --- length (Kimi k1.5) ---

def test_length_kimi_group_relative():
    prompts = ["p1"] * 4 + ["p2"] * 2
    completions = [RIGHT, RIGHT, WRONG, WRONG, RIGHT, WRONG]
    ids = [[1] * n for n in (10, 30, 10, 50, 5, 5)]
    out = REWARDS["length"](prompts, completions, completion_ids=ids, **cols(6))
    # group p1: min 10, max 50 -> lambda = 0.5 - (len - 10) / 40
    assert out[:4] == pytest.approx([0.5, 0.0, 0.0, -0.5])  # wrong & short: min(0, 0.5) = 0
    assert out[4:] == [0.0, 0.0]  # group p2: equal lengths


def test_length_correctness_none_and_conversational_prompts():
    prompts = [[{"role": "user", "content": "q"}]] * 3
    out = REWARDS["length"](prompts, ["7", "8 8 8", "skip"], correctness_reward=SKIPPY)
    # word lengths 1, 3, 1 in one group
    assert out == [pytest.approx(0.5), pytest.approx(-0.5), None]


# --- repetition (n-gram) ---

@pytest.mark.parametrize(
    "text, ngram, expected",
    [
        ("a b c d e", 3, 0.0),
        ("a b c a b c", 3, -0.25),  # 4 trigrams, 3 distinct
        ("A b C a B c", 3, -0.25),  # lower-cased
        ("x x x x x x", 3, -0.75),  # 4 trigrams, 1 distinct
        ("x x x x x x", 1, -5 / 6),
        ("a b", 3, 0.0),  # shorter than one n-gram
        ("", 3, 0.0),
    ],
)
def test_repetition_words(text, ngram, expected):
    assert REWARDS["repetition"]([""], [text], ngram_size=ngram) == [pytest.approx(expected)]


def test_repetition_tokens_and_penalty_scale():
    ids = [[1, 2, 3, 4], [5, 5, 5, 5, 5]]
    out = REWARDS["repetition"]([""] * 2, ["a a a a", "b c d"], completion_ids=ids, ngram_size=2, unit="tokens")
    assert out == [0.0, pytest.approx(-0.75)]
    half = REWARDS["repetition"]([""], ["x x x x x x"], max_penalty=-0.5)
    assert half == [pytest.approx(-0.375)]


@pytest.mark.parametrize("opts", [{"max_penalty": 0.5}, {"ngram_size": 0}, {"unit": "chars"}, {"unit": "tokens"}])
def test_repetition_rejects_bad_parameters(opts):
    with pytest.raises(ValueError, match="repetition"):
        REWARDS["repetition"]([""], ["a b c"], **opts)


# --- through the scorer, with reward_options ---

def test_shaping_rewards_through_score_with_options():
    responses = [RIGHT, WRONG, RIGHT + " " + "again " * 30]
    ids = [[1] * 4, [1] * 8, [1] * 12]
    columns = {"task": ["arithmetic"] * 3, "answer": [7] * 3, "completion_ids": ids}
    weights = {"accuracy": 1.0, "cosine_length": 1.0, "overlong": 1.0, "repetition": 1.0, "length": 1.0}
    options = {"cosine_length": {"max_len": 8}, "overlong": {"max_len": 10, "buffer": 4}, "repetition": {"ngram_size": 2}}
    out = score(["p"] * 3, responses, columns, weights, options)
    assert all(v == 0 for v in out.errors.values()) and all(v == 0 for v in out.skipped.values())
    assert out.per_reward["cosine_length"] == pytest.approx([0.75, -0.5, 0.5])
    assert out.per_reward["overlong"] == pytest.approx([0.0, -0.5, -1.0])
    assert out.per_reward["repetition"][:2] == [0.0, 0.0] and out.per_reward["repetition"][2] < -0.8
    assert out.per_reward["length"] == pytest.approx([0.5, 0.0, -0.5])
    assert out.total == pytest.approx([sum(v[i] for v in out.per_reward.values()) for i in range(3)])


def test_a_bad_option_is_caught_before_training():
    with pytest.raises(ValueError, match="did you mean 'max_len'"):
        check_reward_options("cosine_length", {"maxlen": 100})
    with pytest.raises(ValueError, match="unknown reward 'acc'"):
        check_reward_options("length", {"correctness_reward": "acc"})
    check_reward_options("cosine_length", {"max_len": 100, "correctness_reward": SKIPPY})
    check_reward_options("format", {})
