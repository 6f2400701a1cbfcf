"""The run directory as the user's record: metrics.jsonl, samples.jsonl, TensorBoard, curves.png
(drawn by ``r1kit.eval.plots``)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

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
    """Draw ``RUN_DIR/curves.png`` (or ``out``) from metrics.jsonl; see ``r1kit.eval.plots``."""
    from r1kit.eval.plots import plot_runs

    return plot_runs([run_dir], out or Path(run_dir) / "curves.png")
