"""Rejection sampling (DeepSeek-R1 sec. 2.3.3): keep only the teacher traces worth training on.

A trace is kept when it passes every check below. A trace failing several is counted under the
first one failed, in this order (``REASONS``):

1. ``truncated``       ``finish_reason`` is ``length``: the teacher was cut off.
2. ``too_long``        more than ``max_tokens`` completion tokens (when a cap is set).
3. ``malformed``       not the strict R1 format ``<think>…</think> <answer>…</answer>``.
4. ``no_gold``         the row has no gold answer to verify against.
5. ``incorrect``       the verifier (the ``accuracy`` reward) says the answer is wrong.
6. ``language``        under ``min_language_share`` of the reasoning's words are in ``language``
                       (R1's language-mixing filter; a reasoning with no words passes).
7. ``duplicate``       the same prompt already has a kept trace with exactly this completion,
8. ``near_duplicate``  or with the same normalised text (NFKC, case-folded, whitespace removed).
9. ``pass_rate``       the prompt's pass rate lies outside ``pass_rate_band`` (when set).
10. ``max_per_prompt`` the prompt already has ``max_per_prompt`` kept traces (file order).

A prompt's pass rate is the share of all its traces whose answer the verifier accepts, whatever
their format or length: how often the teacher solves it. Keeping prompts whose rate lies in a
band (e.g. 0.2-0.8) selects RL data that is neither solved nor hopeless.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from r1kit.checkpoint import write_text_atomically
from r1kit.distill.traces import (
    DistillError, by_prompt, grade_rows, has_gold, normalized, read_traces, report_path, write_jsonl_atomically,
)
from r1kit.rewards.language import TARGETS, language_share, reasoning_text

REASONS = (
    "truncated", "too_long", "malformed", "no_gold", "incorrect", "language", "duplicate", "near_duplicate",
    "pass_rate", "max_per_prompt",
)


@dataclass
class FilterSettings:
    max_tokens: int | None = None  # completion-token cap; None: no cap
    language: str | None = "en"  # target of the language check; None: no check
    min_language_share: float = 0.95
    pass_rate_band: tuple[float, float] | None = None  # keep prompts with low <= pass rate <= high
    max_per_prompt: int | None = None

    def __post_init__(self) -> None:
        if self.max_tokens is not None and self.max_tokens < 1:
            raise DistillError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.language is not None and self.language not in TARGETS:
            raise DistillError(f"language: unknown target '{self.language}' (known: {', '.join(TARGETS)})")
        if not 0.0 <= self.min_language_share <= 1.0:
            raise DistillError(f"min_language_share must lie in [0, 1], got {self.min_language_share}")
        if self.pass_rate_band is not None:
            lo, hi = self.pass_rate_band
            if not 0.0 <= lo <= hi <= 1.0:
                raise DistillError(f"pass_rate_band must be LOW,HIGH with 0 <= LOW <= HIGH <= 1, got {lo},{hi}")
            self.pass_rate_band = (float(lo), float(hi))
        if self.max_per_prompt is not None and self.max_per_prompt < 1:
            raise DistillError(f"max_per_prompt must be >= 1, got {self.max_per_prompt}")


def pass_rates(rows: list[dict[str, Any]], graded: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per prompt id: its number of traces, how many are correct, and their ratio."""
    out = {}
    for pid, idx in by_prompt(rows).items():
        correct = sum(graded[i]["correct"] for i in idx)
        out[pid] = {"traces": len(idx), "correct": correct, "pass_rate": correct / len(idx)}
    return out


def row_reason(row: dict[str, Any], graded: dict[str, Any], s: FilterSettings) -> str | None:
    """The first per-row check (1-6) the trace fails, or None."""
    if row["finish_reason"] == "length":
        return "truncated"
    if s.max_tokens is not None and row["completion_tokens"] > s.max_tokens:
        return "too_long"
    if not graded["well_formed"]:
        return "malformed"
    if not has_gold(row):
        return "no_gold"
    if not graded["correct"]:
        return "incorrect"
    if s.language is not None:
        share = language_share(reasoning_text(row["completion"]), s.language)
        if share is not None and share < s.min_language_share:
            return "language"
    return None


