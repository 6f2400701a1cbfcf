"""The run directory as the user's record: metrics.jsonl, samples.jsonl, TensorBoard, curves.png."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

# metric key -> panel title; the panels of curves.png in order
CURVES = {
    "reward/mean": "total reward (mean)",
    "accuracy": "accuracy",
    "format_rate": "strict format rate",
    "completion_length/mean": "completion length (tokens)",
    "kl": "KL to reference",
    "entropy": "entropy (nats/token)",
}


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def append_jsonl(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a") as f:
        f.write(json.dumps({k: _clean(v) for k, v in row.items()}) + "\n")
        f.flush()


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:  # a line cut off by a kill: everything before it is good
                break
    return rows


def truncate_jsonl(path: Path, max_step: int) -> None:
    """Keep rows with step <= max_step (used on resume: later rows are re-created)."""
    rows = [r for r in read_jsonl(path) if r.get("step", 0) <= max_step]
    from r1kit.checkpoint import write_text_atomically

    write_text_atomically(path, "".join(json.dumps(r) + "\n" for r in rows))


class RunLogger:
    def __init__(self, run_dir: Path, tensorboard: bool = False):
        self.run_dir = run_dir
        self.metrics_path = run_dir / "metrics.jsonl"
        self.samples_path = run_dir / "samples.jsonl"
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as e:
                raise ImportError("train.tensorboard=true needs the tensorboard package: pip install 'r1kit[tensorboard]'") from e
            self.tb = SummaryWriter(str(run_dir / "tensorboard"))

    def log_metrics(self, row: dict[str, Any]) -> None:
        append_jsonl(self.metrics_path, row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(k, v, row["step"])
            self.tb.flush()

    def log_samples(self, rows: list[dict[str, Any]]) -> None:
        with open(self.samples_path, "a") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Draw curves.png from metrics.jsonl (raw values and a moving average)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    if not rows:
        raise FileNotFoundError(f"no metrics in {run_dir / 'metrics.jsonl'}")
    # KL is logged as 0 when beta = 0 (never computed): no panel for it then
    keys = [k for k in CURVES if any(r.get(k) for r in rows) or (k != "kl" and any(r.get(k) is not None for r in rows))]
    ncols = 3
    nrows = max(1, math.ceil(len(keys) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 3.2 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        pts = [(r["step"], r[key]) for r in rows if r.get(key) is not None]
        xs, ys = zip(*pts)
        ax.plot(xs, ys, alpha=0.35, label="per step")
        w = max(1, len(ys) // 10)
        smooth = [sum(ys[max(0, i - w + 1) : i + 1]) / len(ys[max(0, i - w + 1) : i + 1]) for i in range(len(ys))]
        ax.plot(xs, smooth, label=f"moving avg ({w})")
        ax.set_title(CURVES[key])
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    out = Path(out) if out else run_dir / "curves.png"
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
