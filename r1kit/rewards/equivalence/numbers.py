"""Numbers and expressions (rules 5 and 6 of ``r1kit.rewards.equivalence``): exact numbers,
rounded decimals, LaTeX through latex2sympy, constants at 60 digits, expressions probed at
rational points, equations up to a constant factor."""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from r1kit.rewards.equivalence.normalize import canon

# A decimal stands for an exact value only with at least this many significant digits.
APPROX_MIN_SIGNIFICANT_DIGITS = 6
# Digits for evaluating constant expressions, and the relative size of a difference that still
# counts as zero at that precision. A difference that cancels is re-evaluated with up to
# EVAL_MAX_DIGITS working digits, so 2^{1/2^{1000}} - 1 (about 6e-302) is found to be nonzero
# (1,000 digits found it too, but cost 4 ms per equal pair of constants instead of 2.6).
EVAL_DIGITS = 60
EVAL_MAX_DIGITS = 500
ZERO_RELATIVE = Fraction(1, 10**40)
# Exact integer/rational arithmetic is done up to this many digits (a 300-digit tower is exact).
EXACT_MAX_DIGITS = 20_000
# Scientific notation beyond this exponent is not turned into an exact Fraction.
MAX_EXPONENT = 1000


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


def exact_number(s: str) -> _Number | None:
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


def scalars_equal(a: str, b: str) -> bool:
    if canon(a) == canon(b):
        return True
    x, y = exact_number(a), exact_number(b)
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
            expr = to_sympy(other)
            if free_names(expr):  # sin^2 x + cos^2 x is a constant after all
                return _sympy_equal(_to_rational(d.value), expr)
            return _constants_equal(_to_rational(d.value), expr) or (d.decimal and _rounds_to(d, expr))
        return _sympy_equal(to_sympy(a), to_sympy(b))
    except Exception:  # noqa: BLE001 - unparseable, or sympy gave up: not equal
        return False


def _to_rational(value: Fraction):
    import sympy

    return sympy.Rational(value.numerator, value.denominator)


def _rounds_to(d: _Number, exact) -> bool:
    """``d`` is ``exact`` correctly rounded (within half a unit in its last place) or truncated
    (towards zero, less than one unit short) to the places it shows, and shows enough
    significant digits: 0.333333 and 0.666667 or 0.666666 stand for 1/3 and 2/3, 0.333334 does not.
    A value that a decimal can write exactly (2^{100}, 1/1024) must be written exactly."""
    import sympy

    if d.significant < APPROX_MIN_SIGNIFICANT_DIGITS:
        return False
    if not isinstance(exact, Fraction) and getattr(exact, "is_Rational", False):
        exact = Fraction(int(exact.p), int(exact.q))
    if isinstance(exact, Fraction):
        return not _terminates(exact) and _close_in_last_place(d.value, exact, d.ulp)
    value = sympy.N(exact, EVAL_DIGITS)
    if not value.is_number or not value.is_real:
        return False
    # to a rational with far more digits than d shows: the half-ulp test is then exact enough
    return _close_in_last_place(d.value, Fraction(str(value)), d.ulp)


def _terminates(q: Fraction) -> bool:
    """True when ``q`` has a finite decimal expansion (its denominator is 2^a 5^b)."""
    den = q.denominator
    for p in (2, 5):
        while den % p == 0:
            den //= p
    return den == 1


def _close_in_last_place(shown: Fraction, exact: Fraction, ulp: Fraction) -> bool:
    rounded = abs(shown - exact) <= ulp / 2
    truncated = (shown >= 0) == (exact >= 0) and abs(shown) <= abs(exact) < abs(shown) + ulp
    return rounded or truncated


