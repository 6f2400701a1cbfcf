"""SFT examples: rows (chat messages, prompt + completion, or reasoning traces) -> token ids and
labels, with the defaults reasoning traces need.

- Loss on the completion / assistant tokens only: prompt, system and user tokens are labelled
  -100 (``completion_only_loss``).
- ``<think>`` content is kept: when a chat template rewrites an assistant message (DeepSeek-R1's
  and Qwen3's strip the reasoning of earlier turns), the message's own text is trained instead,
  followed by the end-of-sequence token, and a warning says so.
- The model learns to stop: every trained turn ends with a stop token (the template's
  end-of-turn token when it is a stop token of the model, else the tokenizer's EOS is added).
- Traces from ``r1kit generate`` (``question`` + ``completion``) are rendered with this model's
  own template (``data.template``), not the teacher's: a student of another family trains on the
  prompt it will be asked with.
- Examples longer than ``max_length`` are counted and warned about, then dropped or cut
  (``overlong``), never cut silently.

Each example is a list of (text, trained) segments tokenized one by one and concatenated: the
prompt is tokenized exactly as generation will see it, and labels follow the segment bounds.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from r1kit.config.sft import SFTDataSection
from r1kit.data.loaders import DataError
from r1kit.data.templates import render_prompt
from r1kit.rewards.format import ANSWER_CLOSE, ANSWER_OPEN, THINK_CLOSE, THINK_OPEN

logger = logging.getLogger(__name__)

FORMATS = ("auto", "messages", "question_completion", "prompt_completion", "trace")
OVERLONG = ("drop", "truncate")
IGNORE = -100  # label of a token that is not trained

Segments = list[tuple[str, bool]]


@dataclass
class Example:
    input_ids: list[int]
    labels: list[int]


@dataclass
class DataStats:
    """What became of the rows: written to the run directory as data_stats.json."""

    rows: int = 0
    examples: int = 0
    overlong: int = 0  # longer than max_length (then dropped or truncated)
    dropped: int = 0
    truncated: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    max_tokens: int = 0
    template_rewrites: int = 0  # assistant turns the chat template altered; their own text was trained
    eos_added: int = 0  # trained turns that did not end with a stop token
    extra: dict[str, Any] = field(default_factory=dict)


def detect_format(columns: list[str], cfg: SFTDataSection) -> str:
    """The row layout ``cfg.format`` names, or (``auto``) the first whose columns are present."""
    needs = {
        "messages": (cfg.messages_column,),
        "question_completion": (cfg.question_column, cfg.completion_column),
        "prompt_completion": (cfg.prompt_column, cfg.completion_column),
        "trace": (cfg.problem_column, cfg.reasoning_column, cfg.answer_column),
    }
    if cfg.format != "auto":
        missing = [c for c in needs[cfg.format] if c not in columns]
        if missing:
            raise DataError(f"{cfg.path}: no column '{missing[0]}' (data.format {cfg.format}); "
                            f"available columns: {', '.join(columns)}")
        return cfg.format
    for fmt, cols in needs.items():
        if all(c in columns for c in cols):
            return fmt
    raise DataError(
        f"{cfg.path}: cannot tell the row layout from the columns {', '.join(columns)}: expected "
        f"'{cfg.messages_column}' (messages), '{cfg.question_column}' + '{cfg.completion_column}' (question_completion), "
        f"'{cfg.prompt_column}' + '{cfg.completion_column}' (prompt_completion) "
        f"or '{cfg.problem_column}' + '{cfg.reasoning_column}' + '{cfg.answer_column}' (trace); set data.format "
        "and the data.*_column keys"
    )


def trace_response(reasoning: str, answer: Any) -> str:
    """The R1 layout of a worked solution: ``<think>reasoning</think> <answer>answer</answer>``."""
    return f"{THINK_OPEN}{str(reasoning).strip()}{THINK_CLOSE} {ANSWER_OPEN}{str(answer).strip()}{ANSWER_CLOSE}"


def _check_messages(messages: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: expected a non-empty list of {{role, content}} messages, got {messages!r:.80}")
    for j, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m or not isinstance(m.get("content"), str):
            raise DataError(f"{where}: message {j} needs a 'role' and a string 'content', got {m!r:.80}")
    return messages


def _render(tokenizer, messages: list[dict[str, str]], generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def message_segments(messages: list[dict[str, str]], tokenizer, trained_from: int, stats: DataStats,
                     eos: str) -> Segments:
    """Segments of a conversation through the chat template: each assistant message at index >=
    ``trained_from`` is trained (its turn as the template renders it, end-of-turn included); all
    else is not. Messages after the last assistant one are left out (nothing to learn there)."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant"), default=-1)
    segs: Segments = []
    done = ""  # the template's rendering of the messages before the next segment
    for i in range(last + 1):
        if messages[i]["role"] != "assistant":
            continue
        prefix = _render(tokenizer, messages[:i], True)
        full = _render(tokenizer, messages[: i + 1], False)
        if not prefix.startswith(done):
            raise DataError("the chat template renders a conversation differently when it grows "
                            "(an earlier turn changes): its turns cannot be labelled")
        segs.append((prefix[len(done) :], False))
        turn = full[len(prefix) :] if full.startswith(prefix) else ""
        if messages[i]["content"].strip() not in turn:  # the template rewrote the message
            turn = messages[i]["content"] + eos
            stats.template_rewrites += 1
        segs.append((turn, i >= trained_from))
        done = full if full.startswith(prefix) else prefix + turn
    return segs


