"""Language consistency: the share of the reasoning written in the target language's script.

DeepSeek-R1 (sec. 2.3.2) adds "the proportion of target language words in the CoT" to the reward
to stop the chain of thought drifting between languages. Telling languages apart needs a model;
telling *scripts* apart needs only the Unicode character database, so this reward works offline
and in microseconds. What counts:

- The text judged is the reasoning: what lies between ``<think>`` and ``</think>`` (up to the end
  when ``</think>`` is missing, from the start when ``<think>`` is), else the whole response.
- Words are maximal runs of Unicode letters (with their combining marks). Digits, punctuation,
  math symbols and LaTeX commands (``\\frac``) count neither way; neither do one-letter Latin or
  Greek words, which in a chain of thought are almost always variables (``x``, ``n``, ``α``).
- Scripts written without spaces (Han, kana, Thai, Lao, Khmer, Myanmar) count one word per
  character, so a Chinese sentence weighs about as much as its English translation.
- ``en`` means ASCII letters only: accented Latin words (``café``, ``für``) are not English, but
  unaccented French or Spanish words cannot be told from English by script. ``latin`` accepts any
  Latin-script word. ``ja`` accepts kana and kanji, so Chinese text also passes as Japanese.
"""

from __future__ import annotations

import functools
import re
import sys
import unicodedata
from collections import Counter

from r1kit.rewards.format import ANSWER_CLOSE, ANSWER_OPEN, END_TOKENS, THINK_CLOSE, THINK_OPEN
from r1kit.rewards.registry import Runs, completion_text, register

# target -> the scripts its words may be written in ("ascii" is the English special case)
TARGETS: dict[str, frozenset[str]] = {
    "en": frozenset({"ascii"}),
    "latin": frozenset({"latin"}),
    "zh": frozenset({"han"}),
    "ja": frozenset({"han", "hiragana", "katakana"}),
    "ko": frozenset({"hangul"}),
    "ru": frozenset({"cyrillic"}),
    "uk": frozenset({"cyrillic"}),
    "cyrillic": frozenset({"cyrillic"}),
    "ar": frozenset({"arabic"}),
    "fa": frozenset({"arabic"}),
    "arabic": frozenset({"arabic"}),
    "hi": frozenset({"devanagari"}),
    "devanagari": frozenset({"devanagari"}),
    "el": frozenset({"greek"}),
    "greek": frozenset({"greek"}),
    "he": frozenset({"hebrew"}),
    "hebrew": frozenset({"hebrew"}),
    "th": frozenset({"thai"}),
    "thai": frozenset({"thai"}),
    "han": frozenset({"han"}),
    "hangul": frozenset({"hangul"}),
}
_UNSPACED = frozenset({"han", "hiragana", "katakana", "thai", "lao", "khmer", "myanmar"})
_ONE_LETTER_SYMBOLS = frozenset({"ascii", "latin", "greek"})
_LATEX_COMMAND = re.compile(r"\\[A-Za-z]+")


@functools.cache
def _word_pattern() -> re.Pattern[str]:
    # A letter, then letters or combining marks (Devanagari vowel signs, Arabic harakat, accents).
    # The stdlib re has no \p{M}, so the marks' ranges are read from unicodedata once.
    ranges, start = [], None
    for cp in range(sys.maxunicode + 1):
        is_mark = unicodedata.category(chr(cp))[0] == "M"
        if is_mark and start is None:
            start = cp
        elif not is_mark and start is not None:
            ranges.append(f"\\U{start:08x}-\\U{cp - 1:08x}")
            start = None
    marks = "".join(ranges)
    return re.compile(f"[^\\W\\d_](?:[^\\W\\d_]|[{marks}])*")


