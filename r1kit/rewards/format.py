"""Format rewards for the R1-Zero output layout ``<think> ... </think> <answer> ... </answer>``.

Everything here is linear time (``str.find`` / ``str.count`` / ``str.replace``): no regex and no
per-character Python loop, so a long or adversarial completion cannot stall the training loop
(``benchmarks/bench_format.py`` prints the milliseconds per 200 KB input).
"""

from __future__ import annotations

from r1kit.rewards.registry import Runs, completion_text, register

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)

# Tokens a decode may leave at the end of a response (ChatML, GPT-2/Qwen, Llama-2, Llama-3, DeepSeek).
END_TOKENS = ("<|im_end|>", "<|endoftext|>", "</s>", "<|eot_id|>", "<｜end▁of▁sentence｜>")


def only_end_tokens(text: str) -> bool:
    """True if ``text`` is empty or only whitespace and end-of-text tokens (in any number)."""
    for tok in END_TOKENS:
        # a space, not "", so that removing one token cannot join its neighbours into another
        text = text.replace(tok, " ")
    return not text or text.isspace()


def is_well_formed(response: str) -> bool:
    """Strict R1-Zero format.

    After stripping surrounding whitespace the response must be exactly ``<think>`` reasoning
    ``</think>`` [whitespace] ``<answer>`` answer ``</answer>``, optionally followed by end-of-text
    tokens (``END_TOKENS``, any number, whitespace between them allowed). Tags are case-sensitive
    and each appears exactly once; nothing may come before ``<think>``; the answer must be
    non-empty after stripping whitespace. The reasoning may be empty: the tags are what the format
    reward teaches.

    Linear time: a handful of ``str.find`` / ``str.count`` / ``str.replace`` passes.
    """
    text = response.strip()
    if not text.startswith(THINK_OPEN):
        return False
    answer_close = text.rfind(ANSWER_CLOSE)
    if answer_close < 0 or not only_end_tokens(text[answer_close + len(ANSWER_CLOSE) :]):
        return False
    text = text[: answer_close + len(ANSWER_CLOSE)]
    if any(text.count(tag) != 1 for tag in TAGS):
        return False
    think_close = text.find(THINK_CLOSE)
    answer_open = text.find(ANSWER_OPEN)
    if not len(THINK_OPEN) <= think_close < answer_open:
        return False
    if text[think_close + len(THINK_CLOSE) : answer_open].strip():
        return False
    return bool(text[answer_open + len(ANSWER_OPEN) : answer_close].strip())


def soft_format_score(response: str) -> float:
    """Partial credit a weak model can climb: 0.25 for each of

    - exactly one ``</think>``,
    - exactly one ``<answer>``,
    - exactly one ``</answer>``,
    - a ``</think>``, then an ``<answer>``, then an ``</answer>``, with non-empty text between the
      last two (the first such occurrences are used).

    ``<think>`` is not counted: r1kit pre-fills it, so it carries no signal. Text after
    ``</answer>`` is not judged here (that is the strict ``format`` reward's job).
    """
    text = response
    score = 0.25 * sum(text.count(tag) == 1 for tag in (THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE))
    think_close = text.find(THINK_CLOSE)
    answer_open = text.find(ANSWER_OPEN, think_close + 1) if think_close >= 0 else -1
    answer_close = text.find(ANSWER_CLOSE, answer_open + 1) if answer_open >= 0 else -1
    if answer_close >= 0 and text[answer_open + len(ANSWER_OPEN) : answer_close].strip():
        score += 0.25
    return score


def tag_count_score(response: str) -> float:
    """0.25 for each of ``<think>``, ``</think>``, ``<answer>``, ``</answer>`` present exactly once."""
    return 0.25 * sum(response.count(tag) == 1 for tag in TAGS)


@register("format", runs=Runs.IN_PROCESS)
def format_reward(prompts, completions, **kwargs) -> list[float]:
    """1.0 if the response is strictly well formed (see ``is_well_formed``), else 0.0."""
    return [float(is_well_formed(completion_text(c))) for c in completions]


@register("soft_format", runs=Runs.IN_PROCESS)
def soft_format_reward(prompts, completions, **kwargs) -> list[float]:
    """Partial format credit in [0, 1] (see ``soft_format_score``)."""
    return [soft_format_score(completion_text(c)) for c in completions]


@register("tag_count", runs=Runs.IN_PROCESS)
def tag_count_reward(prompts, completions, **kwargs) -> list[float]:
    """Each of the four tags present exactly once earns 0.25 (see ``tag_count_score``)."""
    return [tag_count_score(completion_text(c)) for c in completions]
