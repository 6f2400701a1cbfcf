"""Structure of an answer (rules 3 and 4 of ``r1kit.rewards.equivalence``): lists, sets, tuples
and intervals, unions, matrices, equations and inequalities, parsed into a small tree and
compared node by node; the leaves go to ``numbers``."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from r1kit.rewards.equivalence.normalize import canon
from r1kit.rewards.equivalence.numbers import (
    free_names,
    proportional,
    scalars_equal,
    to_sympy,
)


@dataclass
class Node:
    kind: str  # scalar | list | set | seq | union | setop | matrix | eq | rel
    text: str = ""
    items: list = field(default_factory=list)  # list/set/seq/union: Node; matrix: rows of str
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


def _split_items(s: str) -> list[str]:
    """Top-level items separated by commas, or by semicolons when there is no comma: "(1; 2; 3)"."""
    items = _split_top(s, ",")
    return _split_top(s, ";") if len(items) == 1 else items


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


def parse_node(s: str) -> Node:
    s = s.strip()
    s = re.sub(r"^[A-Za-z]\s*\\in(?![a-zA-Z])\s*", "", s)  # "x \in (1, 2]"
    if s in ("\\emptyset", "\\{\\}"):
        return Node("set")
    pm = [i for i, _, tok in _scan(s) if tok in ("\\pm", "\\mp")]
    if len(pm) == 1 and len(_split_top(s, ",")) == 1:
        i = pm[0]
        tail = s[i + 3 :]
        a, b = s[:i] + "+" + tail, s[:i] + "-" + tail
        return Node("list", items=[parse_node(a), parse_node(b)])
    if any(depth == 0 and tok in _DIFFERENCE_OR_MEET for _, depth, tok in _scan(s)):
        return Node("setop", text=s)  # "\{1,2\} \cap \{2,3\}", "\mathbb{R} \setminus \{2\}"
    pieces = _split_top(s, "\\cup")
    if len(pieces) > 1:
        parts = [parse_node(p) for p in pieces]
        if all(x.kind in ("set", "list") for x in parts):  # \{1,3\} \cup \{2,4\}: one finite set
            return Node("set", items=_distinct([i for x in parts for i in x.items]))
        return Node("union", items=parts)
    m = _MATRIX.fullmatch(s)
    if m:
        rows = [r for r in re.split(r"\\\\", m.group(2)) if r.strip() and not r.strip().startswith("\\hline")]
        return Node("matrix", items=[[c.strip() for c in r.split("&")] for r in rows])
    if "\\approx" in s:
        first, *_, last = _split_top(s, "\\approx")
        s = last if _is_name(first) else first  # "x \approx 2.5" vs "1/3 \approx 0.33"
    outer = _outer_brackets(s)
    if outer:
        left, right, inner = outer
        items = _split_items(inner) if inner.strip() else []
        if left == "\\{":
            return Node("set", items=_distinct([parse_node(x) for x in items]))
        if left == "{" and right == "}":
            return parse_node(inner)  # a TeX group: {1,3} is the list 1,3
        if len(items) >= 2:
            return Node("seq", items=[parse_node(x) for x in items], brackets=left + right)
        if left == "(" and right == ")":
            return parse_node(inner)
    items = _split_items(s)
    if len(items) > 1:
        return Node("list", items=[parse_node(x) for x in items if x])
    sides = _split_top(s, "=")
    if len(sides) > 1:
        return Node("eq", text=s, chain=sides)
    if _has_top(s, _RELATIONS):
        return Node("rel", text=s)
    return Node("scalar", text=s)


_DIFFERENCE_OR_MEET = ("\\cap", "\\setminus", "\\backslash")
_SET_OPERATORS = ("\\cup", *_DIFFERENCE_OR_MEET)
_REALS = re.compile(r"\\mathbb\s*\{?R\}?|\\R|\\Reals")


def _distinct(items: list[Node]) -> list[Node]:
    out: list[Node] = []
    for item in items:
        if not any(nodes_equal(seen, item) for seen in out):
            out.append(item)
    return out


_NAME = re.compile(
    r"[A-Za-z](?:_\{?[\w\\]+\}?)?'*|\\[A-Za-z]+(?:_\{?\w+\}?)?|[A-Za-z]\([^()=]*\)|\\text\{[^{}]*\}"
)


def _is_name(s: str) -> bool:
    """A variable or function value standing alone: ``x``, ``a_1``, ``\\theta``, ``f(2)``."""
    return bool(_NAME.fullmatch(s.strip())) and s.strip() not in ("\\pi", "\\infty", "e")


def nodes_equal(g: Node, p: Node) -> bool:
    if p.kind == "eq" and g.kind != "eq":
        rhs = _value_of_equation(p)
        return rhs is not None and nodes_equal(g, parse_node(rhs))
    if g.kind == "eq" and p.kind != "eq":
        if not _is_name(g.chain[0]):
            return False  # "x^2 + y^2 = 1" is not the value 1
        return nodes_equal(parse_node(g.chain[-1]), p)
    if g.kind == "eq":
        return _equations_equal(g, p)
    reals = any(x.kind == "scalar" and _REALS.fullmatch(x.text) for x in (g, p)) and g.kind != p.kind
    either = any(x.kind == "list" and x.items and all(i.kind == "rel" for i in x.items) for x in (g, p))
    setop = "setop" in (g.kind, p.kind)
    if "rel" in (g.kind, p.kind) or {g.kind, p.kind} == {"union", "seq"} or reals or either or setop:
        return _sets_equal(g, p)
    collections = ("list", "set")
    point = _assignments_as_point(g, p)
    if point is None:
        point = _assignments_as_point(p, g)
    if point is not None:
        return point
    if g.kind in collections and p.kind in collections:
        return _unordered_equal(g.items, p.items)
    ordered = _list_as_tuple(g, p)
    if ordered is not None:
        return ordered
    if g.kind in collections and len(g.items) == 1:
        return nodes_equal(g.items[0], p)
    if p.kind in collections and len(p.items) == 1:
        return nodes_equal(g, p.items[0])
    if g.kind == "union" and p.kind == "union":
        return _unordered_equal(g.items, p.items) or _sets_equal(g, p)
    if g.kind == "seq" and p.kind == "seq":
        return (
            _same_brackets(g.brackets, p.brackets)
            and len(g.items) == len(p.items)
            and all(nodes_equal(a, b) for a, b in zip(g.items, p.items))
        )
    if g.kind == "matrix" or p.kind == "matrix":
        return _matrices_equal(g, p)
    if g.kind == "scalar" and p.kind == "scalar":
        return scalars_equal(g.text, p.text)
    return False


def _assignments_as_point(seq: Node, other: Node) -> bool | None:
    """``(-3, 2)`` vs ``x = -3, y = 2``: the assignments, in alphabetical order of their
    variables, as the coordinates of the point. None when the shapes are not these."""
    if seq.kind != "seq" or seq.brackets not in ("()", "⟨⟩") or other.kind != "list":
        return None
    if len(seq.items) != len(other.items) or not all(
        i.kind == "eq" and len(i.chain) == 2 and _is_name(i.chain[0]) for i in other.items
    ):
        return None
    names = [canon(i.chain[0]) for i in other.items]
    if len(set(names)) != len(names):
        return None
    values = [i.chain[1] for _, i in sorted(zip(names, other.items), key=lambda t: t[0])]
    return all(nodes_equal(a, parse_node(v)) for a, v in zip(seq.items, values))


def _list_as_tuple(g: Node, p: Node) -> bool | None:
    """A bare list against a tuple (``1, 3`` vs ``(1, 3)``): the same items in the same order.
    None when the shapes are not these."""
    pair = {g.kind, p.kind}
    if pair != {"list", "seq"}:
        return None
    seq, bare = (g, p) if g.kind == "seq" else (p, g)
    if seq.brackets not in ("()", "⟨⟩") or len(seq.items) != len(bare.items):
        return None
    return all(nodes_equal(a, b) for a, b in zip(g.items, p.items))


def _same_brackets(a: str, b: str) -> bool:
    vector = str.maketrans("⟨⟩", "()")
    return a.translate(vector) == b.translate(vector)


def _unordered_equal(gold: list[Node], pred: list[Node]) -> bool:
    if len(gold) != len(pred):
        return False
    left = list(pred)
    for g in gold:
        for k, p in enumerate(left):
            if nodes_equal(g, p):
                del left[k]
                break
        else:
            return False
    return True


def _matrices_equal(g: Node, p: Node) -> bool:
    def cells(node: Node) -> list[list[str]] | None:
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
    return all(nodes_equal(parse_node(x), parse_node(y)) for r, s in zip(a, b) for x, y in zip(r, s))


def _value_of_equation(p: Node) -> str | None:
    """The value a predicted equation gives: the last right-hand side, unless the left side is a
    number that the right side is not equal to (``9 = 1`` gives nothing)."""
    lhs, rhs = p.chain[0], p.chain[-1]
    if not lhs or not rhs:
        return None
    if _is_name(lhs) or re.search(r"[A-Za-z]", re.sub(r"\\(?:frac|sqrt|cdot|times|div|pi)", "", lhs)):
        return rhs
    return rhs if all(scalars_equal(side, rhs) for side in p.chain[:-1]) else None


def _equations_equal(g: Node, p: Node) -> bool:
    gl, gr, pl, pr = g.chain[0], g.chain[-1], p.chain[0], p.chain[-1]
    if _is_name(gl) and _is_name(pl) and canon(gl) == canon(pl):
        return nodes_equal(parse_node(gr), parse_node(pr))
    try:
        e1 = to_sympy(gl) - to_sympy(gr)
        e2 = to_sympy(pl) - to_sympy(pr)
    except Exception:  # noqa: BLE001 - not algebra
        return False
    return proportional(e1, e2)


def _sets_equal(g: Node, p: Node) -> bool:
    """Inequalities, intervals and unions of intervals as subsets of the reals."""
    a, b = _as_real_set(g), _as_real_set(p)
    if a is None or b is None:
        return False
    if _rel_vars(g) and _rel_vars(p) and _rel_vars(g) != _rel_vars(p):
        return False
    return bool(a == b or a.symmetric_difference(b).is_empty)


def _rel_vars(node: Node) -> set[str]:
    if node.kind == "rel":
        return free_names(to_sympy(node.text))
    if node.kind == "list":
        return set().union(*(_rel_vars(i) for i in node.items))
    return set()


def _as_real_set(node: Node):
    import sympy

    try:
        if node.kind == "rel":
            rel = to_sympy(node.text)
            if len(rel.free_symbols) != 1:
                return None
            return rel.as_set()
        if node.kind == "seq" and len(node.items) == 2 and node.brackets in ("()", "(]", "[)", "[]"):
            lo, hi = (to_sympy(i.text) for i in node.items)
            return sympy.Interval(lo, hi, node.brackets[0] == "(", node.brackets[1] == ")")
        if node.kind == "union" or (node.kind == "list" and all(i.kind == "rel" for i in node.items)):
            parts = [_as_real_set(i) for i in node.items]  # "x < -1 or x > 1" is a union too
            return None if any(x is None for x in parts) else sympy.Union(*parts)
        if node.kind == "scalar" and _REALS.fullmatch(node.text):
            return sympy.S.Reals
        if node.kind == "set":  # finite sets of constants: \{0\} \cup [1, 2]
            values = [to_sympy(i.text) for i in node.items if i.kind == "scalar"]
            if len(values) == len(node.items) and not any(v.free_symbols for v in values):
                return sympy.FiniteSet(*values)
        if node.kind == "setop":
            return _set_algebra(node.text)
    except Exception:  # noqa: BLE001
        return None
    return None


def _set_algebra(s: str):
    """``A \\cap B \\setminus C \\cup D`` as a set of reals, operators applied left to right."""
    import sympy

    operands, operators, last = [], [], 0
    for i, depth, tok in _scan(s):
        if depth == 0 and tok in _SET_OPERATORS:
            operands.append(s[last:i])
            operators.append(tok)
            last = i + len(tok)
    operands.append(s[last:])
    sets = [_as_real_set(parse_node(x)) for x in operands]
    if any(x is None for x in sets):
        return None
    out = sets[0]
    for op, other in zip(operators, sets[1:]):
        out = sympy.Union(out, other) if op == "\\cup" else out.intersect(other) if op == "\\cap" else out - other
    return out