@functools.lru_cache(maxsize=1 << 16)
def char_script(ch: str) -> str:
    """The script of one character, from its Unicode name ("han", "latin", "cyrillic", ...);
    "mark" for combining marks, "other" when unnamed."""
    if unicodedata.category(ch)[0] == "M":
        return "mark"
    name = unicodedata.name(ch, "")
    if name.startswith(("CJK ", "IDEOGRAPHIC ")):
        return "han"
    if name.startswith("KATAKANA"):  # includes KATAKANA-HIRAGANA PROLONGED SOUND MARK
        return "katakana"
    return name.split(" ", 1)[0].lower() if name else "other"


def reasoning_text(response: str) -> str:
    """The part of a response that ``language`` judges (see the module docstring)."""
    start = response.find(THINK_OPEN)
    start = 0 if start < 0 else start + len(THINK_OPEN)
    end = response.find(THINK_CLOSE, start)
    if end < 0 and start == 0:
        return response  # no tags at all: judge everything (tags are removed by script_counts)
    return response[start:] if end < 0 else response[start:end]


def script_counts(text: str) -> Counter[str]:
    """How many counted words of ``text`` each script has ("ascii" for ASCII-letter words)."""
    for tag in (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE, *END_TOKENS):
        text = text.replace(tag, " ")
    text = _LATEX_COMMAND.sub(" ", text)
    counts: Counter[str] = Counter()
    for run in _word_pattern().findall(text):
        if run.isascii():
            if len(run) > 1:
                counts["ascii"] += 1
            continue
        scripts = list(map(char_script, run))
        kinds = set(scripts)
        kinds.discard("mark")
        if len(kinds) == 1:  # the common case: one script per run
            script = kinds.pop()
            letters = len(scripts) - scripts.count("mark")
            if script in _UNSPACED:
                counts[script] += letters
            elif letters > 1 or script not in _ONE_LETTER_SYMBOLS:
                counts[script] += 1
            continue
        # a run that changes script ("总和abc", "naïveВ"): split it where the script changes;
        # marks belong to the letter before them
        pieces: list[list] = []  # [script, letters, all ASCII]
        for ch, script in zip(run, scripts):
            if script == "mark":
                if pieces:
                    pieces[-1][2] = False
            elif pieces and pieces[-1][0] == script and script not in _UNSPACED:
                pieces[-1][1] += 1
                pieces[-1][2] = pieces[-1][2] and ch.isascii()
            else:
                pieces.append([script, 1, ch.isascii()])
        for script, letters, ascii_only in pieces:
            if letters > 1 or script not in _ONE_LETTER_SYMBOLS:
                counts["ascii" if ascii_only else script] += 1
    return counts


def language_share(text: str, target: str = "en") -> float | None:
    """Share of the counted words of ``text`` written in ``target``'s script; None without words."""
    if target not in TARGETS:
        raise ValueError(f"language: unknown target '{target}' (known: {', '.join(TARGETS)})")
    scripts = TARGETS[target]
    if target == "latin":
        scripts = scripts | {"ascii"}
    counts = script_counts(text)
    total = sum(counts.values())
    if not total:
        return None
    return sum(n for script, n in counts.items() if script in scripts) / total


@register("language", runs=Runs.IN_PROCESS)  # pure and linear-time
def language_reward(prompts, completions, *, target: str = "en", empty: float = 0.0, **columns) -> list[float]:
    """R1's language-consistency reward: the share in [0, 1] of the reasoning's words written in
    ``target`` (``en``, ``latin``, ``zh``, ``ja``, ``ko``, ``ru``, ``uk``, ``ar``, ``fa``, ``hi``,
    ``el``, ``he``, ``th``, or a script name; see the module docstring for what counts). A
    reasoning without any word (empty, or only numbers and symbols) scores ``empty`` (0.0, so an
    empty chain of thought earns nothing here)."""
    if target not in TARGETS:
        raise ValueError(f"language: unknown target '{target}' (known: {', '.join(TARGETS)})")
    out = []
    for c in completions:
        share = language_share(reasoning_text(completion_text(c)), target)
        out.append(empty if share is None else share)
    return out
