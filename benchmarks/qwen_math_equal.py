"""Qwen2.5-Math's answer check, re-implemented as a baseline for ``bench_answers.py``.

This is our own code, written after the rules of ``evaluation/grader.py`` (``math_equal``) and
``evaluation/parser.py`` (``extract_answer``, ``strip_string``) in QwenLM/Qwen2.5-Math, so that the
benchmark can put that widely used grader next to r1kit's. No package on PyPI ships it (checked:
``mathruler`` has a PRM800K-style grader, ``latex2sympy2*`` only the LaTeX parser), so it is
re-implemented here. What it does, in order:

* ``extract_answer(response)``: Minerva's "final answer is $...$. I hope" sentence, else the last
  ``\\boxed`` (balanced braces, or up to the next ``$`` for ``\\boxed 5``), else the text after the
  last "he answer is" / "final answer is" / "答案是", else the last number; then ``strip_string``.
* ``strip_string``: drops ``\\left``/``\\right``, ``\\!``, a trailing ``\\text{...}``, a long list of
  unit words (MathQA's, matched as regular expressions the way Qwen's loop does, including its
  one-letter "units" such as ``a``, ``t``, ``h``), degree marks, dollar signs, percent signs,
  ``x=`` / ``y=`` prefixes, the word "and"; turns number words into digits (the whole string, the
  way ``word2number`` does), ``dfrac``/``tfrac`` into ``frac``, ``a/b`` into ``\\frac{a}{b}``,
  ``\\frac12`` into ``\\frac{1}{2}``, ``j`` into ``i`` when there is no ``i``; removes spaces.
* ``math_equal(prediction, reference)``: equal strings; a multiple-choice letter; numbers within a
  relative tolerance of 1e-4 of the reference or of reference/100 or reference*100 (the percentage
  variants); strings equal once brackets are dropped; element-wise lists/tuples and matrices;
  equations (``a = b`` against ``c = d`` as ``a - b`` vs ``c - d``, up to sign; ``x = 5`` against
  ``5``); and finally sympy: parsed with sympy's ``parse_latex``, ``parse_expr`` or
  ``latex2sympy`` (first that works), equal if ``str``/``==``/``equals``/``simplify(a - b) == 0``,
  or numerically within 1e-4, or matrices equal after rounding to 3 places.

Known differences from the original: ``latex2sympy`` is ``latex2sympy2_extended`` (math-verify's
maintained fork of ``latex2sympy2``); sympy's ANTLR ``parse_latex`` needs antlr4 4.11, which
conflicts with math-verify's 4.13, so where it is missing that step falls through to the next
parser, as the original's ``try`` does; number words use a small converter with
``word2number``'s behaviour instead of that package. The original runs each check in a process
pool with a 3 s limit; here ``QwenJudge`` runs every check in a worker process with a per-check
deadline, and a check that runs past it counts as not equal.
"""

from __future__ import annotations

import multiprocessing as mp
import re
from math import isclose

__all__ = ["QwenJudge", "extract_answer", "judge", "math_equal", "prepare_gold", "prepare_prediction", "strip_string", "words_to_number"]

# ----------------------------------------------------------------------------- number words

