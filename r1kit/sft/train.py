"""``r1kit sft CONFIG``: supervised fine-tuning on chain-of-thought data, TRL's SFTTrainer underneath.

r1kit owns what reasoning traces need and TRL's defaults do not give (``r1kit.sft.data``: which
tokens are trained, the EOS, over-long examples), the LR schedules every stage shares, and the run
directory every stage writes: config.yaml, data_stats.json, metrics.jsonl, curves.png,
``checkpoints/step-N`` (HF-loadable, renamed into place only once complete), ``final/``, and
``run_state.json``. ``--resume RUN`` continues from the last checkpoint exactly: TRL restores the
optimizer, the schedule, the RNG and the position in the data.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from r1kit.checkpoint import fsync_dir, latest_checkpoint, list_checkpoints, save_model_dir, write_text_atomically
from r1kit.config.sft import SFTRun
from r1kit.data.loaders import DataError, open_dataset
from r1kit.eval.runner import eval_row
from r1kit.logging import RunLogger, plot_run
from r1kit.rundir import (
    TrainingError, check_run_dir, new_run_dir, pause_for_tests, resumed_run_dir, write_state,
)
from r1kit.sft.data import DataStats, Example, build_examples

STAGE = "sft"
# Candidates for a padding token distinct from EOS, in order (Llama 3, Qwen, T5-style, others).
PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<|fim_pad|>", "<|endoftext|>", "<pad>", "<|pad|>", "[PAD]")


def ensure_pad(tokenizer, model) -> str:
    """Give the tokenizer a padding token that is not its EOS (a pad that is the EOS hides the EOS
    from collators and generation code that mask by id). An unused special token is taken when
    the vocabulary has one, else ``<|pad|>`` is added and the embeddings grow by one row."""
    eos = tokenizer.eos_token_id
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == eos:
        vocab = tokenizer.get_vocab()
        pick = next((t for t in PAD_CANDIDATES if t in vocab and vocab[t] != eos), None)
        if pick is None:
            tokenizer.add_special_tokens({"pad_token": "<|pad|>"})
            model.resize_token_embeddings(len(tokenizer))
        else:
            tokenizer.pad_token = pick
    model.config.pad_token_id = tokenizer.pad_token_id
    if model.generation_config is not None:
        model.generation_config.pad_token_id = tokenizer.pad_token_id
    return tokenizer.pad_token


def stop_ids(tokenizer, model) -> set[int]:
    """Token ids that end generation: the tokenizer's EOS and the model's generation EOS ids."""
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    gen = getattr(model.generation_config, "eos_token_id", None)
    ids.update(gen if isinstance(gen, list) else [] if gen is None else [gen])
    return ids


def load_sft_rows(cfg: SFTRun) -> list[dict[str, Any]]:
    ds = open_dataset(cfg.data.path, cfg.data.split, cfg.data.name, key="data.path")
    if cfg.data.limit is not None:
        ds = ds.select(range(min(cfg.data.limit, len(ds))))
    return ds.to_list()


def to_dataset(examples: list[Example]):
    import datasets

    return datasets.Dataset.from_dict({"input_ids": [e.input_ids for e in examples], "labels": [e.labels for e in examples]})


def _trl_args(cfg: SFTRun, scratch: Path):
    """TRL's SFTConfig for r1kit's train section. Checkpoints are written by TRL into ``scratch``
    and moved into ``checkpoints/`` by :class:`_RunRecords`; r1kit logs and plots itself."""
    import torch
    from trl import SFTConfig

    t = cfg.train
    return SFTConfig(
        output_dir=str(scratch),
        seed=cfg.seed,
        data_seed=cfg.seed,
        learning_rate=t.lr,
        weight_decay=t.weight_decay,
        adam_beta1=t.adam_beta1,
        adam_beta2=t.adam_beta2,
        max_grad_norm=t.max_grad_norm,
        num_train_epochs=t.num_epochs,
        max_steps=t.max_steps if t.max_steps > 0 else -1,
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        gradient_checkpointing=cfg.model.gradient_checkpointing,
        logging_steps=t.logging_steps,
        save_strategy="steps" if t.save_every else "no",
        save_steps=t.save_every or 500,
        save_total_limit=None,
        report_to="none",
        disable_tqdm=not t.progress,
        max_length=None if not t.packing else cfg.data.max_length,  # r1kit already applied max_length
        packing=t.packing,
        shuffle_dataset=False,  # the Trainer's sampler shuffles (seeded) when train.shuffle
        dataset_num_proc=None,
        bf16=cfg.model.dtype == "auto" and torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )


def _trainer_class():
    from trl import SFTTrainer

    from r1kit.schedules import build_scheduler

    class R1kitSFTTrainer(SFTTrainer):
        """TRL's SFTTrainer with r1kit's LR schedules (``train.lr_schedule``) and data order."""

        r1kit_cfg: SFTRun

        def create_scheduler(self, num_training_steps: int, optimizer=None):
            if self.lr_scheduler is None:
                t = self.r1kit_cfg.train
                self.lr_scheduler = build_scheduler(
                    optimizer or self.optimizer, t.lr_schedule, t.warmup_steps, num_training_steps,
                    tuple(t.lr_milestones), tuple(t.lr_factors),
                )
                self._created_lr_scheduler = True
            return self.lr_scheduler

        def _get_train_sampler(self, *args, **kwargs):
            if self.r1kit_cfg.train.shuffle:
                return super()._get_train_sampler(*args, **kwargs)
            import torch

            return torch.utils.data.SequentialSampler(self.train_dataset)

    return R1kitSFTTrainer


def _callback(run_dir: Path, scratch: Path, cfg: SFTRun, tokenizer, benches):
    from transformers import TrainerCallback

    class _RunRecords(TrainerCallback):
        """metrics.jsonl rows from TRL's logs (with the step's evaluation, when one is due); each
        checkpoint moved whole into checkpoints/."""

        def __init__(self) -> None:
            self.logger = RunLogger(run_dir, cfg.train.tensorboard)
            self.last_ckpt: str | None = None
            self.evaluated: dict[str, float] = {}

        def on_step_end(self, args, state, control, model=None, **kwargs):
            step, every = state.global_step, cfg.eval.every
            if benches and (step == state.max_steps or (every and step % every == 0)):
                self.evaluated = eval_row(model, tokenizer, cfg, run_dir, step, benches)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not logs or "loss" not in logs:  # the end-of-training summary has train_loss instead
                return
            row = {"step": state.global_step, **{_metric_name(k): v for k, v in logs.items()}, **self.evaluated}
            self.evaluated = {}
            self.logger.log_metrics(row)

        def on_save(self, args, state, control, **kwargs):
            step = state.global_step
            src = scratch / f"checkpoint-{step}"
            dst = run_dir / "checkpoints" / f"step-{step}"
            dst.parent.mkdir(parents=True, exist_ok=True)
            fsync_dir(src)
            if dst.exists():
                shutil.rmtree(dst)
            os.rename(src, dst)
            for _, old in list_checkpoints(run_dir)[: -cfg.train.keep_last]:
                shutil.rmtree(old)
            self.last_ckpt = str(dst)
            write_state(run_dir, status="running", step=step, last_checkpoint=self.last_ckpt)
            pause_for_tests(step)

    return _RunRecords()


def _metric_name(key: str) -> str:
    return {"learning_rate": "lr"}.get(key, key)


def prepare(cfg: SFTRun):
    """Model, tokenizer and tokenized data: everything that can fail on bad input, before the
    run directory is touched."""
    from r1kit.models import load_model
    from r1kit.setup import seed_everything

    seed_everything(cfg.seed)
    rows = load_sft_rows(cfg)
    policy, _, tokenizer = load_model(cfg.model)
    ensure_pad(tokenizer, policy)
    examples, stats = build_examples(rows, cfg.data, tokenizer, stop_ids(tokenizer, policy))
    return policy, tokenizer, examples, stats


def train(cfg: SFTRun, resume: bool = False) -> Path:
    """Run SFT as configured (or resume ``cfg.output_dir``); returns the run directory."""
    run_dir = Path(cfg.output_dir)
    check_run_dir(run_dir, resume, STAGE)
    from r1kit.eval.benchmarks import load_benchmark

    benches = [load_benchmark(spec, cfg.eval.limit, cfg.data) for spec in cfg.eval.datasets]
    policy, tokenizer, examples, stats = prepare(cfg)
    scratch = run_dir / ".trainer"
    args = _trl_args(cfg, scratch)
    ckpt = latest_checkpoint(run_dir) if resume else None
    start = _checkpoint_step(ckpt) if ckpt else 0
    run_dir = resumed_run_dir(cfg, start) if ckpt else new_run_dir(cfg, STAGE)
    write_text_atomically(run_dir / "data_stats.json", json.dumps(_stats_dict(stats), indent=1) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)
    write_state(run_dir, status="running", step=start, last_checkpoint=str(ckpt) if ckpt else None)
    records = _callback(run_dir, scratch, cfg, tokenizer, benches)
    records.last_ckpt = str(ckpt) if ckpt else None
    try:
        if benches and cfg.eval.before and not ckpt:
            records.logger.log_metrics({"step": 0, **eval_row(policy, tokenizer, cfg, run_dir, 0, benches)})
        trainer = _trainer_class()(
            model=policy, args=args, train_dataset=to_dataset(examples),
            processing_class=tokenizer, callbacks=[records],
        )
        trainer.r1kit_cfg = cfg
        trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
        step = trainer.state.global_step  # with save_every, TRL saves the last step too
        policy = trainer.model
        if hasattr(policy, "merge_and_unload"):  # LoRA: final/ is a plain model
            policy = policy.merge_and_unload()
        final = save_model_dir(run_dir / "final", policy, tokenizer)
        plot_run(run_dir)
    except BaseException as e:
        error = f"{type(e).__name__}: {e}"[:2000]
        write_state(run_dir, status="failed", step=_last_logged_step(run_dir), last_checkpoint=records.last_ckpt, error=error)
        raise
    finally:
        records.logger.close()
        shutil.rmtree(scratch, ignore_errors=True)
    write_state(run_dir, status="completed", step=step, last_checkpoint=records.last_ckpt, final=str(final))
    return run_dir


def _checkpoint_step(ckpt: Path) -> int:
    return int(ckpt.name.split("-")[1])


def _last_logged_step(run_dir: Path) -> int:
    from r1kit.logging import read_jsonl

    rows = read_jsonl(run_dir / "metrics.jsonl")
    return int(rows[-1]["step"]) if rows else 0


def _stats_dict(stats: DataStats) -> dict[str, Any]:
    from dataclasses import asdict

    d = asdict(stats)
    return {**d.pop("extra"), **d}


def resume_config(run_dir: str | Path, overrides: list[str] | None = None) -> SFTRun:
    from r1kit import rundir

    return rundir.resume_config(run_dir, STAGE, overrides)


def summarize(run_dir: str | Path) -> str:
    from r1kit.logging import read_jsonl

    rows = [r for r in read_jsonl(Path(run_dir) / "metrics.jsonl") if "loss" in r]
    if not rows:
        return "no metrics"
    stats = json.loads((Path(run_dir) / "data_stats.json").read_text())
    return (f"{rows[-1]['step']} steps on {stats['examples']} examples ({stats['dropped']} dropped as longer than "
            f"{stats['max_length']} tokens); loss {rows[0]['loss']:.4f} -> {rows[-1]['loss']:.4f}")


__all__ = ["DataError", "TrainingError", "ensure_pad", "resume_config", "summarize", "train"]

if __name__ == "__main__":  # pragma: no cover
    from r1kit.config import load_config

    train(load_config(sys.argv[1], sys.argv[2:], stage=STAGE))