@lru_cache(maxsize=4096)
def to_sympy(text: str):
    """LaTeX -> sympy via latex2sympy, with Floats made exact and every variable a real symbol."""
    import sympy
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig, NormalizationConfig, latex2sympy
    from math_verify.grader import should_treat_as_complex

    config = NormalizationConfig(
        basic_latex=True, units=False, malformed_operators=True, nits=False, boxed="none", equations=False
    )
    complex_context = should_treat_as_complex(text)
    # variable names keep their case: X is not x (latex2sympy lower-cases them by default)
    conversion = ConversionConfig(lowercase_symbols=False)
    expr = latex2sympy(
        text, is_real=not complex_context, convert_degrees=False, normalization_config=config,
        conversion_config=conversion,
    )
    if not isinstance(expr, (sympy.Basic, sympy.MatrixBase)):
        raise ValueError(f"not an expression: {text!r}")
    floats = {f: sympy.Rational(str(f)) for f in expr.atoms(sympy.Float)}
    symbols = {
        s: sympy.I if complex_context and s.name == "i" else sympy.Symbol(s.name, real=True)
        for s in expr.atoms(sympy.Symbol)
    }
    return expr.xreplace({**floats, **symbols})


def free_names(expr) -> set[str]:
    return {str(s) for s in getattr(expr, "free_symbols", ())}


def _sympy_equal(a, b) -> bool:
    import sympy

    if any(getattr(x, "has", lambda *_: False)(sympy.zoo, sympy.nan) for x in (a, b)):
        return False  # "3:00" read as 3/0: undefined is equal to nothing
    a, b = _same_imaginary_unit(a, b)
    if a == b:
        return True
    if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
        if not (isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase)) or a.shape != b.shape:
            return False
        return all(_sympy_equal(x, y) for x, y in zip(a, b))
    if not (isinstance(a, sympy.Expr) and isinstance(b, sympy.Expr)):
        return False  # sets, relations, booleans: structure was compared already
    names_a, names_b = free_names(a), free_names(b)
    if not names_a and not names_b:
        return _constants_equal(a, b)
    if names_a != names_b:
        return bool(sympy.simplify(a - b) == 0)
    # Non-real values at a point mean "outside the domain" only for real answers whose powers have
    # constant exponents: with a variable exponent, (a^b)^c and a^{bc} part exactly where the
    # principal branch goes complex, so every point counts there.
    variable_power = any(p.exp.free_symbols for x in (a, b) for p in x.atoms(sympy.Pow))
    real_domain = not (a.has(sympy.I) or b.has(sympy.I) or variable_power)
    verdict = _probe(lambda v: (a.xreplace(v), b.xreplace(v)), a.free_symbols | b.free_symbols, real_domain)
    if verdict is not None:
        return verdict
    return bool(sympy.simplify(a - b) == 0)


def _same_imaginary_unit(a, b):
    """Each side is parsed alone, so ``5(1+i)`` may come back with sympy's I and ``5+5i`` with a
    variable named i: when one side has I, an ``i`` on the other is I too."""
    import sympy

    def has_i(x):
        return getattr(x, "has", lambda *_: False)(sympy.I)

    def as_unit(x):
        named = [s for s in getattr(x, "free_symbols", ()) if s.name == "i"]
        return x.xreplace({s: sympy.I for s in named}) if named else x

    if has_i(a) and not has_i(b):
        return a, as_unit(b)
    if has_i(b) and not has_i(a):
        return as_unit(a), b
    return a, b


def _constants_equal(a, b) -> bool:
    """Exact constants compared by their difference at 60 digits, relative to their size."""
    import sympy

    if any(x.has(sympy.oo, -sympy.oo, sympy.zoo, sympy.nan) for x in (a, b)):
        return a == b and not any(x.has(sympy.zoo, sympy.nan) for x in (a, b))
    if a == b:
        return True
    exact_a, exact_b = _exact_rational(a), _exact_rational(b)
    if exact_a is not None and exact_b is not None:  # 10^{300} != 10^{300} + 1: never via floats
        return exact_a == exact_b
    va, vb = sympy.N(a, EVAL_DIGITS), sympy.N(b, EVAL_DIGITS)
    if not (va.is_number and vb.is_number) or va.has(sympy.nan) or vb.has(sympy.nan):
        return False
    diff = sympy.N(a - b, EVAL_DIGITS, maxn=EVAL_MAX_DIGITS)
    if diff == 0:
        return True
    if _resolved(diff):  # a nonzero value known to its digits: however small, not zero
        return False
    scale = max(sympy.Abs(va), sympy.Abs(vb))
    return bool(sympy.Abs(diff) <= scale * _to_rational(ZERO_RELATIVE))


