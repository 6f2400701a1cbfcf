"""Preference pairs for DPO from teacher traces: per prompt, a verified trace against a failed one.

``chosen`` = a trace that is correct, in the strict R1 format and not truncated; ``rejected`` = a
trace of the same prompt that is wrong or malformed (a truncated trace is one or the other). Each
prompt gives ``min(len(chosen), len(rejected))`` pairs, at most ``max_pairs_per_prompt``: its
chosen and rejected traces are paired in file order, each used once, duplicates (same normalised
text) skipped. Rows are TRL's standard preference layout (``prompt``, ``chosen``, ``rejected``)
plus ``id`` and ``answer``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from r1kit.checkpoint import write_text_atomically
from r1kit.distill.traces import DistillError, by_prompt, grade_rows, normalized, read_traces, report_path, write_jsonl_atomically


def split_traces(rows: list[dict[str, Any]], graded: list[dict[str, Any]], idx: list[int]) -> tuple[list[int], list[int]]:
    """One prompt's rows as (chosen, rejected) candidates, duplicates dropped."""
    chosen, rejected, seen = [], [], set()
    for i in idx:
        key = normalized(rows[i]["completion"])
        if key in seen:
            continue
        seen.add(key)
        good = graded[i]["correct"] and graded[i]["well_formed"] and rows[i]["finish_reason"] == "stop"
        (chosen if good else rejected).append(i)
    return chosen, rejected


def make_pairs(rows: list[dict[str, Any]], max_pairs_per_prompt: int | None = None, runtime=None,
               progress: bool = False) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The preference rows and counts: prompts read, prompts paired, and those left without a
    pair because they had no chosen or no rejected trace."""
    if max_pairs_per_prompt is not None and max_pairs_per_prompt < 1:
        raise DistillError(f"max_pairs_per_prompt must be >= 1, got {max_pairs_per_prompt}")
    graded = grade_rows(rows, runtime, progress)
    pairs, counts = [], {"prompts": 0, "paired": 0, "no_chosen": 0, "no_rejected": 0}
    for pid, idx in by_prompt(rows).items():
        counts["prompts"] += 1
        chosen, rejected = split_traces(rows, graded, idx)
        if not chosen:
            counts["no_chosen"] += 1
            continue
        if not rejected:
            counts["no_rejected"] += 1
            continue
        counts["paired"] += 1
        n = min(len(chosen), len(rejected), max_pairs_per_prompt or len(chosen))
        for c, r in zip(chosen[:n], rejected[:n]):
            pairs.append({
                "id": rows[c]["id"], "prompt": rows[c]["prompt"], "answer": rows[c].get("answer"),
                "chosen": rows[c]["completion"], "rejected": rows[r]["completion"],
            })
    return pairs, counts


def pair_traces(inp: str | Path, out: str | Path, max_pairs_per_prompt: int | None = None, runtime=None,
                progress: bool = True) -> dict[str, Any]:
    """Write the preference pairs of the trace file ``inp`` to ``out`` and the counts to
    ``OUT.report.json`` (both atomically); returns the report."""
    inp, out = Path(inp), Path(out)
    if out.resolve() == inp.resolve():
        raise DistillError(f"--output {out} is the input file: write the pairs elsewhere")
    rows = read_traces(inp)
    pairs, counts = make_pairs(rows, max_pairs_per_prompt, runtime, progress)
    report = {"input": str(inp), "output": str(out), "read": len(rows), "pairs": len(pairs),
              "max_pairs_per_prompt": max_pairs_per_prompt, **counts}
    write_jsonl_atomically(out, pairs)
    write_text_atomically(report_path(out), json.dumps(report, indent=1) + "\n")
    return report
