"""Benchmark layouts by name, and any other file with a column mapping, as evaluation problems.

A problem is a task row as training uses them (``question``, ``answer``, ``task``, and the
task's own columns, e.g. ``numbers``/``target``) plus ``id`` and, where the data has them,
``subject`` and ``level``. Known layouts (the column names are tried in order):

    gsm8k     question, answer ending "#### N"                      (openai/gsm8k)
    math500   problem, answer, subject, level, unique_id            (HuggingFaceH4/MATH-500)
    aime24    id, problem, answer  or  ID, Problem, Answer          (integer answers)
    amc23     id, problem, answer  (a float such as 27.0, read as "27")
    custom    prompt_column, answer_column, id_column from the spec
    arithmetic, countdown   procedural, drawn with the spec's seed
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from r1kit.config import ArithmeticSection, CountdownSection
from r1kit.config.eval import EvalDatasetSpec
from r1kit.config.parse import ConfigError, build
from r1kit.data.loaders import DataError, gsm8k_answer, open_dataset, plain_gold
from r1kit.data.tasks import make_arithmetic, make_countdown


@dataclass(frozen=True)
class Layout:
    prompt: tuple[str, ...]  # candidate column names, first present wins
    answer: tuple[str, ...]
    id: tuple[str, ...] = ()
    gold: Callable[[Any], str | None] | None = None  # gold answer from the answer cell


LAYOUTS: dict[str, Layout] = {
    "gsm8k": Layout(("question",), ("answer",), ("id",), gold=lambda v: gsm8k_answer(str(v or ""))),
    "math500": Layout(("problem",), ("answer",), ("unique_id", "id")),
    "aime24": Layout(("problem", "Problem"), ("answer", "Answer"), ("id", "ID")),
    "amc23": Layout(("problem", "Problem"), ("answer", "Answer"), ("id", "ID")),
    "custom": Layout((), ()),
}
PROCEDURAL = {"arithmetic": (make_arithmetic, ArithmeticSection), "countdown": (make_countdown, CountdownSection)}
KNOWN = (*LAYOUTS, *PROCEDURAL)


@dataclass
class Benchmark:
    name: str
    problems: list[dict[str, Any]]
    source: str  # the path, hub id, or "arithmetic(seed=...)"
    sha256: str  # of the file(s) read, or of the generated problems


def _check_known(spec: EvalDatasetSpec) -> None:
    layout = spec.layout_name
    if layout not in KNOWN:
        raise DataError(
            f"eval dataset '{spec.name}': unknown benchmark '{layout}' (known: {', '.join(KNOWN)}; "
            "for another file set layout: custom with prompt_column and answer_column)"
        )
    if layout in PROCEDURAL and spec.path:
        raise DataError(f"eval dataset '{spec.name}': '{layout}' is a procedural task; it takes a seed, not a path")
    if layout not in PROCEDURAL and not spec.path:
        raise DataError(f"eval dataset '{spec.name}': give the path of the {layout} data (NAME=PATH)")
    if layout == "custom" and not (spec.prompt_column and spec.answer_column):
        raise DataError(f"eval dataset '{spec.name}': the custom layout needs prompt_column and answer_column")


def _column(cols: list[str], given: str | None, candidates: tuple[str, ...], what: str, spec: EvalDatasetSpec,
            required: bool = True) -> str | None:
    if given:
        options: tuple[str, ...] = (given,)
    else:
        options = candidates
    for c in options:
        if c in cols:
            return c
    if not required:
        return None
    return _missing(spec, options, what, cols)


def _missing(spec: EvalDatasetSpec, options: tuple[str, ...], what: str, cols: list[str]):
    raise DataError(
        f"{spec.path}: no {what} column {' or '.join(repr(o) for o in options)} "
        f"(layout {spec.layout_name}); columns found: {', '.join(cols)}"
    )


def file_sha256(path: str) -> str:
    """sha256 of a file, or of a directory's files (relative names and contents, sorted)."""
    p = Path(path).expanduser()
    h = hashlib.sha256()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and ".cache" not in f.parts)
    for f in files:
        if p.is_dir():
            h.update(str(f.relative_to(p)).encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _json_sha256(rows: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()


def task_settings(spec: EvalDatasetSpec, train_data=None) -> Any:
    """The procedural task's settings: the training run's ``data.<task>`` section (when it
    trained on this task) with the spec's keys over it."""
    section = PROCEDURAL[spec.layout_name][1]
    base: dict[str, Any] = {}
    if getattr(train_data, "source", None) == spec.layout_name:
        from r1kit.config import to_dict

        base = to_dict(getattr(train_data, spec.layout_name))
    try:
        return build(section, {**base, **getattr(spec, spec.layout_name)}, f"{spec.layout_name}.")
    except ConfigError as e:
        raise DataError(f"eval dataset '{spec.name}': {e}") from None


def _procedural(spec: EvalDatasetSpec, n: int, train_data=None) -> Benchmark:
    make = PROCEDURAL[spec.layout_name][0]
    settings = task_settings(spec, train_data)
    gen = functools.partial(make, settings, spec.seed)
    problems = [{"id": f"{spec.layout_name}-{spec.seed}-{i}", **gen(i)} for i in range(n)]
    source = f"{spec.layout_name}(seed={spec.seed}, {settings})"
    return Benchmark(spec.name, problems, source, _json_sha256(problems))


def load_benchmark(spec: EvalDatasetSpec, limit: int | None = None, train_data=None) -> Benchmark:
    """The problems of one dataset spec, in file order (the first ``limit`` of them).

    ``train_data``: the training run's ``DataSection``, whose task settings a procedural dataset
    of the same task inherits. Raises DataError naming the file, the column and the columns found,
    or the row, for data that does not fit the layout."""
    _check_known(spec)
    limits = [x for x in (limit, spec.limit) if x is not None]
    n = min(limits) if limits else None
    if spec.layout_name in PROCEDURAL:
        return _procedural(spec, min(n or spec.num_problems, spec.num_problems), train_data)
    layout = LAYOUTS[spec.layout_name]
    ds = open_dataset(spec.path, spec.split, spec.subset, key=f"eval dataset '{spec.name}' path")
    cols = list(ds.column_names)
    q_col = _column(cols, spec.prompt_column, layout.prompt, "prompt", spec)
    a_col = _column(cols, spec.answer_column, layout.answer, "answer", spec)
    id_col = _column(cols, spec.id_column, layout.id, "id", spec, required=bool(spec.id_column))
    extra = [c for c in ("subject", "level") if c in cols]
    if n is not None:
        ds = ds.select(range(min(n, len(ds))))
    gold = layout.gold or plain_gold
    problems, seen = [], set()
    for i, row in enumerate(ds.select_columns(list(dict.fromkeys([q_col, a_col, *( [id_col] if id_col else []), *extra]))).to_list()):
        question, answer = row[q_col], gold(row[a_col])
        if question is None or not str(question).strip():
            raise DataError(f"{spec.path}: row {i} has an empty '{q_col}'")
        if answer is None:
            raise DataError(f"{spec.path}: row {i} has no gold answer in '{a_col}' (layout {spec.layout_name}): {row[a_col]!r}")
        pid = str(row[id_col]) if id_col else str(i)
        if pid in seen:
            raise DataError(f"{spec.path}: row {i} repeats the id {pid!r} of column '{id_col}'")
        seen.add(pid)
        problem = {"id": pid, "question": str(question), "answer": answer, "task": "math"}
        problem.update({c: row[c] for c in extra if row[c] is not None})
        problems.append(problem)
    if not problems:
        raise DataError(f"{spec.path}: no rows")
    local = Path(spec.path).expanduser().exists()
    digest = file_sha256(spec.path) if local else f"hub:{getattr(ds, '_fingerprint', 'unknown')}"
    return Benchmark(spec.name, problems, spec.path, digest)
