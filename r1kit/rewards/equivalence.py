"""Is a model's final answer equal to the reference? The slow half of ``answers_match``.

``verify_pair(gold, prediction)`` may run sympy for a long time, so callers go through the
deadline-guarded worker pool in ``r1kit.rewards.verifier`` and never call it from the training
process. It never raises: anything that goes wrong is "not equal".

How a pair is judged (each rule names the grader it follows where there is one):

1. Both sides are taken out of their wrapping (``math.gold_answer`` / ``math.strip_answer``) and
   normalised as text: ``\\left``/``\\right``, spacing commands, ``\\dfrac``/``\\tfrac``, math
   delimiters, ``\\text{...}`` units at the end ("5 \\text{ cm}", "12 apples"), currency signs,
   degree signs, thousands separators (``1,000``, ``1{,}000``, ``1\\,000``) and the percent sign
   are dropped (the Hendrycks MATH ``is_equiv`` normalisation and PRM800K's grader do the same).
   **Percent is a unit, not a factor of 1/100**: ``10\\%`` equals ``10`` but not ``0.1``, and
   ``1`` never equals ``100`` (Qwen2.5-Math's grader, with ``include_percentage``, and
   math-verify accept 0.1 for 10%).
2. Multiple choice: a gold letter ``A``-``E`` (``(B)``, ``\\text{(B)}``) needs the same letter.
   Text answers (``\\text{Devon}``, "odd") are compared as words, ignoring case.
3. Structure is read before any sympy: ``\\{...\\}`` sets and bare comma lists are unordered;
   ``(a, b)``, ``[a, b)``, ``\\langle a, b \\rangle`` are ordered and their brackets must match, so
   ``(1,2]`` != ``(1,2)`` and ``(1,2)`` != ``\\{1,2\\}``; unions of intervals are unordered;
   matrices compare entry by entry (a column vector also equals a tuple of its entries).
   ``a \\pm b`` is the list ``a+b, a-b``.
4. Equations: ``x = 3`` equals ``3`` (either side may name the variable), a chain ``x = 5+6 = 11``
   counts by its last right-hand side, but a false numeric statement such as ``9 = 1`` never
   equals ``1``. Two equations are equal when one is a nonzero multiple of the other
   (``2x+4y-3=0`` == ``y=-x/2+3/4``). Inequalities and intervals compare as sets of reals
   (``x > 3`` == ``(3, \\infty)``).
5. Numbers are exact: integers, decimals, ``a/b``, ``\\frac{a}{b}``, mixed numbers
   (``2\\frac{1}{2}`` = 5/2) and scientific notation become Fractions, so ``1e-7`` != ``2e-7``.
   Repeating decimals (``0.\\overline{3}``) are exact too. A decimal stands for an exact value
   only when it is that value rounded or truncated in its last digit (closer than one unit in the
   last place) *and* shows at least 6 significant digits: ``0.333333`` == ``\\frac{1}{3}``,
   ``1.414214`` == ``\\sqrt{2}``, but ``0.33`` and ``3.14`` are not. (math-verify rounds both
   sides to 6 decimal places instead, so it equates ``0.0000001`` with ``0.0000002``; Qwen2.5-Math
   uses a relative tolerance of 1e-4, so 100 == 99.9999.)
6. Everything else is parsed by latex2sympy (math-verify's LaTeX parser) and compared exactly:
   constant expressions by their difference evaluated to 60 digits relative to their size (so
   ``1/2004!`` != ``1/2006!``, which math-verify's ``evalf(chop=True)`` calls equal), expressions
   with variables by evaluating both at five rational points (negative ones too, so
   ``\\sqrt{x^2}`` != ``x``), falling back to ``sympy.simplify`` when the points cannot decide.
   Variable names matter (``x+1`` != ``y+1``).
7. A prediction that reads like prose ("so x equals 5") and did not match is given a second
   chance with the answer math-verify's extractor finds in it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache

from r1kit.rewards.math import gold_answer, strip_answer

# A decimal stands for an exact value only with at least this many significant digits.
APPROX_MIN_SIGNIFICANT_DIGITS = 6
# Digits for evaluating constant expressions, and the relative size of a difference that still
# counts as zero at that precision.
EVAL_DIGITS = 60
ZERO_RELATIVE = Fraction(1, 10**40)
# Scientific notation beyond this exponent is not turned into an exact Fraction.
MAX_EXPONENT = 1000


def verify_pair(gold: str, prediction: str) -> bool:
    """True when ``prediction`` is mathematically equal to ``gold`` (rules in the module
    docstring). May be slow (sympy); never raises."""
    try:
        g = gold_answer(str(gold))
        p = strip_answer(str(prediction))
        if not g or not p:
            return False
        if _equivalent(g, p):
            return True
        if _reads_like_prose(p):
            found = _math_verify_extraction(p)
            if found and found != p:
                return _equivalent(g, found)
        return False
    except Exception:  # noqa: BLE001 - sympy raises anything; RecursionError, MemoryError too
        return False


# ---------------------------------------------------------------------------------------------
# Text normalisation


_DELIMITERS = re.compile(r"(?<!\\)\\[()\[\]]|\$")
_SIZING = re.compile(r"\\(?:left|right)(?![a-zA-Z])\s*\.?|\\[bB]igg?[lr]?(?![a-zA-Z])")
_STYLE = re.compile(r"\\(?:displaystyle|textstyle|scriptstyle|limits|nolimits)(?![a-zA-Z])")
_TEXT_COMMANDS = re.compile(
    r"\\(?:text(?:bf|it|rm|normal|sf|tt|up)?|math(?:rm|bf|it|sf|tt|normal)|mbox|operatorname)\s*\{"
)
_DEGREES = re.compile(r"\^\s*\{\s*\\circ\s*\}|\^\s*\\circ|\\circ|\\degree|°")
_PERCENT = re.compile(r"\\?%")
_SPELLINGS = {
    "−": "-", "–": "-", "×": "\\times ", "·": "\\cdot ", "÷": "\\div ", "π": "\\pi ",
    "∞": "\\infty ", "≤": "\\le ", "≥": "\\ge ", "≠": "\\ne ", "√": "\\sqrt", "∪": "\\cup ",
    "\\langle": "⟨", "\\rangle": "⟩", "\\lbrace": "\\{", "\\rbrace": "\\}", "\\lbrack": "[",
    "\\rbrack": "]", "<=": "\\le ", ">=": "\\ge ", "!=": "\\ne ", "\\neq": "\\ne ",
    "\\leqslant": "\\le ", "\\geqslant": "\\ge ", "\\leq": "\\le ", "\\geq": "\\ge ",
    "\\lt": "<", "\\gt": ">", "**": "^", "\\varnothing": "\\emptyset",
    "\\infinity": "\\infty",
}
_SPELLINGS_RE = re.compile("|".join(re.escape(k) for k in sorted(_SPELLINGS, key=len, reverse=True)))
_WORD_CONSTANTS = [
    (re.compile(r"(?<![\\A-Za-z])(?:infinity|inf)(?![A-Za-z])"), r"\\infty"),
    (re.compile(r"(?<![\\A-Za-z])pi(?![A-Za-z])"), r"\\pi"),
]
# "5 million" is not 5 (PRM800K's grader does the same).
_SCALES = {"thousand": 3, "million": 6, "billion": 9, "trillion": 12}
_SCALE_WORDS = re.compile(r"\s*(?:\\text\{\s*)?\b(thousand|million|billion|trillion)\b\s*\}?", re.IGNORECASE)
_AND_OR = re.compile(r"\\text\{\s*(?:and|or)\s*\}|(?<![A-Za-z\\])(?:and|or)(?![A-Za-z])")
_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?:,\d{3})+(?![\d,])")
# A unit at the end: "\text{ cm}^2", " apples", "cm" right after a digit.
# Two-letter words are units only when they are known units ("2 ab" is a product).
_SHORT_UNITS = "cm|mm|km|kg|mg|ft|yd|mi|hr|lb|oz|ml|mL|in|am|pm|AM|PM"
_TRAILING_UNIT = re.compile(
    rf"(?:\s*\\text\{{[^{{}}]*\}}|\s+(?:[A-Za-z]{{3,}}|{_SHORT_UNITS})\.?(?:/[A-Za-z]+)?"
    rf"|(?<=\d)(?:{_SHORT_UNITS}|mph|lbs|hrs|min|sec|sq)(?:/[A-Za-z]+)?)"
    r"(?:\s*\^\s*\{?[23]\}?)?\s*$"
)
_FRAC_SHORT = [
    (re.compile(r"\\frac\s*(\d)\s*(\d)"), r"\\frac{\1}{\2}"),
    (re.compile(r"\\frac\s*(\d)\s*\{"), r"\\frac{\1}{"),
    (re.compile(r"\\frac\s*(\{[^{}]*\})\s*(\d)"), r"\\frac\1{\2}"),
    (re.compile(r"\\sqrt\s*(\d)"), r"\\sqrt{\1}"),
]


def normalize(text: str, thousands: bool = True) -> str:
    """LaTeX/plain answer -> canonical text (rule 1 of the module docstring). Idempotent.

    ``thousands``: read ``1,000`` as one number (otherwise it is the list 1, 000)."""
    s = text.replace("\n", " ").strip()
    s = re.sub(r"\\\$|[€£¥₹]", " ", s)
    s = _DELIMITERS.sub(" ", s)
    s = _STYLE.sub("", s)
    s = _SIZING.sub("", s)
    s = re.sub(r"(?<!\\)\\[!,]", "", s)  # "10,\!000", "1\,000"
    s = re.sub(r"(?<!\\)\\[;: ]|\\q?quad(?![a-zA-Z])|~", " ", s)
    s = re.sub(r"\\[dtc]frac(?![a-zA-Z])", r"\\frac", s)
    s = _SPELLINGS_RE.sub(lambda m: _SPELLINGS[m.group(0)], s)
    s = _TEXT_COMMANDS.sub(r"\\text{", s)
    s = _DEGREES.sub("", s)
    s = _PERCENT.sub("", s)
    s = re.sub(r"\\text\{\s*(?:percent|percentage|degrees?)\s*\}", "", s)
    s = re.sub(r"(?<![A-Za-z\\])(?:percent|percentage|degrees?)(?![A-Za-z])", "", s)
    s = s.replace("{,}", ",")
    s = _SCALE_WORDS.sub(lambda m: f"\\times 10^{{{_SCALES[m.group(1).lower()]}}}", s)
    s = re.sub(r"\\text\{\s*\}", "", s)
    for pattern, repl in _WORD_CONSTANTS:
        s = pattern.sub(repl, s)
    s = re.sub(r"\\text\{\s*(\\[A-Za-z]+)\s*\}", r"\1", s)  # \text{\infty}
    s = " ".join(s.split())
    if re.search(r"[\d\\]", s):  # "2 and 3" is a list; "Tom and Jerry" is a text answer
        s = _AND_OR.sub(",", s)
    for pattern, repl in _FRAC_SHORT:
        s = pattern.sub(repl, s)
    if thousands and re.fullmatch(r"[+-]?\d{1,3}(?: \d{3})+(?:\.\d+)?", s):
        s = s.replace(" ", "")  # "1 000"
    if thousands and not re.search(r"[()\[\]{}⟨⟩]", s) and "," in s:
        merged = _THOUSANDS.sub(lambda m: m.group(0).replace(",", ""), s)
        if "," not in merged:  # every comma was a thousands separator
            s = merged
    for _ in range(3):  # "5 \text{ feet}", "12 red apples"
        m = _TRAILING_UNIT.search(s)
        if not m:
            break
        rest = s[: m.start()].rstrip()
        if not rest or not re.search(r"[\d})\]]$|\\(?:pi|infty)$", rest):
            break
        s = rest
    s = s.strip().rstrip(".,;").strip()
    if s.startswith("+") and not s.startswith("+-"):
        s = s[1:].strip()
    return " ".join(s.split())


def _canon(text: str) -> str:
    """Spacing that carries no meaning removed, for "the same text" checks."""
    return re.sub(r"\s*([^\w\s\\])\s*", r"\1", text)


def _unwrap_text(s: str) -> tuple[str, bool]:
    out = re.sub(r"\\text\{([^{}]*)\}", r"\1", s)
    return " ".join(out.split()), out != s


_CHOICE_GOLD = re.compile(r"\(?([A-E])\)?(?:\s+.*)?")
_CHOICE_PRED = re.compile(
    r"(?:(?:option|choice|answer)\s*:?\s*)?\(?([A-Ea-e])\)?(?=$|[\s:.,])", re.IGNORECASE
)


def _choice(s: str, gold: bool) -> str | None:
    t, _ = _unwrap_text(s)
    if gold:
        m = _CHOICE_GOLD.fullmatch(t)
        if m and (len(t) == 1 or t.startswith("(")):
            return m.group(1)
        return None
    m = _CHOICE_PRED.match(t)
    if m is None:
        return None
    letters = {x.upper() for x in re.findall(r"(?<![A-Za-z\\])\(?([A-Ea-e])\)?(?![A-Za-z])", t)}
    return m.group(1).upper() if len(letters) <= 1 else None  # "(A) and (C)" hedges


def _as_text(s: str) -> str | None:
    """A words-only answer ("odd", "\\text{Devon}", "no solution"), lower-cased; else None."""
    t, had_text = _unwrap_text(s)
    if re.fullmatch(r"[A-Za-z][A-Za-z'\- ]*", t) and (had_text or re.search(r"[A-Za-z]{3,}", t)):
        return t.casefold()
    return None


def _reads_like_prose(s: str) -> bool:
    """Sentences around one answer: "so x equals 5", "there are 12 of them". Text with several
    numbers ("5 or maybe 6") is not given to an extractor that would pick one of them."""
    t = re.sub(r"\\[A-Za-z]+|\\text\{[^{}]*\}", " ", s)
    if len(re.findall(r"(?<![A-Za-z])[A-Za-z]{2,}(?![A-Za-z])", t)) < 2:
        return False
    numbers = set(re.findall(r"\d+(?:[.,]\d+)*", s))
    spans = re.findall(r"\$[^$]+\$|\\\(.*?\\\)", s)
    outside = re.sub(r"\$[^$]+\$|\\\(.*?\\\)", " ", s)
    return len(numbers) <= 1 or (len(spans) == 1 and not re.search(r"\d", outside))


def _math_verify_extraction(s: str) -> str | None:
    from math_verify import parse

    found = parse(s, parsing_timeout=None)
    return found[-1] if found and isinstance(found[-1], str) else None


# ---------------------------------------------------------------------------------------------
# Structure: lists, sets, tuples and intervals, matrices, equations, inequalities


@dataclass
class _Node:
    kind: str  # scalar | list | set | seq | union | matrix | eq | rel
    text: str = ""
    items: list = field(default_factory=list)  # list/set/seq/union: _Node; matrix: rows of str
    brackets: str = ""  # seq: opening + closing bracket, "(]"
    chain: list = field(default_factory=list)  # eq: the sides of "a = b = c"


_OPEN, _CLOSE = "([{⟨", ")]}⟩"
_RELATIONS = re.compile(r"\\(?:le|ge|ne)(?![a-zA-Z])|<|>")
_MATRIX = re.compile(
    r"[(\[]?\s*\\begin\{(pmatrix|bmatrix|Bmatrix|matrix|smallmatrix|array)\}(?:\{[^{}]*\})?"
    r"(.*?)\\end\{\1\}\s*[)\]]?",
    re.DOTALL,
)


def _scan(s: str):
    """Yield ``(index, depth_before, token)`` over ``s``, skipping LaTeX command names; ``\\{`` and
    ``\\}`` count as brackets."""
    depth, i, n = 0, 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            if i + 1 < n and s[i + 1] in "{}":
                tok = s[i : i + 2]
                yield i, depth, tok
                depth += 1 if s[i + 1] == "{" else -1
                i += 2
                continue
            j = i + 1
            while j < n and s[j].isalpha():
                j += 1
            yield i, depth, s[i : max(j, i + 2)]
            i = max(j, i + 2)
            continue
        yield i, depth, c
        if c in _OPEN:
            depth += 1
        elif c in _CLOSE:
            depth -= 1
        i += 1


def _split_top(s: str, sep: str) -> list[str]:
    parts, last = [], 0
    for i, depth, tok in _scan(s):
        if depth == 0 and tok == sep:
            parts.append(s[last:i])
            last = i + len(tok)
    parts.append(s[last:])
    return [p.strip() for p in parts]


def _outer_brackets(s: str) -> tuple[str, str, str] | None:
    """``"(1,2]"`` -> ``("(", "]", "1,2")`` when one bracket pair encloses all of ``s``."""
    if not s or not (s[0] in "([{⟨" or s.startswith("\\{")):
        return None
    tokens = list(_scan(s))
    first = tokens[0][2]
    for i, depth, tok in tokens[1:]:
        if depth == 1 and (tok in _CLOSE or tok == "\\}"):
            if i + len(tok) != len(s):
                return None
            return first, tok, s[len(first) : i]
    return None


def _has_top(s: str, pattern: re.Pattern) -> bool:
    return any(depth == 0 and pattern.fullmatch(tok) for _, depth, tok in _scan(s))


def _parse_node(s: str) -> _Node:
    s = s.strip()
    s = re.sub(r"^[A-Za-z]\s*\\in(?![a-zA-Z])\s*", "", s)  # "x \in (1, 2]"
    if s in ("\\emptyset", "\\{\\}"):
        return _Node("set")
    pm = [i for i, _, tok in _scan(s) if tok in ("\\pm", "\\mp")]
    if len(pm) == 1 and len(_split_top(s, ",")) == 1:
        i = pm[0]
        tail = s[i + 3 :]
        a, b = s[:i] + "+" + tail, s[:i] + "-" + tail
        return _Node("list", items=[_parse_node(a), _parse_node(b)])
    pieces = _split_top(s, "\\cup")
    if len(pieces) > 1:
        parts = [_parse_node(p) for p in pieces]
        if all(x.kind in ("set", "list") for x in parts):  # \{1,3\} \cup \{2,4\}: one finite set
            return _Node("set", items=_distinct([i for x in parts for i in x.items]))
        return _Node("union", items=parts)
    m = _MATRIX.fullmatch(s)
    if m:
        rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip() and not r.strip().startswith("\\hline")]
        return _Node("matrix", items=[[c.strip() for c in r.split("&")] for r in rows])
    if "\\approx" in s:
        first, *_, last = _split_top(s, "\\approx")
        s = last if _is_name(first) else first  # "x \approx 2.5" vs "1/3 \approx 0.33"
    outer = _outer_brackets(s)
    if outer:
        left, right, inner = outer
        items = _split_top(inner, ",") if inner.strip() else []
        if left == "\\{":
            return _Node("set", items=_distinct([_parse_node(x) for x in items]))
        if left == "{" and right == "}":
            return _parse_node(inner)  # a TeX group: {1,3} is the list 1,3
        if len(items) >= 2:
            return _Node("seq", items=[_parse_node(x) for x in items], brackets=left + right)
        if left == "(" and right == ")":
            return _parse_node(inner)
    items = _split_top(s, ",")
    if len(items) > 1:
        return _Node("list", items=[_parse_node(x) for x in items if x])
    sides = _split_top(s, "=")
    if len(sides) > 1:
        return _Node("eq", text=s, chain=sides)
    if _has_top(s, _RELATIONS):
        return _Node("rel", text=s)
    return _Node("scalar", text=s)


_REALS = re.compile(r"\\mathbb\s*\{?R\}?|\\R|\\Reals")


def _distinct(items: list[_Node]) -> list[_Node]:
    out: list[_Node] = []
    for item in items:
        if not any(_nodes_equal(seen, item) for seen in out):
            out.append(item)
    return out


_NAME = re.compile(
    r"[A-Za-z](?:_\{?[\w\\]+\}?)?'*|\\[A-Za-z]+(?:_\{?\w+\}?)?|[A-Za-z]\([^()=]*\)|\\text\{[^{}]*\}"
)


def _is_name(s: str) -> bool:
    """A variable or function value standing alone: ``x``, ``a_1``, ``\\theta``, ``f(2)``."""
    return bool(_NAME.fullmatch(s.strip())) and s.strip() not in ("\\pi", "\\infty", "e")


def _equivalent(gold: str, pred: str) -> bool:
    if _equivalent_normalized(normalize(gold), normalize(pred)):
        return True
    # "100,200" is 100200 or the list 100, 200: try the list reading if it was merged
    g, p = normalize(gold, thousands=False), normalize(pred, thousands=False)
    if g == normalize(gold) and p == normalize(pred):
        return False
    return _equivalent_normalized(g, p)


def _equivalent_normalized(g: str, p: str) -> bool:
    if not g or not p:
        return False
    if _canon(g) == _canon(p):
        return True
    letter = _choice(g, gold=True)
    if letter is not None:
        return _choice(p, gold=False) == letter
    gt, pt = _as_text(g), _as_text(p)
    if gt is not None or pt is not None:
        return gt is not None and gt == pt
    return _nodes_equal(_parse_node(g), _parse_node(p))


def _nodes_equal(g: _Node, p: _Node) -> bool:
    if p.kind == "eq" and g.kind != "eq":
        rhs = _value_of_equation(p)
        return rhs is not None and _nodes_equal(g, _parse_node(rhs))
    if g.kind == "eq" and p.kind != "eq":
        if not _is_name(g.chain[0]):
            return False  # "x^2 + y^2 = 1" is not the value 1
        return _nodes_equal(_parse_node(g.chain[-1]), p)
    if g.kind == "eq":
        return _equations_equal(g, p)
    reals = any(x.kind == "scalar" and _REALS.fullmatch(x.text) for x in (g, p)) and g.kind != p.kind
    either = any(x.kind == "list" and x.items and all(i.kind == "rel" for i in x.items) for x in (g, p))
    if "rel" in (g.kind, p.kind) or {g.kind, p.kind} == {"union", "seq"} or reals or either:
        return _sets_equal(g, p)
    collections = ("list", "set")
    point = _assignments_as_point(g, p)
    if point is None:
        point = _assignments_as_point(p, g)
    if point is not None:
        return point
    if g.kind in collections and p.kind in collections:
        return _unordered_equal(g.items, p.items)
    if g.kind in collections and len(g.items) == 1:
        return _nodes_equal(g.items[0], p)
    if p.kind in collections and len(p.items) == 1:
        return _nodes_equal(g, p.items[0])
    if g.kind == "union" and p.kind == "union":
        return _unordered_equal(g.items, p.items) or _sets_equal(g, p)
    if g.kind == "seq" and p.kind == "seq":
        return (
            _same_brackets(g.brackets, p.brackets)
            and len(g.items) == len(p.items)
            and all(_nodes_equal(a, b) for a, b in zip(g.items, p.items))
        )
    if g.kind == "matrix" or p.kind == "matrix":
        return _matrices_equal(g, p)
    if g.kind == "scalar" and p.kind == "scalar":
        return _scalars_equal(g.text, p.text)
    return False


def _assignments_as_point(seq: _Node, other: _Node) -> bool | None:
    """``(-3, 2)`` vs ``x = -3, y = 2``: the assignments, in alphabetical order of their
    variables, as the coordinates of the point. None when the shapes are not these."""
    if seq.kind != "seq" or seq.brackets not in ("()", "⟨⟩") or other.kind != "list":
        return None
    if len(seq.items) != len(other.items) or not all(
        i.kind == "eq" and len(i.chain) == 2 and _is_name(i.chain[0]) for i in other.items
    ):
        return None
    names = [_canon(i.chain[0]) for i in other.items]
    if len(set(names)) != len(names):
        return None
    values = [i.chain[1] for _, i in sorted(zip(names, other.items), key=lambda t: t[0])]
    return all(_nodes_equal(a, _parse_node(v)) for a, v in zip(seq.items, values))


def _same_brackets(a: str, b: str) -> bool:
    vector = str.maketrans("⟨⟩", "()")
    return a.translate(vector) == b.translate(vector)


def _unordered_equal(gold: list[_Node], pred: list[_Node]) -> bool:
    if len(gold) != len(pred):
        return False
    left = list(pred)
    for g in gold:
        for k, p in enumerate(left):
            if _nodes_equal(g, p):
                del left[k]
                break
        else:
            return False
    return True


def _matrices_equal(g: _Node, p: _Node) -> bool:
    def cells(node: _Node) -> list[list[str]] | None:
        if node.kind == "matrix":
            return node.items
        scalars = all(i.kind == "scalar" for i in node.items)
        if node.kind == "seq" and node.brackets in ("()", "⟨⟩") and scalars:
            return [[i.text] for i in node.items]  # a tuple is a column vector
        return None

    a, b = cells(g), cells(p)
    if a is None or b is None:
        return False
    if len(a) != len(b) or any(len(r) != len(s) for r, s in zip(a, b)):
        return False
    return all(_nodes_equal(_parse_node(x), _parse_node(y)) for r, s in zip(a, b) for x, y in zip(r, s))


def _value_of_equation(p: _Node) -> str | None:
    """The value a predicted equation gives: the last right-hand side, unless the left side is a
    number that the right side is not equal to (``9 = 1`` gives nothing)."""
    lhs, rhs = p.chain[0], p.chain[-1]
    if not lhs or not rhs:
        return None
    if _is_name(lhs) or re.search(r"[A-Za-z]", re.sub(r"\\(?:frac|sqrt|cdot|times|div|pi)", "", lhs)):
        return rhs
    return rhs if all(_scalars_equal(side, rhs) for side in p.chain[:-1]) else None


def _equations_equal(g: _Node, p: _Node) -> bool:
    gl, gr, pl, pr = g.chain[0], g.chain[-1], p.chain[0], p.chain[-1]
    if _is_name(gl) and _is_name(pl) and _canon(gl) == _canon(pl):
        return _nodes_equal(_parse_node(gr), _parse_node(pr))
    try:
        e1 = _sympy(gl) - _sympy(gr)
        e2 = _sympy(pl) - _sympy(pr)
    except Exception:  # noqa: BLE001 - not algebra
        return False
    return _proportional(e1, e2)


# ---------------------------------------------------------------------------------------------
# Numbers and expressions


@dataclass(frozen=True)
class _Number:
    value: Fraction
    decimal: bool  # written with a decimal point: may be a rounded value
    ulp: Fraction  # one unit in the last written place
    significant: int


_DECIMAL = r"(\d+(?:\.\d*)?|\.\d+)"
_SCI = re.compile(
    r"([+-]?)" + _DECIMAL + r"(?:[eE]([+-]?\d+)|\s*(?:\\times|\\cdot|\*)\s*10\s*\^\s*\{?\s*([+-]?\d+)\s*\}?)?"
)
_FRACTION = re.compile(
    r"([+-]?)\s*\\frac\{\s*([+-]?\d+)\s*\}\{\s*([+-]?\d+)\s*\}|([+-]?\d+)\s*/\s*([+-]?\d+)"
)
_REPEATING = re.compile(r"([+-]?)(\d*)\.(\d*)\\overline\{(\d+)\}")
_MIXED = re.compile(r"([+-]?)(\d+)\s*\\frac\{\s*(\d+)\s*\}\{\s*(\d+)\s*\}|([+-]?)(\d+)\s+(\d+)\s*/\s*(\d+)")


def _exact_number(s: str) -> _Number | None:
    s = s.strip()
    m = _SCI.fullmatch(s)
    if m:
        sign, mantissa, exp1, exp2 = m.groups()
        exponent = int(exp1 or exp2 or 0)
        if abs(exponent) > MAX_EXPONENT:
            return None  # 1e999999999: not worth building exactly
        whole, _, frac = mantissa.partition(".")
        digits = (whole + frac).lstrip("0")
        value = Fraction(mantissa) * Fraction(10) ** exponent
        if sign == "-":
            value = -value
        ulp = Fraction(10) ** (exponent - len(frac))
        return _Number(value, "." in mantissa, ulp, len(digits))
    m = _REPEATING.fullmatch(s)
    if m:  # 0.1\overline{6} = 1/10 + 6/90
        sign, whole, fixed, repeat = m.groups()
        value = Fraction(int(whole or 0)) + Fraction(int(fixed or 0), 10 ** len(fixed))
        value += Fraction(int(repeat), 10 ** len(fixed) * (10 ** len(repeat) - 1))
        return _Number(-value if sign == "-" else value, False, Fraction(0), 0)
    m = _MIXED.fullmatch(s)
    if m:
        g = m.groups()
        sign, whole, num, den = g[0:4] if g[1] is not None else g[4:8]
        if int(den) == 0:
            return None
        value = int(whole) + Fraction(int(num), int(den))
        return _Number(-value if sign == "-" else value, False, Fraction(0), 0)
    m = _FRACTION.fullmatch(s)
    if m:
        sign, num, den, a, b = m.groups()
        num, den = (num, den) if num is not None else (a, b)
        if int(den) == 0:
            return None
        value = Fraction(int(num), int(den))
        return _Number(-value if sign == "-" else value, False, Fraction(0), 0)
    return None


def _scalars_equal(a: str, b: str) -> bool:
    if _canon(a) == _canon(b):
        return True
    x, y = _exact_number(a), _exact_number(b)
    if x is not None and y is not None:
        if x.value == y.value:
            return True
        if x.decimal != y.decimal:
            d, exact = (x, y) if x.decimal else (y, x)
            return _rounds_to(d, exact.value)
        return False
    try:
        if x is not None or y is not None:
            d, other = (x, b) if x is not None else (y, a)
            expr = _sympy(other)
            if _free_names(expr):  # sin^2 x + cos^2 x is a constant after all
                return _sympy_equal(_to_rational(d.value), expr)
            return _constants_equal(_to_rational(d.value), expr) or (d.decimal and _rounds_to(d, expr))
        return _sympy_equal(_sympy(a), _sympy(b))
    except Exception:  # noqa: BLE001 - unparseable, or sympy gave up: not equal
        return False


def _to_rational(value: Fraction):
    import sympy

    return sympy.Rational(value.numerator, value.denominator)


def _rounds_to(d: _Number, exact) -> bool:
    """``d`` is ``exact`` rounded or truncated to the places it shows (closer than one unit in its
    last place), and shows enough significant digits."""
    import sympy

    if d.significant < APPROX_MIN_SIGNIFICANT_DIGITS:
        return False
    if not isinstance(exact, Fraction) and getattr(exact, "is_Rational", False):
        exact = Fraction(int(exact.p), int(exact.q))
    if isinstance(exact, Fraction):
        return abs(d.value - exact) < d.ulp
    diff = sympy.N(sympy.Abs(_to_rational(d.value) - exact), EVAL_DIGITS)
    if not diff.is_number or not diff.is_real:
        return False
    return bool(diff < _to_rational(d.ulp))


@lru_cache(maxsize=4096)
def _sympy(text: str):
    """LaTeX -> sympy via latex2sympy, with Floats made exact and every variable a real symbol."""
    import sympy
    from latex2sympy2_extended.latex2sympy2 import NormalizationConfig, latex2sympy
    from math_verify.grader import should_treat_as_complex

    config = NormalizationConfig(
        basic_latex=True, units=False, malformed_operators=True, nits=False, boxed="none", equations=False
    )
    complex_context = should_treat_as_complex(text)
    expr = latex2sympy(text, is_real=not complex_context, convert_degrees=False, normalization_config=config)
    if not isinstance(expr, (sympy.Basic, sympy.MatrixBase)):
        raise ValueError(f"not an expression: {text!r}")
    floats = {f: sympy.Rational(str(f)) for f in expr.atoms(sympy.Float)}
    symbols = {
        s: sympy.I if complex_context and s.name == "i" else sympy.Symbol(s.name, real=True)
        for s in expr.atoms(sympy.Symbol)
    }
    return expr.xreplace({**floats, **symbols})


def _free_names(expr) -> set[str]:
    return {str(s) for s in getattr(expr, "free_symbols", ())}


def _sympy_equal(a, b) -> bool:
    import sympy

    if a == b:
        return True
    if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
        if not (isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase)) or a.shape != b.shape:
            return False
        return all(_sympy_equal(x, y) for x, y in zip(a, b))
    if not (isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr)):
        return False  # sets, relations, booleans: structure was compared already
    names_a, names_b = _free_names(a), _free_names(b)
    if not names_a and not names_b:
        return _constants_equal(a, b)
    if names_a != names_b:
        return bool(sympy.simplify(a - b) == 0)
    verdict = _probe(lambda v: (a.xreplace(v), b.xreplace(v)), a.free_symbols | b.free_symbols)
    if verdict is not None:
        return verdict
    return bool(sympy.simplify(a - b) == 0)


def _constants_equal(a, b) -> bool:
    """Exact constants compared by their difference at 60 digits, relative to their size."""
    import sympy

    if a == b:
        return True
    if any(x.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan) for x in (a, b)):
        return False
    va, vb = sympy.N(a, EVAL_DIGITS), sympy.N(b, EVAL_DIGITS)
    if not (va.is_number and vb.is_number) or va.has(sympy.nan) or vb.has(sympy.nan):
        return False
    diff = sympy.N(a - b, EVAL_DIGITS)
    if diff == 0:
        return True
    scale = max(sympy.Abs(va), sympy.Abs(vb))
    return bool(sympy.Abs(diff) <= scale * _to_rational(ZERO_RELATIVE))


# Values for the variables at each probe point: rationals of both signs, different per variable.
_PROBE_VALUES = ((-173, 97), (59, 71), (311, 113), (-29, 41), (83, 37), (17, 131), (-241, 59))
_PROBE_POINTS = 5


def _probe_points(symbols):
    """``_PROBE_POINTS`` assignments ``{symbol: Rational}``, each symbol a different value."""
    import sympy

    ordered = sorted(symbols, key=str)
    for j in range(_PROBE_POINTS):
        values = (_PROBE_VALUES[(2 * j + 3 * k) % len(_PROBE_VALUES)] for k in range(len(ordered)))
        yield {s: sympy.Rational(*v) for s, v in zip(ordered, values)}


def _probe(pair_at, symbols) -> bool | None:
    """Evaluate both sides at rational points: False if a point tells them apart, True if at
    least three points agree (to 30 digits), None if too few points give finite real numbers."""
    import sympy

    agree = 0
    for point in _probe_points(symbols):
        a, b = pair_at(point)
        va, vb = sympy.N(a, 40), sympy.N(b, 40)
        if not _finite_number(va) or not _finite_number(vb):
            continue
        scale = max(sympy.Abs(va), sympy.Abs(vb))
        if sympy.Abs(va - vb) > scale * sympy.Rational(1, 10**30):
            return False
        agree += 1
    return True if agree >= 3 else None


def _finite_number(v) -> bool:
    import sympy

    return bool(v.is_number) and not v.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo)


def _proportional(e1, e2) -> bool:
    """``e1 = 0`` and ``e2 = 0`` are the same equation: ``e1 == c * e2`` for a constant c != 0."""
    import sympy

    if e1 == e2 or e1 == -e2:
        return True
    if _free_names(e1) != _free_names(e2) or not _free_names(e1):
        return False
    ratios = []
    for point in _probe_points(e1.free_symbols | e2.free_symbols):
        v1, v2 = sympy.N(e1.xreplace(point), 40), sympy.N(e2.xreplace(point), 40)
        if not (v1.is_number and v2.is_number) or v2 == 0 or v1 == 0:
            continue
        ratios.append(v1 / v2)
    if len(ratios) >= 3:
        r0 = ratios[0]
        return all(sympy.Abs(r - r0) <= sympy.Abs(r0) * sympy.Rational(1, 10**30) for r in ratios)
    ratio = sympy.simplify(e1 / e2)
    return not ratio.free_symbols and ratio != 0 and ratio.is_finite is not False


def _sets_equal(g: _Node, p: _Node) -> bool:
    """Inequalities, intervals and unions of intervals as subsets of the reals."""
    a, b = _as_real_set(g), _as_real_set(p)
    if a is None or b is None:
        return False
    if _rel_vars(g) and _rel_vars(p) and _rel_vars(g) != _rel_vars(p):
        return False
    return bool(a == b or a.symmetric_difference(b).is_empty)


def _rel_vars(node: _Node) -> set[str]:
    if node.kind == "rel":
        return _free_names(_sympy(node.text))
    if node.kind == "list":
        return set().union(*(_rel_vars(i) for i in node.items))
    return set()


def _as_real_set(node: _Node):
    import sympy

    try:
        if node.kind == "rel":
            rel = _sympy(node.text)
            if len(rel.free_symbols) != 1:
                return None
            return rel.as_set()
        if node.kind == "seq" and len(node.items) == 2 and node.brackets in ("()", "(]", "[)", "[]"):
            lo, hi = (_sympy(i.text) for i in node.items)
            return sympy.Interval(lo, hi, node.brackets[0] == "(", node.brackets[1] == ")")
        if node.kind == "union" or (node.kind == "list" and all(i.kind == "rel" for i in node.items)):
            parts = [_as_real_set(i) for i in node.items]  # "x < -1 or x > 1" is a union too
            return None if any(x is None for x in parts) else sympy.Union(*parts)
        if node.kind == "scalar" and _REALS.fullmatch(node.text):
            return sympy.S.Reals
    except Exception:  # noqa: BLE001
        return None
    return None
