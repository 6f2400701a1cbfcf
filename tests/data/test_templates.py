import pytest

from r1kit.data.loaders import DataError
from r1kit.data.templates import CHAT_INSTRUCTION, R1ZERO_TEMPLATE, render_prompt
from r1kit.testing import tiny_tokenizer


def test_r1zero_template_text():
    text = render_prompt("What is 2 + 3?", None, template="r1zero")
    assert text == R1ZERO_TEMPLATE.format(question="What is 2 + 3?") + " <think>"
    assert text.startswith("A conversation between User and Assistant.")
    assert "<think> reasoning process here </think> <answer> answer here </answer>" in text
    assert text.endswith("User: What is 2 + 3? Assistant: <think>")


def test_r1zero_braces_in_question_and_empty_prefill():
    text = render_prompt(r"Simplify $\frac{1}{2}$ {x}", None, template="r1zero", prefill="")
    assert text.endswith(r"User: Simplify $\frac{1}{2}$ {x} Assistant:")


def test_chat_template_uses_tokenizer():
    tok = tiny_tokenizer()
    text = render_prompt("What is 2 + 3?", tok, template="chat")
    assert text == (
        f"<|im_start|>user\n{CHAT_INSTRUCTION}\n\nWhat is 2 + 3?<|im_end|>\n"
        "<|im_start|>assistant\n<think>"
    )
    assert "<think> </think>" in CHAT_INSTRUCTION and "<answer> </answer>" in CHAT_INSTRUCTION


def test_chat_system_prompt_and_empty_prefill():
    tok = tiny_tokenizer()
    text = render_prompt("Q?", tok, template="chat", prefill="", system_prompt="Be brief.")
    assert text.startswith("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n")
    assert text.endswith("Q?<|im_end|>\n<|im_start|>assistant\n")
    assert "system" not in render_prompt("Q?", tok, template="chat")


def test_chat_without_chat_template_says_what_to_do():
    tok = tiny_tokenizer()
    tok.chat_template = None
    with pytest.raises(DataError, match="data.template=r1zero"):
        render_prompt("Q?", tok, template="chat")
    with pytest.raises(ValueError, match="unknown template"):
        render_prompt("Q?", tok, template="alpaca")