def filter_rows(rows: list[dict[str, Any]], s: FilterSettings, runtime=None, progress: bool = False) -> tuple[list[str | None], dict[str, dict[str, Any]]]:
    """The rejection reason of every row (None: kept) and the pass rate per prompt."""
    graded = grade_rows(rows, runtime, progress)
    rates = pass_rates(rows, graded)
    reasons: list[str | None] = []
    seen: dict[str, tuple[set[str], set[str]]] = {}  # prompt id -> kept completions, normalised
    kept_per_prompt: dict[str, int] = {}
    for i, row in enumerate(rows):
        pid = str(row["id"])
        reason = row_reason(row, graded[i], s)
        exact, norm = seen.setdefault(pid, (set(), set()))
        text = row["completion"]
        if reason is None and text in exact:
            reason = "duplicate"
        if reason is None and normalized(text) in norm:
            reason = "near_duplicate"
        if reason is None and s.pass_rate_band is not None:
            lo, hi = s.pass_rate_band
            if not lo <= rates[pid]["pass_rate"] <= hi:
                reason = "pass_rate"
        if reason is None and s.max_per_prompt is not None and kept_per_prompt.get(pid, 0) >= s.max_per_prompt:
            reason = "max_per_prompt"
        if reason is None:
            exact.add(text)
            norm.add(normalized(text))
            kept_per_prompt[pid] = kept_per_prompt.get(pid, 0) + 1
        reasons.append(reason)
    return reasons, rates


def filter_traces(inp: str | Path, out: str | Path, settings: FilterSettings | None = None, runtime=None,
                  progress: bool = True) -> dict[str, Any]:
    """Filter the trace file ``inp`` into ``out`` (kept rows, unchanged, in input order) and write
    the report beside it (``OUT.report.json``); returns the report. Both files are written
    atomically, so an interrupted filter never leaves a partial output that looks complete."""
    inp, out = Path(inp), Path(out)
    s = settings or FilterSettings()
    if out.resolve() == inp.resolve():
        raise DistillError(f"--output {out} is the input file: write the filtered traces elsewhere")
    rows = read_traces(inp, require=("completion_tokens",) if s.max_tokens is not None else ())
    reasons, rates = filter_rows(rows, s, runtime, progress)
    kept_ids = {str(r["id"]) for r, why in zip(rows, reasons) if why is None}
    report = {
        "input": str(inp),
        "output": str(out),
        "settings": {**asdict(s), "pass_rate_band": list(s.pass_rate_band) if s.pass_rate_band else None},
        "reasons_order": list(REASONS),
        "read": len(rows),
        "kept": sum(why is None for why in reasons),
        "rejected": {k: sum(why == k for why in reasons) for k in REASONS},
        "prompts": {"read": len(rates), "kept": len(kept_ids)},
        "pass_rate": rates,
    }
    write_jsonl_atomically(out, (r for r, why in zip(rows, reasons) if why is None))
    write_text_atomically(report_path(out), json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    return report


def format_report(report: dict[str, Any]) -> str:
    """The printed table: rows read, kept, and rejected per reason, with shares."""
    n = max(report["read"], 1)
    lines = [f"{'':<16}{'rows':>8}{'share':>8}", f"{'read':<16}{report['read']:>8}{'':>8}"]
    for reason in report["reasons_order"]:
        count = report["rejected"][reason]
        lines.append(f"{reason:<16}{count:>8}{count / n:>8.1%}")
    lines.append(f"{'kept':<16}{report['kept']:>8}{report['kept'] / n:>8.1%}")
    rates = [p["pass_rate"] for p in report["pass_rate"].values()]
    if rates:
        mean = sum(rates) / len(rates)
        lines.append(f"prompts: {report['prompts']['read']} read, {report['prompts']['kept']} with a kept trace; "
                     f"pass rate mean {mean:.3f} (min {min(rates):.3f}, max {max(rates):.3f})")
    return "\n".join(lines)
