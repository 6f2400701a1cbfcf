"""The evaluation output directory: ``protocol.json`` (what was evaluated, how; written first),
``<dataset>.problems.jsonl`` (one row per finished problem, appended and flushed) and
``results.json`` (written last, atomically). A rerun with the same protocol resumes; another
protocol in the same directory is an error, never a silent mix."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from r1kit.checkpoint import write_text_atomically
from r1kit.logging import read_jsonl

PROTOCOL_FILE = "protocol.json"
RESULTS_FILE = "results.json"
PROBLEMS_SUFFIX = ".problems.jsonl"


class EvalError(RuntimeError):
    """The evaluation cannot go on; the message names the file or the setting."""


def problems_path(out: Path, name: str) -> Path:
    return out / f"{name}{PROBLEMS_SUFFIX}"


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for k, v in tree.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix.rstrip("."): tree}


def first_difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first dotted key whose value differs, as ``key: A there, B now``."""
    a, b = _flat(old), _flat(new)
    for key in [*a, *(k for k in b if k not in a)]:
        if a.get(key) != b.get(key):
            return f"{key}: {a.get(key)!r} there, {b.get(key)!r} now"
    return None


def _eval_files(out: Path) -> list[Path]:
    return [p for p in (out / PROTOCOL_FILE, out / RESULTS_FILE) if p.exists()] + sorted(out.glob(f"*{PROBLEMS_SUFFIX}"))


def prepare_output(out: Path, identity: dict[str, Any], overwrite: bool) -> None:
    """Make ``out`` hold this evaluation: start over (``overwrite``), resume one with the same
    identity, or refuse one with another."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / PROTOCOL_FILE
    if overwrite:
        for f in _eval_files(out):
            f.unlink()
    elif path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            old = {}
        diff = first_difference(old, identity)
        if diff:
            raise EvalError(
                f"{out} holds an evaluation with another protocol ({diff}); pass --overwrite to start "
                "over there, or choose another --output"
            )
    elif _eval_files(out):
        raise EvalError(f"{out} holds evaluation files without {PROTOCOL_FILE}; pass --overwrite or another --output")
    write_text_atomically(path, json.dumps(identity, indent=1) + "\n")


def finished_rows(path: Path, ids: set[str]) -> dict[str, dict[str, Any]]:
    """The problems already finished in ``path``, by id. A last line cut off by a kill is dropped
    (the file is rewritten without it, atomically) and redone."""
    rows = read_jsonl(path)
    if path.is_file():
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if len(lines) != len(rows):
            write_text_atomically(path, "".join(json.dumps(r) + "\n" for r in rows))
    done = {}
    for row in rows:
        if row.get("id") not in ids:
            raise EvalError(f"{path}: row for problem {row.get('id')!r}, which is not in the dataset")
        done[row["id"]] = row
    return done


def append_row(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()


def write_results(out: Path, results: dict[str, Any]) -> Path:
    path = out / RESULTS_FILE
    write_text_atomically(path, json.dumps(results, indent=1) + "\n")
    return path
