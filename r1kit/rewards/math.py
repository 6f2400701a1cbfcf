"""Final-answer extraction and equivalence for math problems.

``extract_answer`` finds what a model committed to; ``answers_match`` decides whether it equals a
dataset's reference. The cheap steps run here, in-process: pulling the gold answer out of a
stored solution (GSM8K ``#### 72``, the last ``\\boxed{}`` of a MATH solution), stripping the
wrapping of a prediction (``$...$``, ``\\boxed{}``, "The answer is"), and comparing two plain
numbers exactly (``Fraction``). Everything else -- LaTeX, sympy, math-verify -- is
``r1kit.rewards.equivalence.verify_pair``, run in a worker process under a deadline (see
``r1kit.rewards.verifier``).
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
# What may stand between two boxes that together are one answer: "\boxed{1}, \boxed{2}",
# "$\boxed{1}$ and $\boxed{2}$".
_BOX_SEPARATOR = re.compile(r"[\s$,;]*(?:(?:and|or|,|;)[\s$,;]*)?", re.IGNORECASE)
_SPACING = re.compile(r"\\text\{([^{}]*)\}|\\q?quad|\\[,;: ]")
# "The final answer is", "Answer:", "So the answer is" ... in front of a prediction.
_LEAD_IN = re.compile(
    r"^\s*(?:\*\*)?(?:(?:so|thus|therefore|hence)\s*,?\s+)?(?:the\s+)?(?:final\s+)?answer"
    r"(?:\s+is\s*:?|\s*:|\s*=)(?:\*\*)?\s*",
    re.IGNORECASE,
)
_TRAILER = re.compile(r"\s*(?:I hope it is correct\.?|\.)\s*$")


def _boxes(text: str) -> list[tuple[int, int, int]]:
    """Every complete ``\\boxed{...}``/``\\fbox{...}`` as ``(command_start, content_start,
    content_end)``, in order of ``content_start``. One left-to-right pass; escaped braces
    ``\\{ \\}`` do not count, an unclosed box is left out, ``\\boxed 5`` boxes the token ``5``."""
    found: list[tuple[int, int, int]] = []
    stack: list[tuple[int, int]] = []  # per open brace: (command start, content start), or -1s
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
                stack.append((i, k + 1))
                i = k + 1
                continue
            if j < k < n:  # "\boxed 5": the token up to whitespace or "$"
                end = k
                while end < n and not text[end].isspace() and text[end] != "$":
                    end += 1
                found.append((i, k, end))
                i = end
                continue
            i = j
            continue
        if c == "{":
            stack.append((-1, -1))
        elif c == "}" and stack:
            cmd_start, start = stack.pop()
            if start >= 0:
                found.append((cmd_start, start, i))
        i += 1
    found.sort(key=lambda box: box[1])
    return found


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) with balanced braces, stripped.

    Nested braces are matched (``\\boxed{\\frac{1}{2}}`` -> ``\\frac{1}{2}``), escaped braces
    ``\\{ \\}`` do not count, and an unclosed box (a truncated completion) is ignored in favour of
    the last complete one. ``\\boxed 5`` (no braces) gives ``5``. One left-to-right pass.
    """
    boxes = _boxes(text)
    if not boxes:
        return None
    _, start, end = boxes[-1]
    return text[start:end].strip() or None


