"""What every stage trained by a TRL trainer (SFT, DPO, distillation) shares: the run directory
(config.yaml, data_stats.json, metrics.jsonl, curves.png, ``checkpoints/step-N`` renamed into
place only once complete, ``final/``, run_state.json), r1kit's LR schedules in place of TRL's,
evaluation before, during and after training through ``r1kit eval``'s runner, and exact resume:
TRL restores the optimizer, the schedule, the RNG and the position in the data.

A stage supplies a :class:`Prepared` (its model, tokenizer, data and TRL trainer) and calls
:func:`run_stage`.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from r1kit.distributed import World, barrier, init_world, zero_stage
from r1kit.checkpoint import fsync_dir, latest_checkpoint, list_checkpoints, save_model_dir, write_text_atomically
from r1kit.eval.runner import eval_row
from r1kit.logging import RunLogger, plot_run, read_jsonl
from r1kit.rundir import TrainingError, check_run_dir, new_run_dir, pause_for_tests, resumed_run_dir, write_state

# Candidates for a padding token distinct from EOS, in order (Llama 3, Qwen, T5-style, others).
PAD_CANDIDATES = ("<|finetune_right_pad_id|>", "<|fim_pad|>", "<|endoftext|>", "<pad>", "<|pad|>", "[PAD]")


@dataclass
class Prepared:
    """A stage's parts, built before the run directory is touched. ``make_trainer(args,
    callbacks)`` returns the TRL trainer over ``model``; ``args`` come from :func:`trainer_args`
    plus the stage's own keys (``stage_args``), in the stage's TRL config class."""

    model: Any
    tokenizer: Any
    config_class: type
    stage_args: dict[str, Any]
    make_trainer: Callable[[Any, list], Any]
    data_stats: dict[str, Any] = field(default_factory=dict)


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


def trainer_args(cfg, scratch: Path) -> dict[str, Any]:
    """TrainingArguments keys from r1kit's ``train:`` section (the same in every TRL stage).
    Checkpoints go to ``scratch`` and are moved into ``checkpoints/`` by the run records; r1kit
    logs and plots itself."""
    import torch

    from r1kit.models import autocast_dtype, default_device

    t = cfg.train
    return dict(
        output_dir=str(scratch), seed=cfg.seed, data_seed=cfg.seed,
        learning_rate=t.lr, weight_decay=t.weight_decay, adam_beta1=t.adam_beta1, adam_beta2=t.adam_beta2,
        max_grad_norm=t.max_grad_norm, num_train_epochs=t.num_epochs, max_steps=t.max_steps if t.max_steps > 0 else -1,
        per_device_train_batch_size=t.batch_size, gradient_accumulation_steps=t.gradient_accumulation_steps,
        gradient_checkpointing=cfg.model.gradient_checkpointing, logging_steps=t.logging_steps,
        save_strategy="steps" if t.save_every else "no", save_steps=t.save_every or 500, save_total_limit=None,
        report_to="none", disable_tqdm=not t.progress, dataloader_num_workers=0,
        bf16=autocast_dtype(cfg.model.dtype, default_device()) == torch.bfloat16, use_cpu=not torch.cuda.is_available(),
    )


def with_r1kit_schedule(trainer_class: type, train_section) -> type:
    """``trainer_class`` with r1kit's LR schedules (``train.lr_schedule``, warmup, milestones) and,
    when ``train.shuffle`` is off, the data in file order."""
    from r1kit.schedules import build_scheduler

    class Trainer(trainer_class):
        def create_scheduler(self, num_training_steps: int, optimizer=None):
            if self.lr_scheduler is None:
                t = train_section
                self.lr_scheduler = build_scheduler(
                    optimizer or self.optimizer, t.lr_schedule, t.warmup_steps, num_training_steps,
                    tuple(t.lr_milestones), tuple(t.lr_factors),
                )
                self._created_lr_scheduler = True
            return self.lr_scheduler

        def _get_train_sampler(self, *args, **kwargs):
            if train_section.shuffle:
                return super()._get_train_sampler(*args, **kwargs)
            import torch

            return torch.utils.data.SequentialSampler(self.train_dataset)

    Trainer.__name__ = Trainer.__qualname__ = f"R1kit{trainer_class.__name__}"
    return Trainer


def _metric_name(key: str) -> str:
    return {"learning_rate": "lr"}.get(key, key)


def run_records(run_dir: Path, scratch: Path, cfg, tokenizer, benches, world: World | None = None):
    """The callback that keeps the run directory: metrics.jsonl rows from TRL's logs (with the
    step's evaluation, when one is due) and each checkpoint moved whole into checkpoints/.
    Under several processes, process 0 keeps the records; every process evaluates its share of
    the problems (each holds the whole model: DDP, ZeRO-1/2)."""
    from transformers import TrainerCallback

    world = world or World()

    class RunRecords(TrainerCallback):
        def __init__(self) -> None:
            self.logger = RunLogger(run_dir, cfg.train.tensorboard) if world.is_main else None
            self.last_ckpt: str | None = None
            self.evaluated: dict[str, float] = {}

        def on_step_end(self, args, state, control, model=None, **kwargs):
            step, every = state.global_step, cfg.eval.every
            if benches and (step == state.max_steps or (every and step % every == 0)):
                # the unwrapped model: no collective inside its forward passes
                self.evaluated = eval_row(model, tokenizer, cfg, run_dir, step, benches, world=world)

        def on_log(self, args, state, control, logs=None, **kwargs):
            # TRL's logged values are already averaged over processes
            if not logs or "loss" not in logs or not world.is_main:  # the end-of-training summary has train_loss instead
                return
            row = {"step": state.global_step, **{_metric_name(k): v for k, v in logs.items()}, **self.evaluated}
            self.evaluated = {}
            self.logger.log_metrics(row)

        def on_save(self, args, state, control, **kwargs):
            step = state.global_step
            src = scratch / f"checkpoint-{step}"
            dst = run_dir / "checkpoints" / f"step-{step}"
            barrier(world)  # every process has written its part (its RNG state) into src
            self.last_ckpt = str(dst)
            if not world.is_main:
                return
            dst.parent.mkdir(parents=True, exist_ok=True)
            fsync_dir(src)
            if dst.exists():
                shutil.rmtree(dst)
            os.rename(src, dst)
            for _, old in list_checkpoints(run_dir)[: -cfg.train.keep_last]:
                shutil.rmtree(old)
            write_state(run_dir, status="running", step=step, last_checkpoint=self.last_ckpt)
            pause_for_tests(step)

    return RunRecords()


def run_stage(cfg, stage: str, resume: bool, prepare: Callable[[], Prepared]) -> Path:
    """Train ``cfg``'s stage (or resume ``cfg.output_dir``) with the trainer ``prepare()`` builds;
    returns the run directory. Bad input fails in ``prepare`` or before it, with the run
    directory untouched."""
    from r1kit.eval.benchmarks import load_benchmark

    run_dir = Path(cfg.output_dir)
    world = init_world(engine=False)
    if cfg.eval.datasets and (world.engine == "fsdp" or zero_stage(world) == 3):
        raise TrainingError(
            f"eval.datasets: evaluation during {stage} training needs the whole model on every process, which "
            f"{'FSDP' if world.engine == 'fsdp' else 'ZeRO-3'} shards; train without it (eval.datasets=[]) and "
            "evaluate the checkpoints with `r1kit eval`, or use configs/accelerate/ddp.yaml or zero2.yaml"
        )
    check_run_dir(run_dir, resume, stage)
    barrier(world)  # every process has checked before process 0 writes
    benches = [load_benchmark(spec, cfg.eval.limit, cfg.data) for spec in cfg.eval.datasets]
    parts = prepare()
    scratch = run_dir / ".trainer"
    args = parts.config_class(**trainer_args(cfg, scratch), **parts.stage_args)
    ckpt = latest_checkpoint(run_dir) if resume else None
    start = int(ckpt.name.split("-")[1]) if ckpt else 0
    main = world.is_main
    if main:
        resumed_run_dir(cfg, start) if ckpt else new_run_dir(cfg, stage)
        if parts.data_stats:
            write_text_atomically(run_dir / "data_stats.json", json.dumps(parts.data_stats, indent=1) + "\n")
        shutil.rmtree(scratch, ignore_errors=True)
        write_state(run_dir, status="running", step=start, last_checkpoint=str(ckpt) if ckpt else None)
    barrier(world)
    records = run_records(run_dir, scratch, cfg, parts.tokenizer, benches, world)
    records.last_ckpt = str(ckpt) if ckpt else None
    try:
        if benches and cfg.eval.before and not ckpt:
            row = {"step": 0, **eval_row(parts.model, parts.tokenizer, cfg, run_dir, 0, benches, world=world)}
            if main:
                records.logger.log_metrics(row)
        barrier(world)
        trainer = parts.make_trainer(args, [records])
        trainer.train(resume_from_checkpoint=str(ckpt) if ckpt else None)
        step = trainer.state.global_step  # with save_every, TRL saves the last step too
        final = run_dir / "final"
        if main:
            policy = trainer.model
            if hasattr(policy, "merge_and_unload"):  # LoRA: final/ is a plain model
                policy = policy.merge_and_unload()
            save_model_dir(final, policy, parts.tokenizer)
            plot_run(run_dir)
        barrier(world)
    except BaseException as e:
        if main:
            rows = read_jsonl(run_dir / "metrics.jsonl")
            error = f"{type(e).__name__}: {e}"[:2000]
            write_state(run_dir, status="failed", step=int(rows[-1]["step"]) if rows else 0,
                        last_checkpoint=records.last_ckpt, error=error)
        raise
    finally:
        if records.logger is not None:
            records.logger.close()
        if main:
            shutil.rmtree(scratch, ignore_errors=True)
    if main:
        write_state(run_dir, status="completed", step=step, last_checkpoint=records.last_ckpt, final=str(final))
    return run_dir


def summarize(run_dir: str | Path) -> str:
    """One line about a finished TRL-stage run: steps, examples, first and last loss."""
    rows = [r for r in read_jsonl(Path(run_dir) / "metrics.jsonl") if "loss" in r]
    if not rows:
        return "no metrics"
    stats_path = Path(run_dir) / "data_stats.json"
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    data = ""
    if "pairs" in stats:
        data = f" on {stats['pairs']} preference pairs"
    if "examples" in stats:
        data = f" on {stats['examples']} examples"
        if "dropped" in stats:
            data += f" ({stats['dropped']} dropped as longer than {stats['max_length']} tokens)"
    return f"{rows[-1]['step']} steps{data}; loss {rows[0]['loss']:.4f} -> {rows[-1]['loss']:.4f}"
