"""``r1kit distill CONFIG``: a student fine-tuned on a teacher's filtered traces (DeepSeek-R1's
distilled Qwen and Llama models: SFT on 800K verified samples), through the SFT stage: the same
labels (completion only, EOS trained, <think> kept), run directory, resume and evaluation."""

from __future__ import annotations

from pathlib import Path

from r1kit.config.sft import DistillRun
from r1kit.sft.train import prepare
from r1kit.sft.trl_stage import run_stage, summarize

STAGE = "distill"

__all__ = ["resume_config", "summarize", "train"]


def train(cfg: DistillRun, resume: bool = False) -> Path:
    """Fine-tune ``cfg.model`` (the student) on ``cfg.data`` (the kept traces); returns the run directory."""
    return run_stage(cfg, STAGE, resume, lambda: prepare(cfg))


def resume_config(run_dir: str | Path, overrides: list[str] | None = None) -> DistillRun:
    from r1kit import rundir

    return rundir.resume_config(run_dir, STAGE, overrides)
