"""The percent rule, shared by ``answers_match``'s fast path and the verifier: ``x%`` stands for
``x`` or ``x/100`` on either side; a currency amount is never a percent. Kept apart from
``equivalence`` so the fast path imports no more than it needs (reward workers import it on
their first call, inside its deadline)."""

from __future__ import annotations

import re

_PERCENT_MARK = re.compile(r"%|(?<![A-Za-z])percent(?:age)?(?![A-Za-z])", re.IGNORECASE)
_CURRENCY_MARK = re.compile(
    r"\\\$|[€£¥₹]|^\s*\$\s*[\d.,]+\s*$|(?<![A-Za-z])(?:dollars?|cents?|euros?|USD|EUR|GBP)(?![A-Za-z])"
)


def marks(text: str) -> frozenset[str]:
    """Which of "percent" and "currency" an answer's text carries (signs or words)."""
    found = set()
    if _PERCENT_MARK.search(text):
        found.add("percent")
    if _CURRENCY_MARK.search(text):
        found.add("currency")
    return frozenset(found)


def percent_conflict(marks_a: frozenset[str], marks_b: frozenset[str]) -> bool:
    """A currency amount on one side and a percent on the other: never the same answer."""
    return ("percent" in marks_a and "currency" in marks_b) or ("currency" in marks_a and "percent" in marks_b)


def percent_agrees(a, marks_a: frozenset[str], b, marks_b: frozenset[str]) -> bool:
    """Two exact numbers (signs dropped) under the percent rule: ``x%`` stands for ``x`` or
    ``x/100``, on either side; a currency amount is never a percent."""
    if percent_conflict(marks_a, marks_b):
        return False
    if a == b:
        return True
    if "percent" in marks_a and "percent" not in marks_b:
        return a / 100 == b
    if "percent" in marks_b and "percent" not in marks_a:
        return b / 100 == a
    return False
