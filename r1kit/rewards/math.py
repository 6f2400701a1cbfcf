"""Final-answer extraction and equivalence for math problems.

``extract_answer`` finds what the model committed to; ``answers_match`` decides whether it equals
the reference: plain numbers are compared exactly in-process, anything else goes to math-verify
in a worker process with a timeout (see ``r1kit.rewards.verifier``).
"""

from __future__ import annotations

import re
from fractions import Fraction

from r1kit.rewards.format import ANSWER_CLOSE, ANSWER_OPEN
from r1kit.rewards.verifier import DEFAULT_TIMEOUT_S, VERIFIER

# Longer "answers" are not answers; refusing them also bounds the work sympy is handed.
MAX_ANSWER_CHARS = 1000

_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")
_ANY_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|-?\d+(?:\.\d+)?")
_BOX_COMMANDS = ("boxed", "fbox")


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces, stripped.

    Nested braces are matched (``\\boxed{\\frac{1}{2}}`` -> ``\\frac{1}{2}``), escaped braces
    ``\\{ \\}`` do not count, and an unclosed box (a truncated completion) is ignored in favour of
    the last complete one. ``\\boxed 5`` (no braces) gives ``5``. One left-to-right pass.
    """
    best_start, best_end = -1, -1
    stack: list[int] = []  # per open brace: content start if it opens a box, else -1
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            cmd = next((b for b in _BOX_COMMANDS if text.startswith(b, i + 1)), None)
            if cmd is None:
                i += 2  # skip the escaped character: "\{" is a literal brace
                continue
            j = i + 1 + len(cmd)
            k = j
            while k < n and text[k] == " ":
                k += 1
            if k < n and text[k] == "{":
                stack.append(k + 1)
                i = k + 1
                continue
            if k > j and k < n:  # "\boxed 5": the token up to whitespace or "$"
                end = k
                while end < n and not text[end].isspace() and text[end] != "$":
                    end += 1
                if k > best_start:
                    best_start, best_end = k, end
                i = end
                continue
            i = j
            continue
        if c == "{":
            stack.append(-1)
        elif c == "}" and stack:
            start = stack.pop()
            if start > best_start:
                best_start, best_end = start, i
        i += 1
    if best_start < 0:
        return None
    return text[best_start:best_end].strip() or None


def answer_tag_content(response: str) -> str | None:
    """Text inside the last ``<answer>...</answer>`` pair, stripped; None if there is none."""
    close = response.rfind(ANSWER_CLOSE)
    if close < 0:
        return None
    start = response.rfind(ANSWER_OPEN, 0, close)
    if start < 0:
        return None
    return response[start + len(ANSWER_OPEN) : close].strip()


def extract_answer(response: str, fallback_last_number: bool = False) -> str | None:
    """The final answer a response commits to.

    The last ``<answer>`` content (unwrapping a ``\\boxed{}`` inside it), else the last
    ``\\boxed{}`` anywhere, else -- only if ``fallback_last_number`` -- the last number in the text.
    """
    content = answer_tag_content(response)
    if content:
        return last_boxed(content) or content
    boxed = last_boxed(response)
    if boxed is not None:
        return boxed
    if fallback_last_number:
        numbers = _ANY_NUMBER.findall(response)
        if numbers:
            return numbers[-1].replace(",", "")
    return None


def parse_number(text: str) -> Fraction | None:
    """A plain decimal number written the way answers are -> exact Fraction, else None.

    Tolerates surrounding whitespace and ``$``, a trailing ``%`` or sentence ``.``, and commas as
    thousands separators (``"1,000"``; but ``"1,2"`` is not a number). ``"7.0"`` -> 7.
    """
    s = text.strip()
    if s.startswith("\\$"):
        s = s[2:]
    s = s.strip("$").strip()
    for suffix in ("\\%", "%", "."):
        if s.endswith(suffix):
            s = s[: -len(suffix)].rstrip()
    s = s.replace("{,}", ",")
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    if not _PLAIN_NUMBER.fullmatch(s):
        return None
    return Fraction(s)


def _latex(text: str) -> str:
    # math-verify only reads latex between delimiters; without them it may drop the answer.
    return text if "$" in text or "\\boxed" in text else f"${text}$"


def answers_match(prediction: str | None, gold: str | None, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """True when ``prediction`` is mathematically equal to ``gold``.

    Plain numbers on both sides are compared exactly (``"1,000"`` == ``"1000.0"``); otherwise
    math-verify decides (``\\frac{1}{2}`` == ``0.5``, ``x^2+1`` == ``1+x^2``). Any error, an
    over-long answer or a comparison slower than ``timeout_s`` counts as no match. Safe to call
    from any thread.
    """
    if prediction is None or gold is None:
        return False
    prediction, gold = str(prediction).strip(), str(gold).strip()
    if not prediction or not gold:
        return False
    if len(prediction) > MAX_ANSWER_CHARS or len(gold) > MAX_ANSWER_CHARS:
        return False
    a, b = parse_number(prediction), parse_number(gold)
    if a is not None and b is not None:
        return a == b
    try:
        return VERIFIER.equivalent(_latex(gold), _latex(prediction), timeout_s)
    except Exception:  # noqa: BLE001 - a verifier problem is a wrong answer, never a crash
        return False