_SMALL = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_TENS = {w: 10 * (i + 2) for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())}
_WORDS = {**_SMALL, **_TENS, "hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9}


def _group_value(words: list[str]) -> int:
    # word2number's number_formation: at most four words below a thousand, e.g. "two hundred forty one"
    nums = [_WORDS[w] for w in words]
    if len(nums) == 4:
        return nums[0] * nums[1] + nums[2] + nums[3]
    if len(nums) == 3:
        return nums[0] * nums[1] + nums[2]
    if len(nums) == 2:
        return nums[0] * nums[1] if 100 in nums else nums[0] + nums[1]
    return nums[0]


def words_to_number(text: str) -> str:
    """``word2number.w2n.word_to_num`` as Qwen applies it: every number word anywhere in the text
    is read as one number, and the text becomes that number; text without number words, or that
    does not read as one number, stays as it was."""
    s = text.replace("-", " ").lower()
    if s.isdigit():
        return str(int(s))
    words = [w for w in s.strip().split() if w in _WORDS or w == "point"]
    if not words or any(words.count(w) > 1 for w in ("thousand", "million", "billion", "point")):
        return text
    decimals: list[str] = []
    if "point" in words:
        at = words.index("point")
        words, decimals = words[:at], words[at + 1 :]
    try:
        marks = {w: (words.index(w) if w in words else -1) for w in ("billion", "million", "thousand")}
        b, m, t = marks["billion"], marks["million"], marks["thousand"]
        if (t > -1 and (t < m or t < b)) or (m > -1 and m < b):
            return text
        total = 0
        if len(words) == 1:
            total = _WORDS[words[0]]
        elif words:
            if b > -1:
                total += _group_value(words[:b]) * 10**9
            if m > -1:
                total += _group_value(words[b + 1 : m] if b > -1 else words[:m]) * 10**6
            if t > -1:
                start = m + 1 if m > -1 else (b + 1 if b > -1 else 0)
                total += _group_value(words[start:t]) * 1000
            last = max(t, m, b)
            if last == -1:
                total += _group_value(words)
            elif last != len(words) - 1:
                total += _group_value(words[last + 1 :])
        if decimals:
            digits = "".join(str(_SMALL[w]) for w in decimals)
            return str(total + float("0." + digits))
        return str(total)
    except (KeyError, IndexError, ValueError):
        return text


# ----------------------------------------------------------------------------- strip_string

# MathQA's unit words, as listed in Qwen's parser (matched as regexes, like the original).
_UNIT_TEXTS = [
    "east", "degree", "mph", "kmph", "ft", "m sqaure", " m east", "sq m", "deg", "mile", "q .", "monkey",
    "prime", "ratio", "profit of rs", "rd", "o", "gm", "p . m", "lb", "tile", "per", "dm", "lt", "gain",
    "ab", "way", "west", "a .", "b .", "c .", "d .", "e .", "f .", "g .", "h .", "t", "a", "h",
    "no change", "men", "soldier", "pie", "bc", "excess", "st", "inches", "noon", "percent", "by", "gal",
    "kmh", "c", "acre", "rise", "a . m", "th", "π r 2", "sq", "mark", "l", "toy", "coin", "sq . m",
    "gallon", "° f", "profit", "minw", "yr", "women", "feet", "am", "pm", "hr", "cu cm", "square",
    "v â € ™", "are", "rupee", "rounds", "cubic", "cc", "mtr", "s", "ohm", "number", "kmph", "day",
    "hour", "minute", "min", "second", "man", "woman", "sec", "cube", "mt", "sq inch", "mp", "∏ cm ³",
    "hectare", "more", "sec", "unit", "cu . m", "cm 2", "rs .", "rs", "kg", "g", "month", "km", "m",
    "cm", "mm", "apple", "liter", "loss", "yard", "pure", "year", "increase", "decrease", "d", "less",
    "Surface", "litre", "pi sq m", "s .", "metre", "meter", "inch",
]
_UNIT_TEXTS = _UNIT_TEXTS + [u + "s" for u in _UNIT_TEXTS]
_UNIT_RES = [re.compile(r"(^|\W)" + u + r"($|\W)") for u in _UNIT_TEXTS]


def _fix_fracs(s: str) -> str:
    # \frac12 -> \frac{1}{2}, \frac1{72} -> \frac{1}{72}
    parts = s.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if part[:1] == "{":
            out += part
            continue
        if len(part) < 2:
            return s
        a, b, rest = part[0], part[1], part[2:]
        out += "{" + a + "}" + (b + rest if b == "{" else "{" + b + "}" + rest)
    return out


def _fix_a_slash_b(s: str) -> str:
    pieces = s.split("/")
    if len(pieces) != 2:
        return s
    a, b = pieces
    try:
        a2 = a if "sqrt" in a else int(a)
        b2 = b if "sqrt" in b else int(b)
        if s != f"{a2}/{b2}":
            return s
        return "\\frac{" + str(a2) + "}{" + str(b2) + "}"
    except ValueError:
        return s


def strip_string(string, skip_unit: bool = False) -> str:
    """Qwen2.5-Math's answer normalisation (see the module docstring)."""
    s = str(string).strip().replace("\n", "").rstrip(".").replace("\\!", "")
    s = re.sub(r"\\begin\{array\}\{.*?\}", r"\\begin{pmatrix}", s)
    s = re.sub(r"\\end\{array\}", r"\\end{pmatrix}", s).replace("bmatrix", "pmatrix")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac")
    s = s.replace("\\neq", "\\ne").replace("\\leq", "\\le").replace("\\geq", "\\ge")
    s = s.replace("\\left", "").replace("\\right", "").replace("\\{", "{").replace("\\}", "}")
    t = re.sub(r"\\text{.*?}$", "", s).strip()
    if t and t != s:
        s = t
    if not skip_unit:
        for _ in range(2):
            for unit_re in _UNIT_RES:
                t = unit_re.sub(r"\1\2", s)
                if t:
                    s = t
    s = s.replace("^{\\circ}", "").replace("^\\circ", "")
    s = s.replace("\\$", "").replace("$", "").replace("\\(", "").replace("\\)", "")
    s = words_to_number(s)
    s = re.sub(r"\\text\{(.*?)\}", r"\1", s)
    for key in ("x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to"):
        s = s.replace(key, "")
    s = s.replace("\\emptyset", "{}").replace("(-\\infty,\\infty)", "\\mathbb{R}")
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace(" .", " 0.").replace("{.", "{0.")
    # (the original strips an outer {...}, (...) or [...] only when the whole string isalnum(),
    # which a bracketed string never is, so that step never fires and is left out)
    s = s.replace("infinity", "\\infty")
    if "\\infty" not in s:
        s = s.replace("inf", "\\infty")
    s = s.replace("+\\inity", "\\infty")
    s = s.replace("and", "").replace("\\mathbf", "")
    s = re.sub(r"\\mbox{.*?}", "", s)
    if "j" in s and "i" not in s:
        s = s.replace("j", "i")
    s = re.sub(r"(\d+)\.0*([^\d])", r"\1\2", s)
    s = re.sub(r"(\d+)\.0*$", r"\1", s)
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    if len(s.split("=")) == 2 and len(s.split("=")[0]) <= 2:
        s = s.split("=")[1]
    s = re.sub(r"\\sqrt(\w+)", r"\\sqrt{\1}", s)
    s = s.replace(" ", "")
    s = _fix_fracs(s)
    return _fix_a_slash_b(s)


# ----------------------------------------------------------------------------- extract_answer

_LAST_NUMBER = re.compile(r"-?\d*\.?\d+")


def _after_last_box(text: str) -> str:
    rest = text.split("boxed")[-1]
    if not rest:
        return ""
    if rest[0] != "{":
        return rest.split("$")[0].strip()
    depth, out = 1, []
    for ch in rest[1:]:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                break
        out.append(ch)
    return "".join(out)


def extract_answer(response: str, use_last_number: bool = True) -> str:
    """The answer Qwen's parser reads out of a whole response (data_name "math"), normalised."""
    text = response.replace("\u043a\u0438", "")
    if "final answer is $" in text and "$. I hope" in text:
        pred = text.split("final answer is $", 1)[1].split("$. I hope", 1)[0].strip()
    elif "boxed" in text:
        pred = _after_last_box(text)
    elif "he answer is" in text:
        pred = text.split("he answer is")[-1].strip()
    elif "final answer is" in text:
        pred = text.split("final answer is")[-1].strip()
    elif "答案是" in text:
        pred = text.split("答案是")[1].strip().split("\n\n")[0].strip()
    elif use_last_number:
        numbers = _LAST_NUMBER.findall(text.replace(",", ""))
        pred = numbers[-1] if numbers else ""
    else:
        pred = ""
    pred = re.sub(r"\n\s*", "", pred)
    if pred[:1] == ":":
        pred = pred[1:]
    if pred[-1:] == ".":
        pred = pred[:-1]
    if pred[-1:] == "/":
        pred = pred[:-1]
    return strip_string(pred)


_TRIGGERS = ("boxed", "he answer is", "final answer is", "答案是")


def prepare_prediction(prediction: str, whole_response: bool) -> str:
    """What Qwen's pipeline would compare for this prediction: ``extract_answer`` when the text
    has one of its answer markers or is a whole response (then the last number is the fallback);
    a bare answer only goes through ``strip_string``."""
    if whole_response or any(t in prediction for t in _TRIGGERS):
        return extract_answer(prediction)
    return strip_string(prediction)


def prepare_gold(gold: str) -> str:
    """The reference as Qwen's ``parse_ground_truth`` prepares it: the last box of a MATH
    solution, the part after ``####`` of a GSM8K answer, else the stored answer, normalised."""
    if "boxed" in gold:
        return extract_answer(gold)
    if "####" in gold:
        return strip_string(gold.split("####")[-1])
    return strip_string(gold)


# ----------------------------------------------------------------------------- math_equal

def _choice_clean(pred: str) -> str:
    pred = pred.strip("\n").rstrip(".").rstrip("/").strip(" ").lstrip(":")
    letters = re.findall(r"\b(A|B|C|D|E)\b", pred.upper())
    pred = letters[-1] if letters else pred.strip().strip(".")
    return pred.rstrip(".").rstrip("/")


def _parse_digits(num):
    num = re.sub(",", "", str(num))
    try:
        return float(num)
    except ValueError:
        if num.endswith("%"):
            num = num[:-1]
            if num.endswith("\\"):
                num = num[:-1]
            try:
                return float(num) / 100
            except ValueError:
                pass
    return None


def _numeric_equal(prediction: float, reference: float) -> bool:
    return isclose(reference, prediction, rel_tol=1e-4)


def _numerically_equal(prediction, reference, include_percentage: bool, is_close: bool) -> bool:
    p, r = _parse_digits(prediction), _parse_digits(reference)
    if p is None or r is None:
        return False
    candidates = [r / 100, r, r * 100] if include_percentage else [r]
    for item in candidates:
        try:
            if (is_close and _numeric_equal(p, item)) or (not is_close and item == p):
                return True
        except Exception:  # noqa: BLE001 - overflow and the like: try the next variant
            continue
    return False


def _str_to_pmatrix(s: str) -> str:
    rows = re.findall(r"\{.*,.*\}", s.strip())
    return ", ".join(r"\begin{pmatrix}" + m.strip("{}").replace(",", "\\") + r"\end{pmatrix}" for m in rows)


def _has_format(s: str, start: str, end: str) -> bool:
    return s.startswith(start) and s.endswith(end)


def _is_list(s: str) -> bool:
    return re.match(r"(\(|\[).+(\)|\])", s) is not None


def _is_matrix(s: str) -> bool:
    return (s.startswith("\\begin{pmatrix}") or s.startswith("\\begin{bmatrix}")) and (
        s.endswith("\\end{pmatrix}") or s.endswith("\\end{bmatrix}")
    )


def _compare_lists(pred: str, ref: str, include_percentage: bool, is_close: bool) -> bool:
    p, r = pred[1:-1].split(","), ref[1:-1].split(",")
    return len(p) == len(r) and all(math_equal(a, b, include_percentage, is_close) for a, b in zip(p, r))


def _compare_matrices(pred: str, ref: str, include_percentage: bool, is_close: bool) -> bool:
    def rows(m: str) -> list[str]:
        body = m[len("\\begin{pmatrix}") : -len("\\end{pmatrix}")]
        return [line.strip() for line in body.split("\\\\") if line.strip()]

    p_rows, r_rows = rows(pred), rows(ref)
    if len(p_rows) != len(r_rows):
        return False
    for p_row, r_row in zip(p_rows, r_rows):
        p_cells, r_cells = p_row.split("&"), r_row.split("&")
        if len(p_cells) != len(r_cells):
            return False
        if not all(math_equal(a, b, include_percentage, is_close) for a, b in zip(p_cells, r_cells)):
            return False
    return True


def _as_difference(equation: str) -> str:
    left, right = equation.split("=")[:2]
    return f"{left.strip()} - ({right.strip()})"


def _is_simple_equation(s: str) -> bool:
    return s.count("=") == 1 and len(s.split("=")[0].strip()) <= 2


def _sympy_parse(s: str):
    from latex2sympy2_extended import latex2sympy
    from sympy.parsing.latex import parse_latex
    from sympy.parsing.sympy_parser import parse_expr

    for parser in (parse_latex, parse_expr, latex2sympy):
        for text in (s.replace("\\\\", "\\"), s):
            try:
                return parser(text)
            except Exception:  # noqa: BLE001 - the original tries the next parser on any error
                continue
    return s


def symbolic_equal(a: str, b: str) -> bool:
    from sympy import N, simplify

    x, y = _sympy_parse(a), _sympy_parse(b)
    try:
        if str(x) == str(y) or x == y:
            return True
    except Exception:  # noqa: BLE001
        pass
    try:
        if x.equals(y) or simplify(x - y) == 0:
            return True
    except Exception:  # noqa: BLE001
        pass
    try:
        if (abs(x.lhs - x.rhs)).equals(abs(y.lhs - y.rhs)):
            return True
    except Exception:  # noqa: BLE001
        pass
    try:
        if _numeric_equal(float(N(x)), float(N(y))):
            return True
    except Exception:  # noqa: BLE001
        pass
    try:
        if x.shape == y.shape:
            if x.applyfunc(lambda v: round(v, 3)).equals(y.applyfunc(lambda v: round(v, 3))):
                return True
    except Exception:  # noqa: BLE001
        pass
    return False


def math_equal(prediction, reference, include_percentage: bool = True, is_close: bool = True) -> bool:
    """Qwen2.5-Math's ``math_equal(prediction, reference)`` on two prepared answers."""
    if prediction is None or reference is None:
        return False
    if str(prediction).strip().lower() == str(reference).strip().lower():
        return True
    if reference in ("A", "B", "C", "D", "E") and _choice_clean(prediction) == reference:
        return True
    if _numerically_equal(prediction, reference, include_percentage, is_close):
        return True
    if not prediction and prediction not in (0, False):
        return False

    reference, prediction = str(reference).strip(), str(prediction).strip()
    if "pmatrix" in prediction and "pmatrix" not in reference:
        reference = _str_to_pmatrix(reference)

    p, r = prediction, reference
    if (_has_format(p, "[", "]") and not _has_format(r, "(", ")")) or (
        _has_format(p, "(", ")") and not _has_format(r, "[", "]")
    ):
        p, r = p.strip("[]()"), r.strip("[]()")
    for bracket in ("{", "}", "(", ")"):
        p, r = p.replace(bracket, ""), r.replace(bracket, "")
    if p.lower() == r.lower():
        return True

    if _is_list(prediction) and _is_list(reference):
        return _compare_lists(prediction, reference, include_percentage, is_close)
    if _is_matrix(prediction) and _is_matrix(reference):
        return _compare_matrices(prediction, reference, include_percentage, is_close)

    if prediction.count("=") == 1 and reference.count("=") == 1:
        pd, rd = _as_difference(prediction), _as_difference(reference)
        return symbolic_equal(pd, rd) or symbolic_equal(f"-({pd})", rd)
    if _is_simple_equation(prediction) and "=" not in reference:
        return math_equal(prediction.split("=")[1], reference, include_percentage, is_close)
    if _is_simple_equation(reference) and "=" not in prediction:
        return math_equal(prediction, reference.split("=")[1], include_percentage, is_close)

    return symbolic_equal(prediction, reference)


def judge(gold: str, prediction: str, whole_response: bool) -> bool:
    """Prepare both sides the way Qwen's pipeline does, then ``math_equal(pred, gold)``."""
    return bool(math_equal(prepare_prediction(prediction, whole_response), prepare_gold(gold)))


# ----------------------------------------------------------------------------- deadline

def _serve(conn) -> None:
    import logging

    logging.disable(logging.CRITICAL)
    import sympy  # noqa: F401 - import once, before the first deadline

    conn.send("ready")
    while True:
        job = conn.recv()
        if job is None:
            return
        try:
            conn.send(judge(*job))
        except Exception:  # noqa: BLE001 - an error is a "no"
            conn.send(False)


class QwenJudge:
    """``QwenJudge(timeout_s)(gold, pred, whole_response) -> bool``, each check in a worker
    process under a wall-clock deadline: a check that runs past it is a "no", and the worker is
    killed and replaced. ``timeouts`` counts those."""

    def __init__(self, timeout_s: float = 5.0, start_timeout_s: float = 60.0) -> None:
        self.timeout_s = timeout_s
        self.start_timeout_s = start_timeout_s
        self.timeouts = 0
        self._ctx = mp.get_context("spawn")
        self._proc = None
        self._conn = None

    def _start(self) -> None:
        parent, child = self._ctx.Pipe()
        self._proc = self._ctx.Process(target=_serve, args=(child,), daemon=True)
        self._proc.start()
        self._conn = parent
        if not parent.poll(self.start_timeout_s) or parent.recv() != "ready":
            raise RuntimeError("the Qwen math_equal worker did not start")

    def _kill(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.join()
        self._proc = self._conn = None

    def __call__(self, gold: str, prediction: str, whole_response: bool = False) -> bool:
        if self._proc is None or not self._proc.is_alive():
            self._start()
        self._conn.send((gold, prediction, whole_response))
        if self._conn.poll(self.timeout_s):
            try:
                return bool(self._conn.recv())
            except EOFError:  # the worker died (e.g. out of memory): a "no"
                self._kill()
                return False
        self.timeouts += 1
        self._kill()
        return False

    def close(self) -> None:
        if self._proc is not None and self._proc.is_alive():
            try:
                self._conn.send(None)
                self._proc.join(2)
            except (BrokenPipeError, OSError):
                pass
        self._kill()
