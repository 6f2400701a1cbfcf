"""Text normalisation of an answer before it is compared (rule 1 of ``r1kit.rewards.equivalence``):
LaTeX spacing, sizing and style commands, text wrappers, units, currency, degrees, percent signs
and thousands separators removed; spellings made one."""

from __future__ import annotations

import re

from r1kit.rewards.extract import PLAIN_FUNCTION
from r1kit.rewards.number_words import NUMBER_WORDS, chinese_to_number, words_to_number

_DELIMITERS = re.compile(r"(?<!\\)\\[()\[\]]|\$")
_SIZING = re.compile(r"\\(?:left|right)(?![a-zA-Z])\s*\.?|\\[bB]igg?[lr]?(?![a-zA-Z])")
_STYLE = re.compile(r"\\(?:displaystyle|textstyle|scriptstyle|limits|nolimits)(?![a-zA-Z])")
_TEXT_COMMANDS = re.compile(
    r"\\(?:text(?:bf|it|rm|normal|sf|tt|up)?|math(?:rm|bf|it|sf|tt|normal)|mbox|operatorname)\s*\{"
)
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}(?:\s*[CF](?![A-Za-z]))?|\^\s*\\circ|\\circ|\\degree|°\s*[CF](?![A-Za-z])|°")
# "\cos 60^\circ", "\sin(30°)": a trigonometric function of an angle in degrees -> radians.
_TRIG_DEGREES = re.compile(
    r"(\\(?:sin|cos|tan|cot|sec|csc))\s*(\()?\s*(\d+(?:\.\d+)?)\s*(?:\^\s*\{?\s*\\circ\s*\}?|°|\\degree)\s*(?(2)\))"
)
# Text wrappers around a number are wrappers, not words: \text{5}, \mathbf{12}; so is one
# around a lone letter that is the whole answer: \text{e}, \mathrm{x} (but "4 \text{ m}" is a unit).
_TEXT_AROUND_VALUE = re.compile(
    r"\\text\{(\s*[^{}A-Za-z]*\d[^{}A-Za-z]*)\}|^\\text\{\s*([A-Za-z])\s*\}$|\\text\{\s*([ei])\s*\}(?=\s*\^)"
)  # ... and Euler's e or i raised to a power: \mathrm{e}^2
# "1, 2, 3, ..." goes on: an ellipsis is kept as one token, never dropped as punctuation.
_ELLIPSIS = re.compile(r"\\[lc]?dots(?![a-zA-Z])|\.{3}|…")
# "5^{\mathrm{th}}", "21st", "3rd": an ordinal is its number.
_ORDINAL = re.compile(r"(?<=\d)\s*(?:\^\s*\{\s*\\text\{\s*(?:st|nd|rd|th)\s*\}\s*\}|\^\{?(?:st|nd|rd|th)\}?|(?:st|nd|rd|th)(?![A-Za-z]))")
_EQUALS_WORDS = re.compile(r"\s+(?:equals|is\s+equal\s+to)\s+", re.IGNORECASE)
_PERCENT = re.compile(r"\\?%")
_SPELLINGS = {
    "−": "-", "–": "-", "×": "\\times ", "·": "\\cdot ", "÷": "\\div ", "π": "\\pi ",
    "∞": "\\infty ", "≤": "\\le ", "≥": "\\ge ", "≠": "\\ne ", "√": "\\sqrt", "∪": "\\cup ",
    "\\langle": "⟨", "\\rangle": "⟩", "\\lbrace": "\\{", "\\rbrace": "\\}", "\\lbrack": "[",
    "\\rbrack": "]", "<=": "\\le ", ">=": "\\ge ", "!=": "\\ne ", "\\neq": "\\ne ",
    "\\leqslant": "\\le ", "\\geqslant": "\\ge ", "\\leq": "\\le ", "\\geq": "\\ge ",
    "\\lt": "<", "\\gt": ">", "**": "^", "\\varnothing": "\\emptyset",
    "\\infinity": "\\infty", "²": "^2", "³": "^3", "⁴": "^4", "∛": "\\sqrt[3]", "∜": "\\sqrt[4]",
    "½": "\\frac{1}{2}", "⅓": "\\frac{1}{3}", "⅔": "\\frac{2}{3}", "¼": "\\frac{1}{4}",
    "¾": "\\frac{3}{4}", "⅕": "\\frac{1}{5}", "⅙": "\\frac{1}{6}", "⅛": "\\frac{1}{8}",
}
_SPELLINGS_RE = re.compile("|".join(re.escape(k) for k in sorted(_SPELLINGS, key=len, reverse=True)))
# "√12", "∛27": the root sign covers the whole number after it (LaTeX's \sqrt12 would not)
_ROOT_SIGN = re.compile(r"([√∛∜])\s*(\d+(?:\.\d+)?)")
_ROOT_INDEX = {"√": "", "∛": "[3]", "∜": "[4]"}
_PLAIN_SQRT = re.compile(r"(?<![\\A-Za-z])sqrt\s*\(")
_WORD_CONSTANTS = [
    (re.compile(r"(?<![\\A-Za-z])(?:infinity|inf)(?![A-Za-z])"), r"\\infty"),
    (re.compile(r"(?<![\\A-Za-z])pi(?![A-Za-z])"), r"\\pi"),
]
# "5 million" is not 5 (PRM800K's grader does the same).
_SCALES = {"thousand": 3, "million": 6, "billion": 9, "trillion": 12}
_SCALE_WORDS = re.compile(r"\s*(?:\\text\{\s*)?\b(thousand|million|billion|trillion)\b\s*\}?", re.IGNORECASE)
_AND_OR = re.compile(r"\\text\{\s*(?:and|or)\s*\}|(?<![A-Za-z\\])(?:and|or)(?![A-Za-z])")
_THOUSANDS = re.compile(r"(?<![\d.])(?!0,)\d{1,3}(?:,\d{3})+(?![\d,])")  # "0,111" is no thousands
# A unit at the end: "\text{ cm}^2", " apples", "cm" right after a digit.
# Two-letter words are units only when they are known units ("2 ab" is a product).
_SHORT_UNITS = r"sq\.?\s*(?:m|cm|km|ft|in|yd|mi|units?)|cm|mm|km|kg|mg|ft|yd|mi|hr|lb|oz|ml|mL|in|am|pm|AM|PM"
# Unit words a model glues to a number: "10weeks", "12apples" is not one (any word of three or
# more letters after a space is a unit already; glued, only these are).
_GLUED_UNITS = (
    "mph|lbs?|hrs?|mins?|secs?|sq|days?|weeks?|months?|years?|hours?|minutes?|seconds?|meters?|metres?"
    "|miles?|feet|foot|inch(?:es)?|grams?|kilograms?|liters?|litres?|dollars?|cents?|euros?|pounds?|units?"
)
_CURRENCY_WORD = re.compile(r"^\s*(?:rs|inr|usd|eur|gbp)\s*\.?\s*(?=\d)", re.IGNORECASE)
_TRAILING_UNIT = re.compile(
    rf"(?:\s*\\text\{{[^{{}}]*\}}|\s+(?:[A-Za-z]{{3,}}|{_SHORT_UNITS})\.?(?:/[A-Za-z]+)?"
    rf"|(?<=\d)(?:{_SHORT_UNITS}|{_GLUED_UNITS})(?:/[A-Za-z]+)?"
    r"|\s*m(?=\s*\^\s*\{?[23]\}?\s*$)|\s+[A-Za-z]{1,3}/[A-Za-z]{1,3})"
    r"(?:\s*\^\s*\{?[23]\}?)?\s*$"
)
_FRAC_SHORT = [
    (re.compile(r"\\frac\s*(\d)\s*(\d)"), r"\\frac{\1}{\2}"),
    (re.compile(r"\\frac\s*(\d)\s*\{"), r"\\frac{\1}{"),
    (re.compile(r"\\frac\s*(\{[^{}]*\})\s*(\d)"), r"\\frac\1{\2}"),
    (re.compile(r"\\sqrt\s*(\[\d+\])?\s*(\d)"), r"\\sqrt\1{\2}"),
]


