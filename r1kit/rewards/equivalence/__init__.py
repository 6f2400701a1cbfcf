"""Is a model's final answer equal to the reference? The slow half of ``answers_match``.

``verify_pair(gold, prediction)`` may run sympy for a long time, so callers go through the
deadline-guarded worker pool in ``r1kit.rewards.verifier`` and never call it from the training
process. It never raises: anything that goes wrong is "not equal".

How a pair is judged (each rule names the grader it follows where there is one):

1. Both sides are taken out of their wrapping (``extract.gold_answer`` / ``extract.strip_answer``:
   a whole response is read in the order that module documents) and normalised as text
   (``normalize``): ``\\left``/``\\right``, spacing and style commands (``\\displaystyle``),
   ``\\dfrac``/``\\tfrac``, math delimiters, ``\\text{}``/``\\textbf{}``/``\\mathrm{}``/``\\mathbf{}``
   around a value, units at the end ("5 \\text{ cm}", "12 m²", "12 square units"), currency
   signs ("7.50€"), degree signs, thousands separators (``1,000``, ``1{,}000``, ``1,\\!000``,
   ``1 000``) and the percent sign are dropped (the Hendrycks MATH ``is_equiv`` normalisation and
   PRM800K's grader do the same). Numbers in words become digits ("twenty-one" = 21, "one half"
   = 1/2, "十二" = 12; a Chinese unit after a number goes: "5个" = 5), "equals" is ``=``, and
   a trigonometric function of an angle in degrees takes radians (``\\cos 60^\\circ`` = 1/2).
   Calculator / sympy notation is LaTeX too: ``7*sin(pi*x/5)``, ``ln(a)*a^x``, ``sqrt(2x+1)``
   (a function name followed by ``(``; such a name is never a word of prose), and so are
   ``½``, ``√12`` and ``∛27`` (the sign covers the whole number).
   **Percent**: ``x%`` stands for ``x`` or for ``x/100``, on either side (``25\\%`` equals ``25``
   and ``0.25``; a gold ``0.25`` equals ``25%``), as Qwen2.5-Math's grader and math-verify accept
   ``x/100``; but without a percent sign nothing is scaled (``1`` != ``100``, where Qwen2.5-Math's
   ``include_percentage`` says equal), and a currency amount is never a percent (``\\$5`` !=
   ``5\\%``). Clock times compare as times of day (``3:00`` != ``9:00``, ``3:00 pm`` ==
   ``15:00``), never as ratios.
2. Multiple choice: a gold letter ``A``-``E`` (``(B)``, ``\\text{(B)}``) needs the same letter.
   Text answers (``\\text{Devon}``, "odd") are compared as words, ignoring case.
3. Structure is read before any sympy: ``\\{...\\}`` sets and bare comma lists are unordered;
   ``(a, b)``, ``[a, b)``, ``\\langle a, b \\rangle`` are ordered and their brackets must match, so
   ``(1,2]`` != ``(1,2)`` and ``(1,2)`` != ``\\{1,2\\}``; unions of intervals are unordered;
   ``\\cap`` and ``\\setminus`` are worked out on sets of reals, left to right
   (``[0,2] \\setminus (0,1)`` == ``\\{0\\} \\cup [1,2]``, ``\\mathbb{R} \\setminus \\{2\\}`` ==
   ``(-\\infty, 2) \\cup (2, \\infty)``);
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
   ``1.414214`` == ``\\sqrt{2}``, but ``0.33`` and ``3.14`` are not; a value that a decimal
   writes exactly must be written exactly (``1.267650600228229\\times10^{30}`` != ``2^{100}``,
   ``0.000977`` != ``\\frac{1}{1024}``). (math-verify rounds both
   sides to 6 decimal places instead, so it equates ``0.0000001`` with ``0.0000002``; Qwen2.5-Math
   uses a relative tolerance of 1e-4, so 100 == 99.9999.)
6. Everything else is parsed by latex2sympy (math-verify's LaTeX parser) and compared exactly:
   constant expressions by their difference evaluated to 60 digits relative to their size (so
   ``1/2004!`` != ``1/2006!``, which math-verify's ``evalf(chop=True)`` calls equal; a difference
   that cancels is re-evaluated with up to 500 working digits, and any digit it shows makes it
   nonzero: ``2^{1/2^{1000}}`` != 1), expressions with variables by evaluating both at five
   rational points (negative ones too, so ``\\sqrt{x^2}`` != ``x``; a point where a real answer
   whose powers have constant exponents takes a non-real value is outside its domain and
   skipped, so ``\\sqrt{1/x}`` == ``1/\\sqrt{x}``, but ``(a^b)^c`` != ``a^{bc}``), falling back to ``sympy.simplify`` when the points cannot decide.
   Variable names matter, and their case (``x+1`` != ``y+1``, ``X`` != ``x``).
7. Exactness over speed: integers, rationals and their sums, products and integer powers are
   computed exactly up to 20,000 digits (``10^{300}`` != ``10^{300} + 1``, ``2^{2^{5}} + 1`` !=
   ``2^{2^{5}}``), and an undefined value (``3/0``) equals nothing. Inputs that explode
   (``9^{9^{9^{9}}}``) are cut off by the caller's deadline and count as not equal.
"""

