"""Trace files: the JSONL layout ``r1kit generate`` writes and the filter and pairs read.

One row per trace: ``id`` (the prompt's id; a prompt's k traces share it), ``prompt``, ``answer``
(the gold answer, or null), ``completion`` (the whole response, any prefill such as ``<think>``
included, so it is what the rewards judge), ``finish_reason`` (``stop`` or ``length``),
``completion_tokens``, ``teacher`` and the sampling settings. Other fields are kept and passed to
the verifier as reward columns (``task``, ``numbers``, ``target`` for the procedural tasks).
"""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from typing import Any, Iterator

from r1kit.eval.grading import grade
from r1kit.types import Group, Sample

REQUIRED_FIELDS = ("id", "prompt", "completion", "finish_reason")
FINISH_REASONS = ("stop", "length")
# Row fields that are not reward columns.
_NOT_COLUMNS = frozenset({
    "id", "prompt", "completion", "finish_reason", "completion_tokens", "teacher", "sampling", "sample_index",
})
GRADE_CHUNK = 256  # prompts graded per score_groups call: bounds memory on large files


class DistillError(ValueError):
    """Bad distillation input (a trace file or row, a setting): the message names the culprit."""


def read_traces(path: str | Path, require: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Rows of a trace file, each checked: a JSON object with the required fields (and those in
    ``require``), a known ``finish_reason`` and a string ``completion``. Errors name the file and
    the 1-based line."""
    path = Path(path)
    if not path.is_file():
        raise DistillError(f"{path}: no such trace file")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            rows.append(check_row(parse_line(line, path, n), path, n, require))
    return rows


def parse_line(line: str, path: Path, n: int) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise DistillError(f"{path} line {n}: not a JSON object ({e.msg})") from None
    if not isinstance(row, dict):
        raise DistillError(f"{path} line {n}: not a JSON object (got {type(row).__name__})")
    return row


def check_row(row: dict[str, Any], path: Path, n: int, require: tuple[str, ...] = ()) -> dict[str, Any]:
    missing = [k for k in (*REQUIRED_FIELDS, *require) if row.get(k) is None]
    if missing:
        raise DistillError(f"{path} line {n}: missing field '{missing[0]}' (the row has {', '.join(sorted(row)) or 'no fields'})")
    if not isinstance(row["completion"], str):
        raise DistillError(f"{path} line {n}: 'completion' must be a string, got {type(row['completion']).__name__}")
    if row["finish_reason"] not in FINISH_REASONS:
        raise DistillError(f"{path} line {n}: finish_reason {row['finish_reason']!r} is not one of {', '.join(FINISH_REASONS)}")
    tokens = row.get("completion_tokens")
    if tokens is not None and (not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0):
        raise DistillError(f"{path} line {n}: completion_tokens must be a non-negative integer, got {tokens!r}")
    return row


def by_prompt(rows: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Row indices per prompt id, prompts in order of first appearance."""
    out: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        out.setdefault(str(row["id"]), []).append(i)
    return out


def has_gold(row: dict[str, Any]) -> bool:
    answer = row.get("answer")
    return answer is not None and str(answer).strip() != ""


def grade_rows(rows: list[dict[str, Any]], runtime=None, progress: bool = False) -> list[dict[str, Any]]:
    """Per row: ``correct`` (the accuracy reward's verifier against ``answer``; False without
    a gold answer) and ``well_formed`` (strict R1 format), through the same grader as training
    and ``r1kit eval``."""
    prompts = by_prompt(rows)
    out: list[dict[str, Any]] = [{} for _ in rows]
    ids = list(prompts)
    bar = _bar(len(rows), progress)
    for lo in range(0, len(ids), GRADE_CHUNK):
        chunk = [prompts[i] for i in ids[lo : lo + GRADE_CHUNK]]
        groups = [_group([rows[j] for j in idx]) for idx in chunk]
        graded, _ = grade(groups, runtime)
        for idx, samples in zip(chunk, graded):
            for j, s in zip(idx, samples):
                out[j] = {"correct": s["correct"] and has_gold(rows[j]), "well_formed": s["well_formed"]}
        if bar is not None:
            bar.update(sum(len(idx) for idx in chunk))
    if bar is not None:
        bar.close()
    return out


def _group(rows: list[dict[str, Any]]) -> Group:
    """One prompt's traces as a Group; the reward columns come from its first row."""
    columns = {k: v for k, v in rows[0].items() if k not in _NOT_COLUMNS}
    texts = [r["completion"] for r in rows]
    return Group(
        sample=Sample(prompt=str(rows[0]["prompt"]), prefill="", columns=columns),
        prompt_ids=[],
        completion_ids=[[] for _ in texts],
        completions=texts,
        truncated=[r["finish_reason"] == "length" for r in rows],
    )


def _bar(total: int, enabled: bool):
    if not enabled or total < 1000:
        return None
    import sys

    from tqdm.auto import tqdm

    return tqdm(total=total, desc="grading", unit="trace", dynamic_ncols=True, file=sys.stderr)


def normalized(text: str) -> str:
    """The text near-duplicates are compared by: NFKC, case-folded, whitespace removed."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def write_jsonl_atomically(path: Path, rows: Iterator[dict[str, Any]] | list[dict[str, Any]]) -> int:
    """Write rows to ``path`` through a temporary file renamed over it: a killed run leaves the
    old file or the new one, never a part. Returns the number of rows."""
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    n = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return n


def report_path(out: Path) -> Path:
    """``OUT.jsonl`` -> ``OUT.report.json``."""
    stem = out.name[: -len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    return out.with_name(f"{stem}.report.json")
