"""Answers that are not mathematics: multiple-choice letters and words (rule 2 of
``r1kit.rewards.equivalence``)."""

from __future__ import annotations

import re

from r1kit.rewards.equivalence.normalize import unwrap_text

_CHOICE_GOLD = re.compile(r"\(?([A-E])\)?")
# A gold letter with its option's text: "(C) Cecile", "C. Cecile", "C) Cecile", "D Dover" ("A ..."
# is an article, not an option, unless marked; "D = (0, 1)" is a point named D, not option D).
_CHOICE_GOLD_WITH_TEXT = re.compile(r"(?:\(([A-E])\)\s*|([A-E])[.):]\s*|([B-E])\s+)([^\s=<>:.)][^=<>]*)")
_CHOICE_PRED = re.compile(
    r"(?:(?:option|choice|answer)\s*:?\s*)?\(?([A-Ea-e])\)?(?=$|[\s:.,])", re.IGNORECASE
)
# In prose: the letter a sentence commits to ("the correct option is B", "réponse est C",
# "I think it's B"), a letter that opens the reply ("D. it can't be A"), else the last letter.
_PROSE_OPENING = re.compile(r"\s*\(?([A-E])\)?(?:[.):。，,]|\s*$|\s+(?=[a-z]))")
_PROSE_COMMITTED = re.compile(
    r"(?:\bis|\best|\bes|\bist|'s|:|\banswer|\boption|\bchoice|\bsure)(?:\s+[a-z]+ly)?\s*\(?((?-i:[A-E]))\)?(?![A-Za-z'])"
    r"|(?<![A-Za-z'\\])\(?((?-i:[A-E]))\)?\s+is\s+(?:correct|right|the\s+answer)",
    re.IGNORECASE,
)
_PROSE_LETTER = re.compile(r"(?<![A-Za-z'\\])\(?((?-i:[A-E]))\)?(?![A-Za-z'])")
# Letters a reply rules out: "it can't be A or B", "not C", "except D, E".
_RULED_OUT = re.compile(
    r"(?:\bnot|n't(?:\s+be)?|\bcannot(?:\s+be)?|\bnever|\bexcept|不是|pas|\bnon)\s*\(?(?-i:[A-E])\)?(?:\s*(?:,|\bor\b|\band\b|\bnor\b|ou|et)\s*\(?(?-i:[A-E])\)?)*",
    re.IGNORECASE,
)


def choice_letter(s: str, gold: bool) -> str | None:
    """The option letter ``s`` gives (upper case), or None. A gold is a letter alone (``B``,
    ``(B)``, ``\\text{(B)}``) or with its option's text; a prediction may name it ("option B",
    "B.") but not hedge over several letters ("(A) and (C)")."""
    t, _ = unwrap_text(s)
    if gold:
        m = _CHOICE_GOLD.fullmatch(t) or _CHOICE_GOLD_WITH_TEXT.fullmatch(t)
        return next(g for g in m.groups() if g) if m else None
    m = _CHOICE_PRED.match(t)
    if m is None:
        return None
    letters = {x.upper() for x in re.findall(r"(?<![A-Za-z\\])\(?([A-Ea-e])\)?(?![A-Za-z])", t)}
    return m.group(1).upper() if len(letters) <= 1 else None  # "(A) and (C)" hedges


def choice_text(gold: str) -> str | None:
    """The option's text of a gold such as ``"(C) Cecile"``, lower-cased; None without one."""
    m = _CHOICE_GOLD_WITH_TEXT.fullmatch(unwrap_text(gold)[0])
    return m.group(4).strip().casefold() if m else None


def rules_out_letters(text: str) -> bool:
    """The reply rules options out ("D, pas B", "not A"): read it with ``choice_in_prose``."""
    return bool(_RULED_OUT.search(text))


def choice_in_prose(text: str) -> str | None:
    """The option letter a sentence-long reply ends on (see the patterns above), or None."""
    m = _PROSE_OPENING.match(text)
    if m:
        return m.group(1)
    text = _RULED_OUT.sub(" ", text)
    committed = [(m.group(1) or m.group(2)).upper() for m in _PROSE_COMMITTED.finditer(text)]
    if committed:
        return committed[-1]
    letters = _PROSE_LETTER.findall(text)
    return letters[-1] if letters else None


def as_text(s: str) -> str | None:
    """A words-only answer ("odd", "\\text{Devon}", "no solution"), lower-cased; else None."""
    t, had_text = unwrap_text(s)
    if re.fullmatch(r"[A-Za-z][A-Za-z'\- ]*", t) and (had_text or re.search(r"[A-Za-z]{3,}", t)):
        return re.sub(r"^(?:an?|the)\s+(?=\S)", "", t.casefold())  # "an ellipse" is "ellipse"
    return None