def _resolved(value) -> bool:
    """True when an evaluated difference has real digits (not sympy's ``0.e-190``, which says
    only that the working precision ran out before any digit appeared)."""
    import sympy

    parts = [p for p in value.as_real_imag() if p != 0]
    return bool(parts) and all(isinstance(p, sympy.Float) and p._prec > 1 for p in parts)


def _exact_rational(expr, max_digits: int = EXACT_MAX_DIGITS):
    """The exact value of an expression built from rationals with ``+``, ``*`` and integer powers
    (parsed unevaluated), or None when it has anything else or would exceed ``max_digits``
    digits (``9^{9^{9^{9}}}`` is left to the 60-digit comparison and the deadline)."""
    import math

    import sympy

    if expr.is_Rational:
        return expr
    if isinstance(expr, (sympy.Add, sympy.Mul)):
        parts = [_exact_rational(arg, max_digits) for arg in expr.args]
        if any(x is None for x in parts):
            return None
        value = sympy.Add(*parts) if isinstance(expr, sympy.Add) else sympy.Mul(*parts)
        return value if value.is_Rational else None
    if isinstance(expr, sympy.Pow):
        base, exponent = (_exact_rational(x, max_digits) for x in expr.args)
        if base is None or exponent is None or not exponent.is_Integer:
            return None
        size = max(abs(base.p), abs(base.q), 2)
        if abs(int(exponent)) * math.log10(size) > max_digits or (base == 0 and exponent < 0):
            return None
        return base**exponent
    return None


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


def _probe(pair_at, symbols, real_domain: bool) -> bool | None:
    """Evaluate both sides at rational points: False if a point tells them apart, True if at
    least three points agree (to 30 digits), None if too few points give finite numbers. With
    ``real_domain``, a point where a side is not real is outside where that side is defined and
    decides nothing (\\sqrt{1/x} == 1/\\sqrt{x}, both defined for x > 0 only)."""
    import sympy

    agree = 0
    for point in _probe_points(symbols):
        a, b = pair_at(point)
        va, vb = sympy.N(a, 40), sympy.N(b, 40)
        if not _finite_number(va) or not _finite_number(vb):
            continue
        if real_domain and not (va.is_real and vb.is_real):
            continue
        scale = max(sympy.Abs(va), sympy.Abs(vb))
        if sympy.Abs(va - vb) > scale * sympy.Rational(1, 10**30):
            return False
        agree += 1
    return True if agree >= 3 else None


def _finite_number(v) -> bool:
    import sympy

    return bool(v.is_number) and not v.has(sympy.nan, sympy.zoo, sympy.oo, -sympy.oo)


def proportional(e1, e2) -> bool:
    """``e1 = 0`` and ``e2 = 0`` are the same equation: ``e1 == c * e2`` for a constant c != 0."""
    import sympy

    if e1 == e2 or e1 == -e2:
        return True
    if free_names(e1) != free_names(e2) or not free_names(e1):
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



_CLOCK = re.compile(
    r"(\d{1,2}):([0-5]\d)(?::([0-5]\d))?\s*(?:\\text\{\s*)?([ap])?(?:\.?\s*m\.?)?\s*\}?", re.IGNORECASE
)


def clock_minutes(text: str) -> tuple[int, bool] | None:
    """``"3:45 pm"`` -> (945, True): a clock time as minutes after midnight, and whether am/pm
    said which half of the day; None if ``text`` is not a clock time."""
    m = _CLOCK.fullmatch(text.strip().strip("$").strip())
    if not m:
        return None
    hours, minutes, seconds, half = int(m.group(1)), int(m.group(2)), int(m.group(3) or 0), m.group(4)
    if hours > 24 or (half and not 1 <= hours <= 12):
        return None
    if half:
        hours = hours % 12 + (12 if half.lower() == "p" else 0)
    return hours * 60 + minutes + Fraction(seconds, 60), bool(half)


def clocks_equal(a: tuple, b: tuple) -> bool:
    """Same time of day; without am/pm on one side, the same on a 12-hour dial."""
    (ma, half_a), (mb, half_b) = a, b
    if half_a and half_b:
        return ma == mb
    return ma % 720 == mb % 720
