"""The life of a run directory, the same for every training stage (GRPO, SFT, DPO, distill):
a new run never writes into an old one, a resumed run needs a complete checkpoint, rows logged
after that checkpoint are dropped on resume, and ``run_state.json`` says where the run stands
(``running`` / ``failed`` / ``completed``, its step and last checkpoint)."""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from r1kit.checkpoint import latest_checkpoint, write_text_atomically
from r1kit.logging import truncate_jsonl

STATE_FILE = "run_state.json"
# Test hook: with R1KIT_TEST_PAUSE_AFTER_CHECKPOINT=N the process sleeps forever right after the
# step-N checkpoint is complete, so a test can SIGKILL it at a known point (see
# tests/test_checkpoint_resume.py). Never set it outside tests.
PAUSE_ENV = "R1KIT_TEST_PAUSE_AFTER_CHECKPOINT"
RECORDS = ("metrics.jsonl", "samples.jsonl")  # rows per step: cut back to the checkpoint on resume


class TrainingError(RuntimeError):
    """Training stopped; the message names the step and the last good checkpoint."""


def write_state(run_dir: Path, **fields: Any) -> None:
    write_text_atomically(run_dir / STATE_FILE, json.dumps(fields, indent=1))


def holds_run(run_dir: Path) -> bool:
    return any((run_dir / n).exists() for n in ("metrics.jsonl", "checkpoints", STATE_FILE, "config.yaml"))


def failed_before_any_checkpoint(run_dir: Path) -> bool:
    """A run that failed before saving anything: nothing to resume, nothing worth keeping."""
    try:
        state = json.loads((run_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return False
    return state.get("status") == "failed" and latest_checkpoint(run_dir) is None


def check_run_dir(run_dir: Path, resume: bool, stage: str) -> None:
    """A new run never writes into an old one (unless that one failed before its first
    checkpoint); a resumed run needs a complete checkpoint."""
    if not resume and holds_run(run_dir) and not failed_before_any_checkpoint(run_dir):
        raise TrainingError(
            f"output_dir {run_dir} already holds a run; resume it with `r1kit {stage} --resume {run_dir}` "
            "or choose another output_dir"
        )
    if resume and latest_checkpoint(run_dir) is None:
        raise TrainingError(f"cannot resume {run_dir}: no complete checkpoint in {run_dir / 'checkpoints'}")


def new_run_dir(cfg: Any, stage: str) -> Path:
    """``cfg.output_dir``, made ready for a new run, with the resolved config.yaml in it."""
    from r1kit.config import save_config

    run_dir = Path(cfg.output_dir)
    check_run_dir(run_dir, resume=False, stage=stage)
    if failed_before_any_checkpoint(run_dir):  # start over: the old rows would mix with the new
        for name in RECORDS:
            (run_dir / name).unlink(missing_ok=True)
        for name in ("tensorboard", "eval"):
            shutil.rmtree(run_dir / name, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    return run_dir


def resumed_run_dir(cfg: Any, start: int) -> Path:
    """The run directory of a run resuming after step ``start``: later rows are re-created."""
    from r1kit.config import save_config

    run_dir = Path(cfg.output_dir)
    for name in RECORDS:
        if (run_dir / name).exists():
            truncate_jsonl(run_dir / name, start)
    save_config(cfg, run_dir / "config.yaml")
    return run_dir


def resume_config(run_dir: str | Path, stage: str, overrides: list[str] | None = None):
    """The config a run directory was started with (its config.yaml), plus ``overrides``."""
    from r1kit.config import load_config

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise TrainingError(f"cannot resume {run_dir}: no config.yaml there (is it an r1kit run directory?)")
    cfg = load_config(path, overrides, stage=stage)
    cfg.output_dir = str(run_dir)
    return cfg


def pause_for_tests(step: int) -> None:
    if os.environ.get(PAUSE_ENV) == str(step):
        print(f"[r1kit] {PAUSE_ENV}: paused after the step-{step} checkpoint", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)