from __future__ import annotations

import re

from r1kit.rewards.equivalence.choices import (
    as_text,
    choice_in_prose,
    choice_letter,
    choice_text,
    rules_out_letters,
)
from r1kit.rewards.equivalence.normalize import canon, normalize, unwrap_text
from r1kit.rewards.equivalence.numbers import clock_minutes, clocks_equal, exact_number
from r1kit.rewards.equivalence.structure import nodes_equal, parse_node
from r1kit.rewards.extract import gold_answer, is_prose, strip_answer
from r1kit.rewards.percent import marks, percent_conflict

__all__ = ["normalize", "verify_pair"]


def verify_pair(gold: str, prediction: str) -> bool:
    """True when ``prediction`` is mathematically equal to ``gold`` (rules in the module
    docstring). May be slow (sympy); never raises."""
    try:
        g = gold_answer(str(gold))
        letter = choice_letter(normalize(g), gold=True)
        if letter is not None:
            return _choice_equal(g, letter, strip_answer(str(prediction), prose=False))
        p = strip_answer(str(prediction))
        if not g or not p:
            return False
        return _equivalent(g, p)
    except Exception:  # noqa: BLE001 - sympy raises anything; RecursionError, MemoryError too
        return False


def _choice_equal(gold: str, letter: str, pred: str) -> bool:
    """Rule 2: a gold option letter (with or without its text) against a reply."""
    if not pred:
        return False
    option = choice_text(gold)
    if option is not None and unwrap_text(normalize(pred))[0].casefold() in (option, normalize(option)):
        return True
    if is_prose(pred) or rules_out_letters(pred):  # "Options A and C are too small; it is B."
        return choice_in_prose(pred) == letter
    return choice_letter(normalize(pred), gold=False) == letter


def _equivalent(gold: str, pred: str) -> bool:
    """Clock times, and rule 1's percent reading, around the comparison of the normalised texts."""
    gold_marks, pred_marks = marks(gold), marks(pred)
    if percent_conflict(gold_marks, pred_marks):
        return False
    gold_clock, pred_clock = clock_minutes(gold), clock_minutes(pred)
    if gold_clock is not None and pred_clock is not None:
        return clocks_equal(gold_clock, pred_clock)  # "3:00" != "9:00": times, not ratios
    if _equivalent_texts(gold, pred):
        return True
    if ("percent" in gold_marks) != ("percent" in pred_marks):  # x% also stands for x/100
        side = gold if "percent" in gold_marks else pred
        return _percent_as_fraction_equal(gold, pred, side)
    return False


def _percent_as_fraction_equal(gold: str, pred: str, side: str) -> bool:
    """``side`` (gold or pred) is a plain number x with a percent sign: x/100 against the other."""
    value = exact_number(normalize(side))
    if value is None:
        return False
    x = value.value / 100
    scaled = f"{x.numerator}/{x.denominator}"
    return _equivalent_texts(scaled, pred) if side is gold else _equivalent_texts(gold, scaled)


def _equivalent_texts(gold: str, pred: str) -> bool:
    if _equivalent_normalized(normalize(gold), normalize(pred)):
        return True
    # "100,200" is 100200 or the list 100, 200: try the list reading if it was merged
    g, p = normalize(gold, thousands=False), normalize(pred, thousands=False)
    # "(1,000, 2)": items split by ", ", thousands by "," alone -- no second reading
    spaced = any(", " in x and _THOUSANDS_COMMA.search(x) for x in (gold, pred))
    if not spaced and (g != normalize(gold) or p != normalize(pred)) and _equivalent_normalized(g, p):
        return True
    # "1,22" may be a decimal comma: read it so when the other side is a decimal
    g_dec, p_dec = _decimal_comma(g), _decimal_comma(p)
    if (g_dec is None) == (p_dec is None) or "." not in (p if g_dec else g):
        return False
    return _equivalent_normalized(g_dec or g, p_dec or p)


_THOUSANDS_COMMA = re.compile(r"\d,\d{3}(?!\d)")


def _decimal_comma(s: str) -> str | None:
    """``"1,22"`` -> ``"1.22"`` when ``s`` is one number with a comma before other than three
    digits (``"1,000"`` is a thousands separator); else None."""
    m = re.fullmatch(r"([+-]?\d+),(\d+)", s)
    if m is None or (len(m.group(2)) == 3 and m.group(1).lstrip("+-") != "0"):  # "0,111" is no thousands
        return None
    return f"{m.group(1)}.{m.group(2)}"


def _equivalent_normalized(g: str, p: str) -> bool:
    if not g or not p:
        return False
    if canon(g) == canon(p):
        return True
    gt, pt = as_text(g), as_text(p)
    if gt is not None or pt is not None:
        return gt is not None and gt == pt
    return nodes_equal(parse_node(g), parse_node(p))