def row_segments(row: dict[str, Any], fmt: str, cfg: SFTDataSection, tokenizer, stats: DataStats,
                 where: str) -> Segments:
    """The (text, trained) segments of one row in layout ``fmt``."""
    eos = tokenizer.eos_token or ""
    if fmt == "messages":
        messages = _check_messages(row[cfg.messages_column], f"{where} column '{cfg.messages_column}'")
        if not any(m["role"] == "assistant" for m in messages):
            raise DataError(f"{where}: no assistant message to train on")
        return message_segments(messages, tokenizer, 0, stats, eos)
    if fmt == "prompt_completion":
        prompt, completion = row[cfg.prompt_column], row[cfg.completion_column]
        if isinstance(prompt, list) or isinstance(completion, list):  # TRL's conversational layout
            if isinstance(completion, str):  # chat prompt, text reply (`r1kit generate` with api: chat)
                completion = [{"role": "assistant", "content": completion}]
            prompt = _check_messages(prompt, f"{where} column '{cfg.prompt_column}'")
            completion = _check_messages(completion, f"{where} column '{cfg.completion_column}'")
            return message_segments(prompt + completion, tokenizer, len(prompt), stats, eos)
        if not isinstance(completion, str) or not completion.strip():
            raise DataError(f"{where}: empty '{cfg.completion_column}'")
        if not isinstance(prompt, str):
            raise DataError(f"{where}: '{cfg.prompt_column}' must be a string or a list of messages, got {prompt!r:.80}")
        return [(prompt, False), (completion, True)]
    if fmt == "question_completion":  # `r1kit generate` rows: the question under this model's own template
        question, completion = row[cfg.question_column], row[cfg.completion_column]
        for col, value in ((cfg.question_column, question), (cfg.completion_column, completion)):
            if not isinstance(value, str) or not value.strip():
                raise DataError(f"{where}: empty '{col}'")
        prompt = render_prompt(question, tokenizer, cfg.template, cfg.prefill, cfg.system_prompt)
        return [(prompt, False), (completion.removeprefix(cfg.prefill), True)]
    problem, reasoning, answer = (row.get(c) for c in (cfg.problem_column, cfg.reasoning_column, cfg.answer_column))
    for col, value in ((cfg.problem_column, problem), (cfg.reasoning_column, reasoning), (cfg.answer_column, answer)):
        if value is None or not str(value).strip():
            raise DataError(f"{where}: empty '{col}'")
    response = trace_response(str(reasoning), answer)
    prompt = render_prompt(str(problem), tokenizer, cfg.template, cfg.prefill, cfg.system_prompt)
    return [(prompt, False), (response.removeprefix(cfg.prefill), True)]


def tokenize_segments(segs: Segments, tokenizer, stop_ids: set[int], completion_only: bool,
                      stats: DataStats) -> Example:
    """Token ids and labels of the segments; a trained segment that does not end with a stop
    token (within its last two tokens: a template may add a newline after it) gets the EOS."""
    ids: list[int] = []
    labels: list[int] = []
    for text, trained in segs:
        seg = tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        if trained and not stop_ids.intersection(seg[-2:]):
            seg = seg + [tokenizer.eos_token_id]
            stats.eos_added += 1
        ids += seg
        labels += seg if (trained or not completion_only) else [IGNORE] * len(seg)
    return Example(ids, labels)


def build_examples(rows: list[dict[str, Any]], cfg: SFTDataSection, tokenizer, stop_ids: set[int]) -> tuple[list[Example], DataStats]:
    """Tokenized examples of ``rows`` and what became of them; over-long examples are dropped or
    truncated per ``cfg.overlong``, with a warning giving their number."""
    if not rows:
        raise DataError(f"{cfg.path}: no rows")
    fmt = detect_format(list(rows[0]), cfg)
    stats = DataStats(rows=len(rows), extra={"format": fmt, "max_length": cfg.max_length, "overlong_policy": cfg.overlong})
    examples = []
    for i, row in enumerate(rows):
        where = f"{cfg.path}: row {i}"
        try:
            segs = row_segments(row, fmt, cfg, tokenizer, stats, where)
        except DataError as e:
            raise DataError(str(e) if str(e).startswith(where) else f"{where}: {e}") from None
        except KeyError as e:
            raise DataError(f"{where}: no column {e} (data.format {fmt})") from None
        ex = tokenize_segments(segs, tokenizer, stop_ids, cfg.completion_only_loss, stats)
        if len(ex.input_ids) > cfg.max_length:
            stats.overlong += 1
            if cfg.overlong == "drop":
                stats.dropped += 1
                continue
            ex = Example(ex.input_ids[: cfg.max_length], ex.labels[: cfg.max_length])
            if all(x == IGNORE for x in ex.labels):  # the prompt alone fills max_length
                stats.dropped += 1
                continue
            stats.truncated += 1
        examples.append(ex)
        stats.tokens += len(ex.input_ids)
        stats.trained_tokens += sum(x != IGNORE for x in ex.labels)
        stats.max_tokens = max(stats.max_tokens, len(ex.input_ids))
    stats.examples = len(examples)
    if stats.overlong:
        what = "dropped" if cfg.overlong == "drop" else "cut at max_length, losing their ends (answer and EOS)"
        logger.warning("SFT data: %d of %d examples are longer than data.max_length=%d tokens: %s",
                       stats.overlong, len(rows), cfg.max_length, what)
    if stats.template_rewrites:
        logger.warning("SFT data: the chat template rewrote %d assistant turns (e.g. stripped <think>); "
                       "their own text was trained instead, followed by EOS", stats.template_rewrites)
    if not examples:
        raise DataError(f"{cfg.path}: no example fits data.max_length={cfg.max_length} (all {len(rows)} are longer)")
    return examples, stats
