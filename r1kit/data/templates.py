"""Prompt templates: the R1-Zero base-model text template, or the tokenizer's chat template.

Either way the prompt ends with the prefill (``"<think>"`` by default), so the model starts
inside its reasoning and rewards judge ``prefill + completion``.
"""

from __future__ import annotations

from typing import Any

from r1kit.data.loaders import DataError

# DeepSeek-R1-Zero's template (DeepSeek-AI 2025, Table 1), for base models without a chat template.
R1ZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant "
    "solves it. The assistant first thinks about the reasoning process in the mind and then "
    "provides the user with the answer. The reasoning process and answer are enclosed within "
    "<think> </think> and <answer> </answer> tags, respectively, i.e., <think> reasoning process "
    "here </think> <answer> answer here </answer>. User: {question} Assistant:"
)

# The user turn for chat models: the same contract as R1ZERO_TEMPLATE, then the question.
CHAT_INSTRUCTION = (
    "Think through the problem step by step inside <think> </think> tags, then give only the "
    "final answer inside <answer> </answer> tags."
)

# Text templates of published R1-Zero recipes (configs/recipes/), verbatim from their sources;
# the model continues right after the text (a prefill, if any, is appended as it is).
# SimpleRL-Zoo's "simple" (abel) prompt for weak base models (Qwen2.5-0.5B/1.5B, Llama):
# hkust-nlp/simpleRL-reason, examples/simplelr_math_eval/utils.py, PROMPT_TEMPLATES["abel"].
SIMPLE_TEMPLATE = "Question:\n{question}\nAnswer:\nLet's think step by step.\n"
# Oat-Zero's Qwen-Math template (ChatML written out, no tokenizer template):
# sail-sg/understand-r1-zero, train_zero_math.py, apply_qwen_math_template.
QWEN_MATH_TEMPLATE = (
    "<|im_start|>system\nPlease reason step by step, and put your final answer within \\boxed{{}}.<|im_end|>\n"
    "<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
)
# TinyZero's Countdown prompt for base models (the question is r1kit's countdown question):
# Jiayi-Pan/TinyZero, examples/data_preprocess/countdown.py, make_prefix(template_type="base").
TINYZERO_TEMPLATE = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
    "assistant first thinks about the reasoning process in the mind and then provides the user with the answer.\n"
    "User: {question} Show your work in <think> </think> tags. And return the final answer in <answer> </answer> "
    "tags, for example <answer> (1 + 2) / 3 </answer>.\nAssistant: Let me solve this step by step.\n"
)

# data.template -> its text ("chat": the tokenizer's chat template instead)
TEMPLATES = {
    "r1zero": R1ZERO_TEMPLATE,
    "chat": None,
    "simple": SIMPLE_TEMPLATE,
    "qwen_math": QWEN_MATH_TEMPLATE,
    "tinyzero": TINYZERO_TEMPLATE,
}


def require_chat_template(tokenizer: Any) -> None:
    """Raise a DataError that says what to do if ``tokenizer`` cannot render chat messages."""
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "data.template=chat needs a tokenizer with a chat template, and this one has none "
            "(a base model?); use data.template=r1zero"
        )


def render_prompt(
    question: str,
    tokenizer: Any = None,
    template: str = "chat",
    prefill: str = "<think>",
    system_prompt: str | None = None,
) -> str:
    """The full prompt text for one question, ending with ``prefill``.

    ``"r1zero"``: ``R1ZERO_TEMPLATE`` (after ``system_prompt`` and a newline, if given), then a
    space and the prefill: ``"... User: What is 2 + 3? Assistant: <think>"``.
    ``"chat"``: ``tokenizer.apply_chat_template`` on an optional system message and a user message
    (``CHAT_INSTRUCTION``, a blank line, the question) with the generation prompt, then the prefill.
    A recipe's text template (``"simple"``, ``"qwen_math"``, ``"tinyzero"``): the text with the
    question in place, then the prefill as it is (often ``""`` for these).
    """
    if template == "r1zero":
        text = R1ZERO_TEMPLATE.format(question=question)
        if system_prompt:
            text = f"{system_prompt}\n{text}"
        return f"{text} {prefill}" if prefill else text
    if template == "chat":
        require_chat_template(tokenizer)
        messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
        messages.append({"role": "user", "content": f"{CHAT_INSTRUCTION}\n\n{question}"})
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text + prefill
    if TEMPLATES.get(template):
        text = TEMPLATES[template].format(question=question)
        if system_prompt:
            text = f"{system_prompt}\n{text}"
        return text + prefill
    raise DataError(f"data.template: unknown template '{template}' (choose from {', '.join(TEMPLATES)})")