def final_boxed(text: str) -> str | None:
    """Like ``last_boxed``, but a run of boxes that ends the answer and is separated only by
    commas, "and" or "or" counts as one list: ``x=\\boxed{1}, \\boxed{2}`` -> ``"1, 2"``."""
    boxes = [b for b in _boxes(text) if text[b[1] : b[2]].strip()]
    if not boxes:
        return None
    # outermost boxes only: a box inside another box is part of that box's content
    outer: list[tuple[int, int, int]] = []
    for box in sorted(boxes, key=lambda b: b[0]):
        if outer and box[0] < outer[-1][2]:
            continue
        outer.append(box)
    parts = [outer[-1]]
    for box in reversed(outer[:-1]):
        gap = _SPACING.sub(lambda m: f" {m.group(1) or ''} ", text[box[2] + 1 : parts[-1][0]])
        if not _BOX_SEPARATOR.fullmatch(gap) or not gap.strip(" $"):
            break
        parts.append(box)
    return ", ".join(text[s:e].strip() for _, s, e in reversed(parts))


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
    Boxes written as one list (``\\boxed{1}, \\boxed{2}``) are kept together: ``"1, 2"``.
    """
    content = answer_tag_content(response)
    if content:
        return _unbox(content)
    if final_boxed(response) is not None:
        return _unbox(response)
    if fallback_last_number:
        numbers = _ANY_NUMBER.findall(response)
        if numbers:
            return numbers[-1].replace(",", "")
    return None


def _unwrap_math(text: str) -> str:
    """``$x$``, ``$$x$$``, ``\\(x\\)``, ``\\[x\\]`` -> ``x`` (only when they wrap all of it)."""
    s = text.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if len(s) > len(left) + len(right) and s.startswith(left) and s.endswith(right):
            inner = s[len(left) : -len(right)]
            if left != "$" or "$" not in inner:
                return inner.strip()
    return s


def _unbox(text: str) -> str:
    for _ in range(3):  # \boxed{\boxed{5}} -> 5
        if "\\boxed" not in text and "\\fbox" not in text:
            break
        inner = final_boxed(text)
        if inner is None or inner == text:
            break
        text = inner
    return text


def gold_answer(gold: str) -> str:
    """The final answer inside a reference as datasets store it.

    GSM8K solutions end in ``#### 72`` (the text after the last ``####``); MATH solutions box
    their answer (the last ``\\boxed{}``); anything else is the answer itself. Math delimiters
    around the whole answer are dropped.
    """
    text = str(gold).strip()
    _, sep, tail = text.rpartition("####")
    if sep and tail.strip():
        text = tail.strip()
    return _unwrap_math(_unbox(text))


def strip_answer(prediction: str) -> str:
    """A model's final answer without its wrapping.

    The ``<answer>`` content if the tags are there, the boxed part if there is a box, then without
    a lead-in ("The final answer is", "Answer:"), math delimiters around the whole (``$...$``,
    ``\\(...\\)``) and a closing sentence full stop.
    """
    text = str(prediction).strip()
    content = answer_tag_content(text)
    if content:
        text = content
    _, sep, tail = text.rpartition("####")  # a GSM8K-style "#### 72"
    if sep and tail.strip():
        text = tail.strip()
    text = _unbox(text)
    for _ in range(2):  # "Answer: $5$." -> "$5$" -> "5"
        text = _unwrap_math(_TRAILER.sub("", _LEAD_IN.sub("", text, count=1)))
    return text.strip()


def parse_number(text: str) -> Fraction | None:
    """A plain decimal number written the way answers are -> exact Fraction, else None.

    Tolerates surrounding whitespace and ``$``, a trailing ``%`` or sentence ``.``, and commas as
    thousands separators (``"1,000"``, ``1{,}000``, ``1\\,000``; but ``"1,2"`` is not a number).
    ``"7.0"`` -> 7. The percent sign is a unit here: ``"50%"`` -> 50, never 0.5.
    """
    s = text.strip()
    if s.startswith("\\$"):
        s = s[2:]
    s = s.strip("$").strip()
    for suffix in ("\\%", "%", "."):
        if s.endswith(suffix):
            s = s[: -len(suffix)].rstrip()
    s = s.replace("{,}", ",").replace("\\,", "").replace("\\!", "")
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", "")
    if not _PLAIN_NUMBER.fullmatch(s):
        return None
    return Fraction(s)


def _same_text(a: str, b: str) -> bool:
    return " ".join(a.split()) == " ".join(b.split())


def answers_match(prediction: str | None, gold: str | None, timeout_s: float = DEFAULT_TIMEOUT_S) -> bool:
    """True when the answer in ``prediction`` is mathematically equal to the answer in ``gold``.

    ``gold`` may be a whole reference solution (GSM8K ``#### 72``, a MATH solution with
    ``\\boxed{}``); ``prediction`` may carry ``<answer>`` tags, a box, ``$...$`` or a lead-in.
    Plain numbers on both sides are compared exactly (``"1,000"`` == ``"1000.0"``,
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
        return a == b
    if _same_text(pred_text, gold_text):
        return True
    try:
        return VERIFIER.equivalent(gold_text, pred_text, timeout_s)
    except Exception:  # noqa: BLE001 - a verifier problem is a wrong answer, never a crash
        return False
