"""The strict R1-Zero format, case by case, and the format rewards on adversarial inputs.

Speed is measured in benchmarks/bench_format.py, not here; these tests check the answers on the
same 200 KB inputs.
"""

import pytest

from r1kit.rewards import REWARDS, score
from r1kit.rewards.format import END_TOKENS, is_well_formed, only_end_tokens, soft_format_score, tag_count_score

OK = "<think>r</think><answer>7</answer>"
KB200 = 200_000

WELL_FORMED = [
    OK,
    "<think> 3 + 4 = 7 </think> <answer> 7 </answer>",
    "<think>\nreasoning\n</think>\n\n<answer>\n7\n</answer>",
    "\n\t <think>r</think><answer>7</answer> \n\t",  # surrounding whitespace
    "<think></think><answer>7</answer>",  # empty reasoning
    "<think>   </think><answer>7</answer>",  # blank reasoning
    "<think>r</think>\u3000\u00a0<answer>7</answer>",  # Unicode whitespace between the blocks
    "<think>r</think><answer>x</answer>",  # one-character answer
    "<think>r</think><answer>NaN</answer>",  # NaN-like answers are a format pass (accuracy judges them)
    "<think>r</think><answer>inf</answer>",
    "<think>r</think><answer>\\boxed{\\frac{1}{2}}</answer>",
    "<think>r</think><answer>{{{{</answer>",  # unbalanced braces are the answer's problem, not format's
    "<think>r</think><answer>a < b > c</answer>",  # angle brackets that are not tags
    "<think>I could write <Think> or <ANSWER> here</think><answer>7</answer>",  # tags are case-sensitive
    "<think>< think> and </ think> are text</think><answer>7</answer>",
    "<think>思考：3 + 4 = 7</think><answer>七</answer>",  # Unicode reasoning and answer
    "<think>r</think><answer>🙂</answer>",
    OK + "<|im_end|>",
    OK + "<|endoftext|>",
    OK + "</s>",
    OK + "<|eot_id|>",
    OK + "\n<|im_end|>\n",
    OK + "<|im_end|><|endoftext|>",  # end token then padding
    OK + "<|im_end|>\n<|endoftext|><|endoftext|><|endoftext|>",
    "<think>r</think><answer>the answer is 7 </s> (html)</answer>",  # text inside the answer
]

MALFORMED = [
    "",
    "   \n ",
    "7",
    "<|im_end|>",
    "<think>r</think>",  # no answer block
    "<think>r</think> 7",
    "<think>r</think><answer>7",  # unclosed answer (truncated)
    "<think>r<answer>7</answer>",  # no </think>
    "r</think><answer>7</answer>",  # no <think> (prefill dropped)
    "<think>r</think><answer></answer>",  # empty answer
    "<think>r</think><answer> \n\t</answer>",  # blank answer
    "<think>r</think><answer>\u3000</answer>",  # ideographic space only
    "x<think>r</think><answer>7</answer>",  # text before <think>
    "<|im_start|>assistant\n<think>r</think><answer>7</answer>",  # template left in front
    "<think>r</think><answer>7</answer>x",  # text after </answer>
    OK + " The answer is 7.",
    OK + "<|im_end|>more",  # text after the end token
    OK + "<|im_end|>" + OK,  # a second response after the end token
    OK + "<|im_end",  # a broken end token
    OK + "</<|im_end|>s>",  # removing one end token must not create another
    "<think>r</think> so <answer>7</answer>",  # text between the blocks
    "<think>r</think><answer>7</answer><answer>8</answer>",  # two answers
    "<think>r</think><think>s</think><answer>7</answer>",  # two thinks
    "<think><think>r</think></think><answer>7</answer>",  # nested think
    "<think>r<think>s</think><answer>7</answer>",  # unbalanced: extra <think>
    "<think>r</think></think><answer>7</answer>",  # unbalanced: extra </think>
    "<think>r</think><answer><answer>7</answer>",  # unbalanced: extra <answer>
    "<think>r</think><answer>7</answer></answer>",  # unbalanced: extra </answer>
    "<think>r<answer>7</answer></think>",  # answer nested in think
    "<answer>7</answer><think>r</think>",  # blocks swapped
    "<think>r</answer><answer>7</think>",  # closing tags swapped
    "<THINK>r</THINK><ANSWER>7</ANSWER>",  # wrong case
    "<Think>r</Think><Answer>7</Answer>",
    "<think >r</think><answer>7</answer>",  # tag with a space
    "<think>r</think><answer >7</answer>",
    "<think>r</think>\n<answer>7</answer >",
    "＜think＞r＜/think＞＜answer＞7＜/answer＞",  # fullwidth brackets
    "<think>r</think><answer>7</answer>" * 2,
]


