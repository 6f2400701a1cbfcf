"""Numbers written in English words: "seven", "twenty-one", "one hundred and five", "one half",
"three quarters", "minus two". ``words_to_number`` reads a whole phrase; ``NUMBER_WORDS`` finds
the phrases inside a text. Exact: the result is a Fraction, never a float.
"""

from __future__ import annotations

import re
from fractions import Fraction

_UNITS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7, "eight": 8,
    "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
    "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
_TENS = {"twenty": 20, "thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80, "ninety": 90}
_SCALES = {"hundred": 100, "thousand": 10**3, "million": 10**6, "billion": 10**9, "trillion": 10**12}
# Denominators: "one half", "two thirds", "three quarters", "five eighths".
_PARTS = {
    "half": 2, "halves": 2, "third": 3, "thirds": 3, "quarter": 4, "quarters": 4, "fourth": 4, "fourths": 4,
    "fifth": 5, "fifths": 5, "sixth": 6, "sixths": 6, "seventh": 7, "sevenths": 7, "eighth": 8, "eighths": 8,
    "ninth": 9, "ninths": 9, "tenth": 10, "tenths": 10,
}
_SIGNS = {"minus": -1, "negative": -1}

_WORD = "|".join(sorted([*_UNITS, *_TENS, *_SCALES, *_PARTS, *_SIGNS, "a", "an", "and"], key=len, reverse=True))
# A run of number words (with hyphens or spaces between them); checked by ``words_to_number``.
NUMBER_WORDS = re.compile(rf"(?<![A-Za-z])(?:{_WORD})(?:[\s-]+(?:{_WORD}))*(?![A-Za-z])", re.IGNORECASE)
_NUMERALS = frozenset([*_UNITS, *_TENS])


def _whole(tokens: list[str]) -> int | None:
    """"one hundred and five" -> 105; None if the tokens are not a whole number in words."""
    total, current, seen = 0, 0, False
    last = None  # "unit" | "ten" | "scale"
    for t in tokens:
        if t == "and":
            if last != "scale":
                return None
            continue
        if t in _UNITS:
            if last in ("unit",) or (last == "ten" and _UNITS[t] >= 10) or (last == "ten" and _UNITS[t] == 0):
                return None
            current += _UNITS[t]
            last = "unit"
        elif t in _TENS:
            if last in ("unit", "ten"):
                return None
            current += _TENS[t]
            last = "ten"
        elif t in _SCALES:
            if last is None or last == "scale" and _SCALES[t] <= 100:
                return None
            scale = _SCALES[t]
            if scale == 100:
                current *= 100
            else:
                total += max(current, 1) * scale
                current = 0
            last = "scale"
        else:
            return None
        seen = True
    return total + current if seen else None


def words_to_number(text: str) -> Fraction | None:
    """The value of ``text`` if all of it is a number in words, else None.

    ``"twenty-one"`` -> 21, ``"one half"`` / ``"a half"`` -> 1/2, ``"two thirds"`` -> 2/3,
    ``"minus five"`` -> -5. A lone "a", "an" or "and" is not a number."""
    tokens = [t for t in re.split(r"[\s-]+", text.strip().lower()) if t]
    if not tokens or not any(t in _NUMERALS or t in _PARTS for t in tokens):
        return None
    sign = 1
    if tokens[0] in _SIGNS:
        sign, tokens = _SIGNS[tokens[0]], tokens[1:]
    if tokens and tokens[-1] in _PARTS:
        whole = Fraction(0)
        if "and" in tokens:  # "two and a half", "one and three quarters"
            cut = len(tokens) - 1 - tokens[::-1].index("and")
            before = _whole(tokens[:cut])
            if before is None:
                return None
            whole, tokens = Fraction(before), tokens[cut + 1 :]
        part = _fraction(tokens)
        return None if part is None else sign * (whole + part)
    value = _whole(tokens)
    return None if value is None else sign * Fraction(value)


def _fraction(tokens: list[str]) -> Fraction | None:
    """"three quarters" -> 3/4, "a half" / "half" -> 1/2."""
    head = tokens[:-1]
    numerator = 1 if head in (["a"], ["an"], []) else _whole(head)
    return None if numerator is None else Fraction(numerator, _PARTS[tokens[-1]])


_CHINESE_DIGITS = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_CHINESE_UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000}
CHINESE_NUMBER = re.compile(f"[{''.join(_CHINESE_DIGITS)}{''.join(_CHINESE_UNITS)}]+")


def chinese_to_number(text: str) -> int | None:
    """A Chinese numeral below 100,000,000 ("三" = 3, "十二" = 12, "两百零五" = 205), else None."""
    if not CHINESE_NUMBER.fullmatch(text):
        return None
    total = section = digit = 0
    seen_digit = False
    for ch in text:
        if ch in _CHINESE_DIGITS:
            digit, seen_digit = _CHINESE_DIGITS[ch], True
        elif ch == "万":
            total += (section + digit) * 10_000
            section = digit = 0
        else:
            section += (digit if seen_digit else 1) * _CHINESE_UNITS[ch]  # "十二": the 1 is implied
            digit, seen_digit = 0, False
    return total + section + digit
