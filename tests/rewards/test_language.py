"""Language consistency: share of the reasoning's words in the target script."""

import pytest

from r1kit.rewards import REWARDS, check_reward_options, score
from r1kit.rewards.language import TARGETS, char_script, language_share, reasoning_text, script_counts

LANG = REWARDS["language"]


def share(text, target="en"):
    return language_share(text, target)


@pytest.mark.parametrize(
    "text, target, expected",
    [
        ("Let me add the numbers carefully", "en", 1.0),
        ("我们先把数字加起来", "zh", 1.0),
        ("我们先把数字加起来", "en", 0.0),
        ("Сначала сложим числа", "ru", 1.0),
        ("Сначала сложим числа", "uk", 1.0),
        ("أولا نجمع الأعداد", "ar", 1.0),
        ("पहले संख्याएँ जोड़ते हैं", "hi", 1.0),
        ("먼저 숫자를 더합니다", "ko", 1.0),
        ("まず数を足します", "ja", 1.0),
        ("まず数を足します", "zh", 2 / 8),  # only the two kanji are Han
        ("我们先把数字加起来", "ja", 1.0),  # kanji are Japanese too (documented)
        ("Πρώτα προσθέτουμε τους αριθμούς", "el", 1.0),
        ("קודם נחבר את המספרים", "he", 1.0),
        ("ก่อนอื่นบวกตัวเลข", "th", 1.0),
        ("Le café est très chaud", "latin", 1.0),
        ("Le café est très chaud", "en", 3 / 5),  # café and très are not ASCII
        ("We add them: 数字 then check", "en", 5 / 7),  # 5 English words, 2 Han characters
        ("We add them: 数字 then check", "zh", 2 / 7),
        ("Теперь we check", "ru", 1 / 3),
    ],
)
def test_share_by_script(text, target, expected):
    assert share(text, target) == pytest.approx(expected)


def test_numbers_math_latex_and_variables_do_not_count():
    assert script_counts("3 + 4 = 7, 12 * (5 - 2) / 3 ≥ √2 ∑ ∫ 1e-5 NaN? ") == {"ascii": 1}  # NaN is a word
    assert script_counts(r"\frac{1}{2} + \sqrt{3} \cdot x^2 = y_1 α β") == {}
    assert share(r"所以 \frac{a}{b} = x + 1") == 0.0
    assert share(r"所以 \frac{a}{b} = x + 1", "zh") == 1.0
    assert share("2 + 2 = 4", "en") is None


def test_words_are_letter_runs_with_their_marks():
    assert script_counts("हिन्दी में") == {"devanagari": 2}  # vowel signs do not split words
    assert script_counts("cafe\u0301 naïve") == {"latin": 2}  # combining and precomposed accents
    assert script_counts("数字abc") == {"han": 2, "ascii": 1}  # a run that changes script is split
    assert script_counts("x中") == {"han": 1}  # one-letter Latin pieces are variables
    assert script_counts("naïveВВ") == {"latin": 1, "cyrillic": 1}


def test_char_script():
    assert [char_script(c) for c in "a中ひカー한яαא\u0301"] == [
        "latin", "han", "hiragana", "katakana", "katakana", "hangul", "cyrillic", "greek", "hebrew", "mark",
    ]


@pytest.mark.parametrize(
    "response, expected",
    [
        ("<think>reasoning here</think><answer>7</answer>", "reasoning here"),
        ("reasoning here</think><answer>7</answer>", "reasoning here"),  # prefill not included
        ("<think>cut off mid", "cut off mid"),  # truncated: no </think>
        ("no tags at all", "no tags at all"),
        ("before <think>inside</think> after", "inside"),
    ],
)
def test_reasoning_text(response, expected):
    assert reasoning_text(response) == expected


def test_only_the_reasoning_is_judged():
    mixed_answer = "<think>We add three and four</think><answer>七 (qī)</answer>"
    assert LANG([""], [mixed_answer]) == [1.0]
    drift = "<think>We add 三 and 四 then 检查 twice</think><answer>7</answer>"
    assert LANG([""], [drift]) == [pytest.approx(5 / 9)]  # We add and then twice / + 4 Han
    assert LANG([""], [drift], target="zh") == [pytest.approx(4 / 9)]
    # tags and end-of-text tokens are not words, with or without a <think> block
    assert LANG([""], ["the answer <answer>7</answer><|im_end|>"], target="zh") == [0.0]
    assert LANG([""], ["答案 <answer>7</answer><|im_end|>"], target="zh") == [1.0]


def test_empty_reasoning_scores_the_empty_option():
    responses = ["<think></think><answer>7</answer>", "<think>1 + 2 = 3</think><answer>3</answer>"]
    assert LANG(["", ""], responses) == [0.0, 0.0]
    assert LANG(["", ""], responses, empty=1.0) == [1.0, 1.0]


def test_prefilled_and_conversational_responses():
    completion = " Let us add 3 and 4 </think> <answer>7</answer>"
    conv = [{"role": "assistant", "content": "<think>" + completion}]
    assert LANG(["", ""], ["<think>" + completion, conv]) == [1.0, 1.0]
    assert LANG([""], [completion]) == [1.0]  # without the prefill, everything before </think>


def test_every_target_has_a_script_and_unknown_targets_are_refused():
    assert {"en", "zh", "ja", "ko", "ru", "ar", "hi"} <= set(TARGETS)
    with pytest.raises(ValueError, match="unknown target 'klingon'"):
        LANG([""], ["x"], target="klingon")
    with pytest.raises(ValueError, match="unknown target"):
        check_reward_options("language", {"target": "english"})
    check_reward_options("language", {"target": "zh", "empty": 1.0})


def test_through_score_with_options():
    responses = ["<think>Let us add</think><answer>7</answer>", "<think>我们相加</think><answer>7</answer>"]
    out = score(["p", "p"], responses, {}, {"language": 0.5}, {"language": {"target": "zh"}})
    assert out.per_reward["language"] == [0.0, 1.0] and out.total == [0.0, 0.5]
    assert out.errors == {"language": 0}


def test_long_adversarial_inputs():
    n = 200_000
    assert LANG([""], ["<think>" + "数" * n]) == [0.0]
    assert LANG([""], ["<think>" + "a" * n]) == [1.0]  # one 200 KB word
    assert LANG([""], ["<think>" + "\u0301" * n]) == [0.0]  # marks without letters: no words
    assert LANG([""], ["<think>" + "ab中" * (n // 3)], target="zh") == [pytest.approx(0.5)]