def _number_words_to_digits(s: str) -> str:
    """"seven" -> 7, "twenty-one apples" -> "21 apples", "one half" -> \\frac{1}{2}."""

    def digits(m: re.Match) -> str:
        value = words_to_number(m.group(0))
        if value is None:
            return m.group(0)
        if value.denominator == 1:
            return str(value.numerator)
        return f"\\frac{{{value.numerator}}}{{{value.denominator}}}"

    return NUMBER_WORDS.sub(digits, s)


def _plain_sqrt(s: str) -> str:
    """``sqrt(2x+1)`` -> ``\\sqrt{2x+1}`` up to the matching parenthesis, in one pass (nested ones
    too); with an unbalanced parenthesis nothing changes."""
    starts = {m.start(): m.end() for m in _PLAIN_SQRT.finditer(s)}  # "sqrt" -> just after its "("
    if not starts:
        return s
    out, stack, i = [], [], 0
    while i < len(s):
        if i in starts:
            out.append("\\sqrt{")
            stack.append(True)
            i = starts[i]
            continue
        if s[i] == "(":
            stack.append(False)
        elif s[i] == ")":
            if not stack:
                return s
            if stack.pop():
                out.append("}")
                i += 1
                continue
        out.append(s[i])
        i += 1
    return s if stack else "".join(out)