@pytest.mark.parametrize("response", WELL_FORMED)
def test_well_formed(response):
    assert is_well_formed(response) is True
    assert REWARDS["format"]([""], [response]) == [1.0]


@pytest.mark.parametrize("response", MALFORMED)
def test_malformed(response):
    assert is_well_formed(response) is False
    assert REWARDS["format"]([""], [response]) == [0.0]


def test_case_count():
    assert len(WELL_FORMED) + len(MALFORMED) >= 40
    assert len(set(WELL_FORMED) | set(MALFORMED)) == len(WELL_FORMED) + len(MALFORMED)


@pytest.mark.parametrize("tok", END_TOKENS)
def test_every_end_token_is_accepted_once_and_repeated_but_not_before_the_answer(tok):
    assert is_well_formed(OK + tok) and is_well_formed(OK + (tok + "\n") * 3)
    assert not is_well_formed(tok + OK)
    assert not is_well_formed(OK + tok + ".")


def test_only_end_tokens():
    assert only_end_tokens("") and only_end_tokens(" \n") and only_end_tokens("<|im_end|> </s>")
    assert not only_end_tokens("</s>.") and not only_end_tokens("<|im_end|") and not only_end_tokens("</<|im_end|>s>")


def test_prefilled_think_is_judged_with_the_prefill():
    # r1kit hands rewards prefill + completion; the model wrote only what follows "<think>"
    completion = " 3 + 4 = 7 </think> <answer>7</answer><|im_end|>"
    assert not is_well_formed(completion)
    assert is_well_formed("<think>" + completion)
    assert soft_format_score(completion) == soft_format_score("<think>" + completion) == 1.0


def test_conversational_completions_score_like_text():
    conv = [[{"role": "assistant", "content": OK}], [{"role": "assistant", "content": OK + " junk"}]]
    assert REWARDS["format"](["p", "p"], conv) == [1.0, 0.0]
    assert REWARDS["soft_format"](["p", "p"], conv) == [1.0, 1.0]
    assert REWARDS["tag_count"](["p", "p"], conv) == [1.0, 1.0]


# --- adversarial 200 KB inputs: the right answer, without hanging (timed in benchmarks/) ---

ADVERSARIAL = {
    # name: (response, is_well_formed, soft_format_score, tag_count_score)
    "think_repeated": ("<think>" * (KB200 // 7), False, 0.0, 0.0),
    "no_tags": ("a" * KB200, False, 0.0, 0.0),
    "whitespace": (" \n" * (KB200 // 2), False, 0.0, 0.0),
    "closing_pairs": ("<think>" + "</think><answer>" * (KB200 // 16), False, 0.0, 0.25),
    "nested_thinks": ("<think>" * 13_400 + "r" + "</think>" * 13_400 + "<answer>7</answer>", False, 0.75, 0.5),
    "unclosed_answer": ("<think>r</think><answer>" + "7" * KB200, False, 0.5, 0.75),
    "end_tokens_tail": (OK + "</s>" * (KB200 // 4), True, 1.0, 1.0),
    "end_tokens_tail_then_text": (OK + "<|im_end|>\n" * (KB200 // 11) + "x", False, 1.0, 1.0),
    "long_reasoning": ("<think>" + "step. " * (KB200 // 6) + "</think><answer>7</answer>", True, 1.0, 1.0),
    "long_answer": ("<think>r</think><answer>" + "9" * KB200 + "</answer>", True, 1.0, 1.0),
    "nan_text": ("<think>" + "NaN " * (KB200 // 4) + "</think><answer>nan</answer>", True, 1.0, 1.0),
    "unicode": ("<think>" + "数学🙂\u200b" * (KB200 // 4) + "</think><answer>四</answer>", True, 1.0, 1.0),
    "almost_tags": ("<think" * (KB200 // 6) + "</answer", False, 0.0, 0.0),
    "unbalanced_answers": ("<think>r</think>" + "<answer>7</answer>" * (KB200 // 18), False, 0.5, 0.5),
}


@pytest.mark.parametrize("name", sorted(ADVERSARIAL))
def test_adversarial_inputs(name):
    response, ok, soft, tags = ADVERSARIAL[name]
    assert len(response) >= KB200 - 20
    assert is_well_formed(response) is ok
    assert soft_format_score(response) == soft
    assert tag_count_score(response) == tags


def test_adversarial_batch_through_score():
    responses = [v[0] for v in ADVERSARIAL.values()]
    out = score([""] * len(responses), responses, {}, {"format": 1.0, "soft_format": 0.5, "tag_count": 0.25})
    assert out.errors == {"format": 0, "soft_format": 0, "tag_count": 0}
    assert out.per_reward["format"] == [float(v[1]) for v in ADVERSARIAL.values()]
    assert out.total == [v[1] + 0.5 * v[2] + 0.25 * v[3] for v in ADVERSARIAL.values()]
