"""Does a model's answer equal the reference? ``answers_match`` is the one entry point.

The cheap steps run here, in-process: reading the answer out of a whole response or an answer tag
(``r1kit.rewards.extract``), pulling the gold answer out of a stored solution (GSM8K
``#### 72``, the last ``\\boxed{}`` of a MATH solution), and comparing two plain numbers exactly
(``Fraction``), with the percent rule below. Everything else -- LaTeX, sympy -- is
``r1kit.rewards.equivalence.verify_pair``, run in a worker process under a deadline (see
``r1kit.rewards.verifier``).

Percent: ``x%`` may stand for ``x`` or for ``x/100``, on either side, so ``25\\%`` equals both
``25`` and ``0.25``, and a gold ``0.25`` equals ``25%``; but a currency amount is never a percent
(``\\$5`` != ``5\\%``), and without a percent sign ``25`` != ``0.25``.
"""

from __future__ import annotations

import re
from fractions import Fraction

from r1kit.rewards.extract import (  # noqa: F401 - the extraction API, also importable from here
    answer_tag_content,
    extract_answer,
    final_boxed,
    gold_answer,
    last_boxed,
    strip_answer,
)
from r1kit.rewards.percent import marks, percent_agrees
from r1kit.rewards.verifier import DEFAULT_TIMEOUT_S, VERIFIER

# Longer answers are not refused for their length (a 300-digit integer, a sum of hundreds of
# terms are fine: the verifier's deadline bounds the work); past this they are not answers.
MAX_ANSWER_CHARS = 20_000

_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_THOUSANDS = re.compile(r"[+-]?(?!0,)\d{1,3}(?:,\d{3})+(?:\.\d*)?")
_SPACED_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?: \d{3})+(?:\.\d*)?")


def parse_number(text: str) -> Fraction | None:
    """A plain decimal number written the way answers are -> exact Fraction, else None.

    Tolerates surrounding whitespace and ``$``, a trailing ``%`` or sentence ``.``, and commas as
    thousands separators (``"1,000"``, ``1{,}000``, ``1\\,000``, ``"1 000"``; but ``"1,2"`` is not a
    number). ``"7.0"`` -> 7. ``"50%"`` -> 50: what a percent sign means is ``answers_match``'s
    rule (module docstring), not this function's.
    """
    s = text.strip()
    if s.startswith("\\$"):
        s = s[2:]
    s = s.strip("$").strip()
    for suffix in ("\\%", "%", "."):
        if s.endswith(suffix):
            s = s[: -len(suffix)].rstrip()
    s = s.replace("{,}", ",").replace("\\,", "").replace("\\!", "")
    if _THOUSANDS.fullmatch(s) or _SPACED_THOUSANDS.fullmatch(s):
        s = s.replace(",", "").replace(" ", "")
    if not _PLAIN_NUMBER.fullmatch(s):
        return None
    return Fraction(s)


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def answers_match(prediction: str | None, gold: str | None, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """True when the answer in ``prediction`` is mathematically equal to the answer in ``gold``.

    ``gold`` may be a whole reference solution (GSM8K ``#### 72``, a MATH solution with
    ``\\boxed{}``); ``prediction`` may be a whole response or an answer (``<answer>`` tags, a box,
    ``$...$``, a lead-in: ``r1kit.rewards.extract.strip_answer`` reads it, in the order its module
    docstring gives). Plain numbers on both sides are compared exactly (``"1,000"`` == ``"1000.0"``,
    ``"0.1"`` != ``"0.1000001"``); everything else is ``equivalence.verify_pair`` in a worker
    process (LaTeX, sympy, intervals, sets, equations; see that module for the rules). Any error,
    an over-long answer or a comparison slower than ``timeout_s`` counts as no match. Safe to call
    from any thread.
    """
    if prediction is None or gold is None:
        return False
    gold_text = gold_answer(str(gold))
    pred_text = strip_answer(str(prediction))
    if not pred_text or not gold_text:
        return False
    if len(pred_text) > MAX_ANSWER_CHARS or len(gold_text) > MAX_ANSWER_CHARS:
        return False
    a, b = parse_number(pred_text), parse_number(gold_text)
    if a is not None and b is not None:
        return percent_agrees(a, marks(pred_text), b, marks(gold_text))
    if _same_text(pred_text, gold_text):
        return True
    try:
        return VERIFIER.equivalent(gold_text, str(prediction), timeout_s)  # it reads the response itself
    except Exception:  # noqa: BLE001 - a verifier problem is a wrong answer, never a crash
        return False