def normalize(text: str, thousands: bool = True) -> str:
    """LaTeX/plain answer -> canonical text (rule 1 of the module docstring). Idempotent.

    ``thousands``: read ``1,000`` as one number (otherwise it is the list 1, 000)."""
    s = text.replace("\n", " ").strip()
    s = re.sub(r"\\\$|[€£¥₹]", " ", s)
    s = _CURRENCY_WORD.sub(" ", s)  # "Rs. 500", "USD 20"
    s = _DELIMITERS.sub(" ", s)
    s = _STYLE.sub("", s)
    s = _SIZING.sub("", s)
    s = re.sub(r"(?<=\d),\\!\s*(?=\d{3}(?!\d))", ",", s)  # "32,\! 349": a thousands separator
    s = re.sub(r"(?<!\\)\\[!,]", "", s)  # "10,\!000", "1\,000"
    s = _ELLIPSIS.sub(lambda _: " \\ldots ", s)
    s = re.sub(r"(?<!\\)\\[;: ]|\\q?quad(?![a-zA-Z])|~", " ", s)
    s = re.sub(r"\\[dtc]frac(?![a-zA-Z])", r"\\frac", s)
    s = _ROOT_SIGN.sub(lambda m: f"\\sqrt{_ROOT_INDEX[m.group(1)]}{{{m.group(2)}}}", s)
    s = _SPELLINGS_RE.sub(lambda m: _SPELLINGS[m.group(0)], s)
    s = _TEXT_COMMANDS.sub(r"\\text{", s)
    s = _TEXT_AROUND_VALUE.sub(lambda m: next(g for g in m.groups() if g).strip(), s.strip())
    s = _TRIG_DEGREES.sub(lambda m: f"{m.group(1)}(\\frac{{{m.group(3)}\\pi}}{{180}})", s)
    s = _DEGREES.sub("", s)
    s = _EQUALS_WORDS.sub(" = ", s)
    s = _ORDINAL.sub("", s)
    s = _number_words_to_digits(s)
    chinese = chinese_to_number(s.strip())
    if chinese is not None:  # "三" is 3
        s = str(chinese)
    s = re.sub(r"(?<=\d)\s*[\u4e00-\u9fff]{1,3}$", "", s.strip())  # "5个", "12元", "3平方米": a unit
    s = _PERCENT.sub("", s)
    s = re.sub(r"\\text\{\s*(?:percent|percentage|degrees?)\s*\}", "", s)
    s = re.sub(r"(?<![A-Za-z\\])(?:percent|percentage|degrees?)(?![A-Za-z])", "", s)
    s = s.replace("{,}", ",")
    s = _SCALE_WORDS.sub(lambda m: f"\\times 10^{{{_SCALES[m.group(1).lower()]}}}", s)
    s = re.sub(r"\\text\{\s*\}", "", s)
    for pattern, repl in _WORD_CONSTANTS:
        s = pattern.sub(repl, s)
    # calculator / sympy notation: "7*sin(pi*x/5)", "ln(a)*a^x", "sqrt(2x+1)" are LaTeX functions
    s = PLAIN_FUNCTION.sub(r"\\\1", _plain_sqrt(s))
    s = re.sub(r"\\text\{\s*(\\[A-Za-z]+)\s*\}", r"\1", s)  # \text{\infty}
    s = " ".join(s.split())
    if re.search(r"[\d\\]", s):  # "2 and 3" is a list; "Tom and Jerry" is a text answer
        s = _AND_OR.sub(",", s)
    for pattern, repl in _FRAC_SHORT:
        s = pattern.sub(repl, s)
    rest = s
    for _ in range(3):  # "5 \text{ feet}", "12 square units": up to three words after a value
        m = _TRAILING_UNIT.search(rest)
        if not m:
            break
        rest = rest[: m.start()].rstrip()
        if not rest:
            break
        if re.search(r"[\d})\]]$|\\(?:pi|infty)$", rest):
            s = rest
    if thousands and re.fullmatch(r"[+-]?\d{1,3}(?: \d{3})+(?:\.\d+)?", s):
        s = s.replace(" ", "")  # "1 000"
    if thousands and not re.search(r"[()\[\]{}⟨⟩]", s) and "," in s:
        merged = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), s)
        if "," not in merged:  # every comma was a thousands separator
            s = merged
    elif thousands and ", " in s and not re.search(r",(?! |\d{3}(?!\d))", s):
        s = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", s)  # "(1,000, 2)": items are split by ", "
    s = re.sub(r"(?<!\.)[.,;]+$|(?<!\\)\\$", "", s.strip()).strip()  # "185\\": a stray backslash
    if s.startswith("+") and not s.startswith("+-"):
        s = s[1:].strip()
    return " ".join(s.split())


def canon(text: str) -> str:
    """Spacing that carries no meaning removed, for "the same text" checks."""
    return re.sub(r"\s*([^\w\s\\])\s*", r"\1", text)


def unwrap_text(s: str) -> tuple[str, bool]:
    out = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    return " ".join(out.split()), out != s
