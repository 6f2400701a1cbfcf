"""``r1kit sft CONFIG``: supervised fine-tuning on chain-of-thought data, TRL's SFTTrainer underneath.

r1kit owns what reasoning traces need and TRL's defaults do not give (``r1kit.sft.data``: which
tokens are trained, the EOS, over-long examples); the run directory, schedules, evaluation and
exact resume are those of every TRL stage (``r1kit.sft.trl_stage``).
"""

from __future__ import annotations

import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

from r1kit.config.sft import SFTRun
from r1kit.data.loaders import open_dataset
from r1kit.sft.data import DataStats, Example, build_examples
from r1kit.sft.trl_stage import Prepared, ensure_pad, run_stage, summarize, with_r1kit_schedule

STAGE = "sft"

__all__ = ["ensure_pad", "resume_config", "stop_ids", "summarize", "train"]


def stop_ids(tokenizer, model) -> set[int]:
    """Token ids that end generation: the tokenizer's EOS and the model's generation EOS ids."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    gen = getattr(model.generation_config, "eos_token_id", None)
    ids.update(gen if isinstance(gen, list) else [] if gen is None else [gen])
    return ids


def load_rows(data) -> list[dict[str, Any]]:
    """The rows of a stage's ``data:`` section (``path``, ``split``, ``name``, ``limit``)."""
    ds = open_dataset(data.path, data.split, data.name, key="data.path")
    if data.limit is not None:
        ds = ds.select(range(min(data.limit, len(ds))))
    return ds.to_list()


def to_dataset(examples: list[Example]):
    import datasets

    return datasets.Dataset.from_dict({"input_ids": [e.input_ids for e in examples], "labels": [e.labels for e in examples]})


def _stats_dict(stats: DataStats) -> dict[str, Any]:
    d = asdict(stats)
    return {**d.pop("extra"), **d}


def prepare(cfg: SFTRun, trainer_for: Callable[[Any, Any], type] | None = None) -> Prepared:
    """Model, tokenizer, tokenized data and TRL's SFTTrainer over them. ``trainer_for(model,
    tokenizer)``: another trainer class built on SFTTrainer (logit distillation)."""
    from trl import SFTConfig, SFTTrainer

    from r1kit.models import load_model
    from r1kit.setup import seed_everything

    seed_everything(cfg.seed)
    rows = load_rows(cfg.data)
    policy, _, tokenizer = load_model(cfg.model)
    ensure_pad(tokenizer, policy)
    examples, stats = build_examples(rows, cfg.data, tokenizer, stop_ids(tokenizer, policy))
    trainer_class = with_r1kit_schedule(trainer_for(policy, tokenizer) if trainer_for else SFTTrainer, cfg.train)

    def make_trainer(args, callbacks):
        return trainer_class(model=policy, args=args, train_dataset=to_dataset(examples), processing_class=tokenizer,
                             callbacks=callbacks)

    stage_args = dict(
        max_length=cfg.data.max_length if cfg.train.packing else None,  # r1kit already applied max_length
        packing=cfg.train.packing,
        shuffle_dataset=False,  # the Trainer's sampler shuffles (seeded) when train.shuffle
    )
    return Prepared(policy, tokenizer, SFTConfig, stage_args, make_trainer, _stats_dict(stats))


def train(cfg: SFTRun, resume: bool = False) -> Path:
    """Run SFT as configured (or resume ``cfg.output_dir``); returns the run directory."""
    return run_stage(cfg, STAGE, resume, lambda: prepare(cfg))


def resume_config(run_dir: str | Path, overrides: list[str] | None = None) -> SFTRun:
    from r1kit import rundir

    return rundir.resume_config(run_dir, STAGE, overrides)


if __name__ == "__main__":  # pragma: no cover
    from r1kit.config import load_config

    train(load_config(sys.argv[1], sys.argv[2:], stage=STAGE))
