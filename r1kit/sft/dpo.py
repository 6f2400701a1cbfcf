"""``r1kit dpo CONFIG``: Direct Preference Optimization (DeepSeek LLM: SFT, then DPO) on TRL's
DPOTrainer, over preference pairs from ``r1kit distill pairs`` or any chosen/rejected dataset.
The run directory, schedules, LoRA, evaluation and exact resume are those of every TRL stage
(``r1kit.sft.trl_stage``); the reference model is the starting model (a frozen copy, or the
base under the adapter with LoRA)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from r1kit.config.dpo import DPORun
from r1kit.data.loaders import DataError
from r1kit.sft.train import load_rows
from r1kit.sft.trl_stage import Prepared, ensure_pad, run_stage, summarize, with_r1kit_schedule

STAGE = "dpo"

__all__ = ["preference_rows", "resume_config", "summarize", "train"]


def preference_rows(rows: list[dict[str, Any]], cfg: DPORun) -> list[dict[str, Any]]:
    """``prompt`` / ``chosen`` / ``rejected`` rows from the data's columns; a missing column or
    an empty value is a DataError naming the file and the row."""
    d = cfg.data
    cols = {"prompt": d.prompt_column, "chosen": d.chosen_column, "rejected": d.rejected_column}
    if not rows:
        raise DataError(f"{d.path}: no rows")
    missing = [c for c in cols.values() if c not in rows[0]]
    if missing:
        raise DataError(f"{d.path}: no column '{missing[0]}' (data.{[k for k, v in cols.items() if v == missing[0]][0]}_column); "
                        f"available columns: {', '.join(rows[0])}")
    out = []
    for i, row in enumerate(rows):
        pair = {key: row.get(col) for key, col in cols.items()}
        for key, value in pair.items():
            if value is None or (isinstance(value, str) and not value.strip()) or (isinstance(value, list) and not value):
                raise DataError(f"{d.path}: row {i}: empty '{cols[key]}'")
        if pair["chosen"] == pair["rejected"]:
            raise DataError(f"{d.path}: row {i}: '{cols['chosen']}' and '{cols['rejected']}' are the same")
        out.append(pair)
    return out


def prepare(cfg: DPORun) -> Prepared:
    import datasets
    from trl import DPOConfig, DPOTrainer

    from r1kit.models import load_model
    from r1kit.setup import seed_everything

    seed_everything(cfg.seed)
    pairs = preference_rows(load_rows(cfg.data), cfg)
    policy, _, tokenizer = load_model(cfg.model)
    ensure_pad(tokenizer, policy)
    trainer_class = with_r1kit_schedule(DPOTrainer, cfg.train)
    dataset = datasets.Dataset.from_list(pairs)

    def make_trainer(args, callbacks):
        return trainer_class(model=policy, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=callbacks)

    stage_args = dict(beta=cfg.dpo.beta, loss_type=[cfg.dpo.loss_type], label_smoothing=cfg.dpo.label_smoothing,
                      max_length=cfg.data.max_length)
    return Prepared(policy, tokenizer, DPOConfig, stage_args, make_trainer, {"pairs": len(pairs)})


def train(cfg: DPORun, resume: bool = False) -> Path:
    """Run DPO as configured (or resume ``cfg.output_dir``); returns the run directory."""
    return run_stage(cfg, STAGE, resume, lambda: prepare(cfg))


def resume_config(run_dir: str | Path, overrides: list[str] | None = None) -> DPORun:
    from r1kit import rundir

    return rundir.resume_config(run_dir, STAGE, overrides)


if __name__ == "__main__":  # pragma: no cover
    from r1kit.config import load_config

    train(load_config(sys.argv[1], sys.argv[2:], stage=STAGE))
