"""``r1kit report RUN_DIR``: one markdown page about a run -- its config, curves, evaluation
table, first- and last-step metrics, and its highest- and lowest-reward samples."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from r1kit.checkpoint import write_text_atomically
from r1kit.eval.metrics import format_table
from r1kit.eval.plots import plot_runs, run_name
from r1kit.logging import read_jsonl

# metrics.jsonl columns of the first/last-step table, in order (those the run has)
REPORT_METRICS = (
    "reward/mean", "accuracy", "format_rate", "completion_length/mean", "truncated_frac", "kl", "entropy",
    "clip_frac_low", "clip_frac_high", "loss", "grad_norm", "lr", "time/step",
)


def latest_results(run_dir: Path) -> tuple[Path, dict[str, Any]] | None:
    """The newest results.json of the run: ``eval/`` (an ``r1kit eval`` of its final model), else
    the last ``eval/step-N/`` written during training."""
    candidates = [run_dir / "eval" / "results.json"]
    steps = sorted((run_dir / "eval").glob("step-*/results.json"), key=lambda p: int(p.parent.name.split("-")[1]))
    candidates += steps[::-1]
    for path in candidates:
        if path.is_file():
            return path, json.loads(path.read_text())
    return None


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "-" if v is None else str(v)


def _metrics_table(rows: list[dict[str, Any]]) -> list[str]:
    first, last = rows[0], rows[-1]
    keys = [k for k in REPORT_METRICS if k in first or k in last]
    keys += sorted(k for k in last if k.startswith("eval/") and k.endswith("/pass@1"))
    lines = [f"| metric | step {first['step']} | step {last['step']} |", "|---|---|---|"]
    lines += [f"| `{k}` | {_fmt(first.get(k))} | {_fmt(last.get(k))} |" for k in keys]
    return lines


def _sample_block(title: str, row: dict[str, Any]) -> list[str]:
    completion = str(row.get("completion", "")).replace("```", "'''")
    prompt = str(row.get("prompt", "")).replace("```", "'''")
    return [
        f"### {title}: step {row.get('step')}, reward {_fmt(row.get('reward'))}",
        "", "Prompt:", "", "```text", prompt[-1500:], "```", "", "Completion:", "", "```text", completion[:3000], "```", "",
    ]


def write_report(run_dir: str | Path) -> Path:
    """Write ``RUN_DIR/report.md`` (and redraw ``curves.png``); returns its path."""
    run_dir = Path(run_dir)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    if not rows:
        raise FileNotFoundError(f"no metrics in {run_dir / 'metrics.jsonl'} (is {run_dir} an r1kit run directory?)")
    name = run_name(run_dir)
    plot_runs([run_dir], run_dir / "curves.png")
    config = (run_dir / "config.yaml").read_text() if (run_dir / "config.yaml").is_file() else "(no config.yaml)\n"
    lines = [f"# {name}", "", f"Run directory: `{run_dir}`; {len(rows)} steps logged.", "",
             "## Curves", "", "![curves](curves.png)", "", "## Evaluation", ""]
    found = latest_results(run_dir)
    if found:
        path, results = found
        lines += [f"From `{path.relative_to(run_dir)}` (percent):", "", "```text", format_table(results), "```", ""]
    else:
        lines += ["No evaluation yet: `r1kit eval RUN_DIR --data NAME=PATH`, or an `eval:` section in the config.", ""]
    lines += ["## First and last step", "", *_metrics_table(rows), "", "## Samples", ""]
    samples = [s for s in read_jsonl(run_dir / "samples.jsonl") if isinstance(s.get("reward"), (int, float))]
    if samples:
        lines += _sample_block("Highest reward", max(samples, key=lambda s: (s["reward"], -s.get("step", 0))))
        lines += _sample_block("Lowest reward", min(samples, key=lambda s: (s["reward"], s.get("step", 0))))
    else:
        lines += ["No samples logged (train.samples_every=0).", ""]
    lines += ["## Config", "", "```yaml", config.rstrip("\n"), "```", ""]
    out = run_dir / "report.md"
    write_text_atomically(out, "\n".join(lines))
    return out
