"""r1kit GRPO vs TRL ``GRPOTrainer``: seconds per optimizer step on CPU, same work on both sides.

Both trainers run in this one process, one after the other, on the same model directory, the same
prompts (rendered once by r1kit's data pipeline), the same rewards (r1kit's registered reward
functions, which follow TRL's reward contract), the same batch (``--prompts`` x ``--group-size``
completions per step), the same sampling (temperature 1, top_p 1, top_k 0, at most
``--max-new-tokens`` tokens) and the same update (loss_type "grpo", group-scaled advantages,
beta 0, one optimizer step per generated batch, AdamW lr 1e-6 betas (0.9, 0.99), constant LR, grad
clip 1.0, fp32, no gradient checkpointing, torch threads set once for both).

One "step" is everything from prompts to updated weights: generation, reward scoring, advantages,
forward/backward and the optimizer step.

- r1kit: ``r1kit.grpo.train.train`` itself runs ``--warmup + --steps`` steps; its ``time/step``
  (metrics.jsonl) wraps rollout + scoring + batch building + ``learner.step``.
- TRL: a ``TrainerCallback`` times ``on_step_begin`` -> ``on_step_end``. In TRL 1.16 generation
  and scoring run inside that window (``training_step`` -> ``_prepare_inputs`` ->
  ``_generate_and_score_completions``), followed by the loss, backward, clipping and
  ``optimizer.step()``. The time between consecutive ``on_step_end`` calls (which adds the
  dataloader fetch and TRL's logging) is printed too, for reference.

The first ``--warmup`` steps of each side are dropped; the headline is the median of the rest.
Completion lengths differ between the two runs (independent sampling), so the mean completion
length and a length-normalised figure (seconds per 1k generated tokens) are printed as well.

    python benchmarks/bench_grpo_cpu.py                       # SmolLM2-135M-Instruct, 5 steps each
    python benchmarks/bench_grpo_cpu.py --model /tmp/tiny --steps 5 --max-new-tokens 8

The last line printed is ``speedup vs TRL: X.XXx`` (TRL median s/step / r1kit median s/step).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

PREFILL = "<think>"
# Reward name -> weight, identical on both sides (r1kit: cfg.rewards; TRL: reward_funcs + reward_weights).
REWARD_WEIGHTS = {"accuracy": 1.0, "soft_format": 0.2}
LR = 1e-6
ADAM_BETAS = (0.9, 0.99)  # r1kit's defaults; TRL/transformers default to (0.9, 0.999)
MAX_GRAD_NORM = 1.0
EPSILON = 0.2


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="smollm2-135m-instruct",
                   help="r1kit builtin name or a local HF model directory (default: smollm2-135m-instruct)")
    p.add_argument("--steps", type=int, default=5, help="measured steps per trainer (default 5)")
    p.add_argument("--warmup", type=int, default=1, help="untimed warm-up steps per trainer (default 1)")
    p.add_argument("--prompts", type=int, default=2, help="prompts per step (default 2)")
    p.add_argument("--group-size", type=int, default=8, help="completions per prompt (default 8)")
    p.add_argument("--max-new-tokens", type=int, default=48, help="max completion length (default 48)")
    p.add_argument("--micro-batch-size", type=int, default=0,
                   help="r1kit train.micro_batch_size; 0 = prompts x group size, one forward/backward per step "
                        "like TRL's per_device_train_batch_size (default 0)")
    p.add_argument("--micro-batch-tokens", type=int, default=-1,
                   help="r1kit train.micro_batch_tokens (rows of similar length together); -1 = the full batch's "
                        "padded size, rows x (longest prompt + max new tokens), so no micro-batch holds more than "
                        "TRL's one batch; 0 = off (default -1)")
    p.add_argument("--only", choices=("r1kit", "trl", "both"), default="both")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads for both (default 0 = os.cpu_count())")
    args = p.parse_args(argv)
    for name in ("steps", "prompts", "max_new_tokens"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be >= 1")
    if args.warmup < 0:
        p.error("--warmup must be >= 0")
    if args.group_size < 2:
        p.error("--group-size must be >= 2 (GRPO needs at least two completions per prompt)")
    return args


# ----------------------------------------------------------------------------------------------
# Shared inputs


def build_prompt_rows(model_path: str, prompts_per_step: int, total_steps: int, seed: int) -> list[dict]:
    """The prompts r1kit's train loop will draw, in order: ``build_source(cfg.data, tok, seed)``
    with the arithmetic task, the chat template and the ``<think>`` prefill."""
    from r1kit.config import DataSection
    from r1kit.data import build_source
    from r1kit.models import load_tokenizer

    tok = load_tokenizer(model_path)
    source = build_source(DataSection(source="arithmetic", template="chat", prefill=PREFILL), tok, seed)
    rows = []
    for s in source.next_batch(prompts_per_step * total_steps):
        rows.append({"prompt": s.prompt, **s.columns})  # columns: question, answer, task
    return rows


def check_tokenization(model_path: str, rows: list[dict]) -> str:
    """TRL tokenizes plain-string prompts with ``processing_class(text=prompts)`` (special tokens
    on); r1kit with ``encode_prompt``. They must give the same ids (no extra BOS)."""
    from transformers import AutoTokenizer

    from r1kit.models import load_tokenizer
    from r1kit.rollout.hf import encode_prompt

    trl_tok = AutoTokenizer.from_pretrained(model_path)
    r1_tok = load_tokenizer(model_path)
    texts = [r["prompt"] for r in rows]
    trl_ids = trl_tok(text=texts)["input_ids"]
    r1_ids = [encode_prompt(r1_tok, t) for t in texts]
    bad = sum(a != b for a, b in zip(trl_ids, r1_ids))
    lens = sorted({len(x) for x in r1_ids})
    if bad:
        return f"MISMATCH in {bad}/{len(texts)} prompts (TRL would see different prompt tokens)"
    return f"identical token ids in both ({len(texts)} prompts, {lens[0]}-{lens[-1]} tokens)"


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


# ----------------------------------------------------------------------------------------------
# r1kit


def prompt_lengths(model_path: str, rows: list[dict]) -> list[int]:
    """Each row's prompt in tokens, as r1kit encodes it."""
    from r1kit.models import load_tokenizer
    from r1kit.rollout.hf import encode_prompt

    tok = load_tokenizer(model_path)
    return [len(encode_prompt(tok, r["prompt"])) for r in rows]


def full_batch_tokens(model_path: str, rows: list[dict], args) -> int:
    """The padded size of one whole step's batch: rows x (longest prompt + max new tokens)."""
    return args.prompts * args.group_size * (max(prompt_lengths(model_path, rows)) + args.max_new_tokens)


def r1kit_config(args, model_path: str, workdir: Path, micro_batch_size: int, micro_batch_tokens: int = 0) -> dict:
    """r1kit's GRPO config for the benchmark (the same update as TRL's side)."""
    return {
        "output_dir": str(workdir / "r1kit"),
        "seed": args.seed,
        "model": {"name_or_path": model_path, "dtype": "float32", "gradient_checkpointing": False},
        "data": {"source": "arithmetic", "template": "chat", "prefill": PREFILL},
        "rollout": {
            "backend": "hf",
            "group_size": args.group_size,
            "max_new_tokens": args.max_new_tokens,
            "temperature": 1.0,
            "top_p": 1.0,
            "top_k": 0,
            "batch_size": 0,
        },
        "rewards": dict(REWARD_WEIGHTS),
        "grpo": {
            "loss_type": "grpo",
            "scale": "group",
            "epsilon_low": EPSILON,
            "epsilon_high": None,
            "beta": 0.0,
            "num_iterations": 1,
            "mask_truncated": False,
            "dynamic_sampling": False,
        },
        "train": {
            "max_steps": args.warmup + args.steps,
            "prompts_per_step": args.prompts,
            "micro_batch_size": micro_batch_size,
            "micro_batch_tokens": micro_batch_tokens,
            "lr": LR,
            "weight_decay": 0.0,
            "adam_beta1": ADAM_BETAS[0],
            "adam_beta2": ADAM_BETAS[1],
            "lr_schedule": "constant",
            "warmup_steps": 0,
            "max_grad_norm": MAX_GRAD_NORM,
            "save_every": 0,
            "samples_every": 1,  # written after the step's timer stops; used to check the prompts
            "log_all_samples": True,
            "tensorboard": False,
            "progress": False,
        },
    }


def run_r1kit(args, model_path: str, rows: list[dict], workdir: Path) -> dict:
    """Train with r1kit; per-step seconds, lengths and rewards from its metrics.jsonl."""
    from r1kit.config import config_from_dict
    from r1kit.grpo.train import train
    from r1kit.logging import read_jsonl

    total = args.warmup + args.steps
    mb = args.micro_batch_size or args.prompts * args.group_size
    tokens = getattr(args, "micro_batch_tokens", -1)
    tokens = full_batch_tokens(model_path, rows, args) if tokens < 0 else tokens
    cfg = config_from_dict(r1kit_config(args, model_path, workdir, mb, tokens))
    t0 = time.perf_counter()
    run_dir = train(cfg)
    wall = time.perf_counter() - t0
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    samples = read_jsonl(run_dir / "samples.jsonl")
    if len(metrics) != total:
        raise RuntimeError(f"r1kit wrote {len(metrics)} metric rows, expected {total}")

    problems = r1kit_prompt_problems(samples, rows, args.prompts, args.group_size, total)

    steps = []
    for m in metrics:
        steps.append(
            {
                "seconds": m["time/step"],
                "mean_len": m["completion_length/mean"],
                "max_len": m["completion_length/max"],
                "tokens": m["tokens_generated"],
                "rollout_s": m["time/rollout_and_score"],
                "learner_s": m["time/learner"],
                "reward": m["reward/mean"],
            }
        )
    return {
        "steps": steps,
        "wall": wall,
        "prompt_check": "ok" if not problems else f"{problems} steps differ from the shared prompt list",
        "micro_batch_size": mb,
        "micro_batch_tokens": tokens,
    }


# ----------------------------------------------------------------------------------------------
# TRL


def trl_reward(name: str, calls: list | None = None):
    """r1kit's registered reward ``name`` as a TRL reward function. TRL passes the completion
    without the prompt's ``<think>`` prefill; r1kit's loop scores prefill + completion, so the
    prefill is put back here and both sides judge the same text."""
    from r1kit.rewards import REWARDS

    fn = REWARDS[name]

    def reward(prompts, completions, **kwargs):
        if calls is not None:
            calls.append(list(prompts))
        return fn(prompts=prompts, completions=[PREFILL + c for c in completions], **kwargs)

    reward.__name__ = name  # TRL names the reward metrics after the function
    return reward


def make_timer_callback():
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Wall time of each optimizer step (on_step_begin -> on_step_end) and the per-step logs."""

        def __init__(self):
            self.t_begin = None
            self.in_step: list[float] = []
            self.end_to_end: list[float] = []
            self.logs: dict[int, dict] = {}
            self._last_end = None

        def on_train_begin(self, args, state, control, **kw):
            self._last_end = time.perf_counter()

        def on_step_begin(self, args, state, control, **kw):
            self.t_begin = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            now = time.perf_counter()
            self.in_step.append(now - self.t_begin)
            self.end_to_end.append(now - self._last_end)
            self._last_end = now

        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "completions/mean_length" in logs:
                self.logs[state.global_step] = dict(logs)

    return StepTimer()


def trl_config(args, workdir: Path):
    """TRL's GRPOConfig for the benchmark: the same batch, sampling and update as r1kit's side."""
    import torch
    from trl import GRPOConfig

    P, G = args.prompts, args.group_size
    return GRPOConfig(
        output_dir=str(workdir / "trl"),
        # precision / device
        use_cpu=True,
        bf16=False,
        fp16=False,
        model_init_kwargs={"dtype": torch.float32},
        gradient_checkpointing=False,
        # batch: one generation of P prompts x G completions, one optimizer step on all of it
        per_device_train_batch_size=P * G,
        num_generations=G,
        gradient_accumulation_steps=1,
        steps_per_generation=1,
        num_iterations=1,
        max_steps=args.warmup + args.steps,
        shuffle_dataset=False,  # prompts in the same order as r1kit's source
        dataloader_num_workers=0,
        remove_unused_columns=False,
        # generation
        max_completion_length=args.max_new_tokens,
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        min_p=None,
        repetition_penalty=1.0,
        use_vllm=False,
        # loss
        loss_type="grpo",
        scale_rewards="group",
        beta=0.0,
        epsilon=EPSILON,
        epsilon_high=None,
        mask_truncated_completions=False,
        reward_weights=list(REWARD_WEIGHTS.values()),
        disable_dropout=True,
        # optimizer: torch.optim.AdamW like r1kit (transformers' default is the fused variant)
        optim="adamw_torch",
        learning_rate=LR,
        adam_beta1=ADAM_BETAS[0],
        adam_beta2=ADAM_BETAS[1],
        weight_decay=0.0,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_grad_norm=MAX_GRAD_NORM,
        # bookkeeping
        seed=args.seed,
        data_seed=args.seed,
        logging_steps=1,
        report_to="none",
        save_strategy="no",
        log_completions=False,
        disable_tqdm=True,
    )


def r1kit_prompt_problems(samples: list[dict], rows: list[dict], P: int, G: int, total: int) -> int:
    """How many steps did not train on the shared prompt list (P prompts, each G times, in order),
    from samples.jsonl written with ``train.log_all_samples`` (every completion of every step)."""
    problems = 0
    for step in range(1, total + 1):
        seen = [s["prompt"] for s in samples if s["step"] == step]
        want = [r["prompt"] for r in rows[(step - 1) * P : step * P] for _ in range(G)]
        problems += seen != want
    return problems


def _trl_prompt_problems(calls: list[list[str]], rows: list[dict], P: int, G: int, total: int) -> int:
    """How many generation batches differ from the shared prompt list (P prompts, each G times)."""
    problems = sum(
        prompts != [r["prompt"] for r in rows[k * P : (k + 1) * P] for _ in range(G)] for k, prompts in enumerate(calls)
    )
    return problems + (len(calls) != total)


def _trl_steps(timer, total: int, N: int) -> list[dict]:
    """Per optimizer step: seconds (timer callback), mean completion length and reward (TRL's logs)."""
    if len(timer.in_step) != total:
        raise RuntimeError(f"TRL ran {len(timer.in_step)} optimizer steps, expected {total}")
    steps = []
    for i in range(total):
        log = timer.logs.get(i + 1, {})
        mean_len = log.get("completions/mean_length", float("nan"))
        steps.append(
            {
                "seconds": timer.in_step[i],
                "end_to_end": timer.end_to_end[i],
                "mean_len": mean_len,
                "max_len": log.get("completions/max_length", float("nan")),
                "tokens": mean_len * N,
                "trl_step_time": log.get("step_time", float("nan")),
                "reward": log.get("reward", float("nan")),
            }
        )
    return steps


def _unique_warnings(caught) -> list[str]:
    seen, notes = set(), []
    for w in caught:
        msg = f"{w.category.__name__}: {str(w.message).splitlines()[0][:160]}"
        if msg not in seen:
            seen.add(msg)
            notes.append(msg)
    return notes


def run_trl(args, model_path: str, rows: list[dict], workdir: Path) -> dict:
    """Train with TRL's GRPOTrainer; per-step seconds from a callback, lengths from its logs."""
    import datasets
    import transformers
    from transformers import AutoTokenizer, PrinterCallback
    from trl import GRPOTrainer

    total = args.warmup + args.steps
    G, P = args.group_size, args.prompts
    dataset = datasets.Dataset.from_list(rows)  # prompt (rendered string), question, answer, task
    config = trl_config(args, workdir)
    calls: list[list[str]] = []
    reward_funcs = [trl_reward(name, calls if i == 0 else None) for i, name in enumerate(REWARD_WEIGHTS)]
    timer = make_timer_callback()
    transformers.set_seed(args.seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        trainer = GRPOTrainer(
            model=model_path,
            reward_funcs=reward_funcs,
            args=config,
            train_dataset=dataset,
            processing_class=AutoTokenizer.from_pretrained(model_path),
            callbacks=[timer],
        )
        trainer.remove_callback(PrinterCallback)  # it prints every log dict (after on_step_end; untimed)
        model = trainer.model
        info = {
            "device": str(next(model.parameters()).device),
            "dtype": str(next(model.parameters()).dtype),
            "grad_ckpt": bool(getattr(model, "is_gradient_checkpointing", False)),
        }
        t0 = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - t0
    problems = _trl_prompt_problems(calls, rows, P, G, total)
    steps = _trl_steps(timer, total, P * G)
    del trainer, model
    gc.collect()
    return {
        "steps": steps,
        "wall": wall,
        "info": info,
        "warnings": _unique_warnings(caught),
        "prompt_check": "ok" if not problems else f"{problems} generation batches differ from the shared prompt list",
    }


# ----------------------------------------------------------------------------------------------
# Report


def summarize(name: str, res: dict, warmup: int) -> dict:
    measured = res["steps"][warmup:]
    secs = [s["seconds"] for s in measured]
    toks = sum(s["tokens"] for s in measured)
    return {
        "name": name,
        "median": median(secs),
        "min": min(secs),
        "max": max(secs),
        "mean_len": statistics.fmean(s["mean_len"] for s in measured),
        "tokens_per_step": toks / len(measured),
        "s_per_1k_tok": 1000.0 * sum(secs) / toks if toks else float("nan"),
    }


def print_report(args, results: dict, summaries: dict) -> None:
    total = args.warmup + args.steps
    sides = [k for k in ("r1kit", "trl") if k in results]
    head = f"{'step':>6}"
    for k in sides:
        head += f" | {k + ' s':>9} {k + ' len':>9}"
    if "trl" in results:
        head += f" | {'trl e2e s':>9}"
    print(head)
    print("-" * len(head))
    for i in range(total):
        line = f"{i + 1:>4}{'w ' if i < args.warmup else '  '}"
        for k in sides:
            s = results[k]["steps"][i]
            line += f" | {s['seconds']:>9.3f} {s['mean_len']:>9.1f}"
        if "trl" in results:
            line += f" | {results['trl']['steps'][i]['end_to_end']:>9.3f}"
        print(line)
    legend = "w = warm-up, excluded; len = mean completion tokens per sequence"
    if "trl" in results:
        legend += "; trl e2e = on_step_end to on_step_end"
    print(f"({legend})")
    print()
    for k in sides:
        s = summaries[k]
        print(
            f"{k:>5}: median {s['median']:.3f} s/step (min {s['min']:.3f}, max {s['max']:.3f}) over {args.steps} steps; "
            f"mean completion {s['mean_len']:.1f} tok; {s['tokens_per_step']:.0f} generated tok/step; "
            f"{s['s_per_1k_tok']:.3f} s per 1k generated tok"
        )
    if "r1kit" in results:
        m = results["r1kit"]["steps"][args.warmup :]
        print(f"r1kit: median rollout+scoring {median([s['rollout_s'] for s in m]):.3f} s, "
              f"learner.step {median([s['learner_s'] for s in m]):.3f} s")
    if "trl" in results:
        e2e = median([s["end_to_end"] for s in results["trl"]["steps"][args.warmup :]])
        own = median([s["trl_step_time"] for s in results["trl"]["steps"][args.warmup :]])
        print(f"  trl: median on_step_end->on_step_end {e2e:.3f} s; TRL's own step_time metric "
              f"(training_step only, no optimizer step) median {own:.3f} s")
    if len(sides) == 2:
        a, b = summaries["r1kit"], summaries["trl"]
        print(f"length-normalised (s per 1k generated tok): trl / r1kit = {b['s_per_1k_tok'] / a['s_per_1k_tok']:.2f}x")


def print_setup(args, model_path: str, rows: list[dict], threads: int, mb: int) -> None:
    """What is compared, on what: the header of the report."""
    import torch
    import transformers
    import trl

    print("== r1kit vs TRL GRPO, seconds per optimizer step (CPU) ==")
    print(f"device: cpu ({platform.processor() or platform.machine()}), os.cpu_count()={os.cpu_count()}, "
          f"torch threads={threads}")
    print(f"versions: python {platform.python_version()}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}, trl {trl.__version__}")
    print(f"model: {args.model} -> {model_path} (fp32)")
    print(f"batch: {args.prompts} prompts x {args.group_size} completions = {args.prompts * args.group_size} "
          f"sequences/step, max {args.max_new_tokens} new tokens, temperature 1.0, top_p 1.0, top_k 0")
    print(f"update: loss_type grpo, scale_rewards group, beta 0, num_iterations 1, epsilon {EPSILON}, "
          f"AdamW lr {LR} betas {ADAM_BETAS} wd 0, constant LR, max_grad_norm {MAX_GRAD_NORM}, "
          f"no gradient checkpointing")
    tokens = "off" if args.micro_batch_tokens == 0 else (
        "the full batch's padded size" if args.micro_batch_tokens < 0 else args.micro_batch_tokens)
    print(f"r1kit: train.micro_batch_size={mb}, train.micro_batch_tokens={tokens}; TRL: per_device_train_batch_size={args.prompts * args.group_size}, "
          f"num_generations={args.group_size}, gradient_accumulation_steps=1, steps_per_generation=1")
    print(f"data: arithmetic task, chat template + '{PREFILL}' prefill, seed {args.seed}; rewards "
          + ", ".join(f"{w} x {n}" for n, w in REWARD_WEIGHTS.items()) + " (r1kit's functions on both sides)")
    print(f"prompt tokenization: {check_tokenization(model_path, rows)}")
    print(f"steps: {args.warmup} warm-up + {args.steps} measured per trainer; seed {args.seed}")
    if args.steps < 5:
        print(f"note: only {args.steps} measured steps; use --steps 5 or more for a reportable median")


def main(argv=None) -> int:
    # A CPU benchmark: r1kit picks cuda when it sees a GPU, TRL is told use_cpu; hide GPUs from both.
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    args = parse_args(argv)

    import torch
    import transformers

    from r1kit.models import resolve_model_path

    transformers.utils.logging.disable_progress_bar()  # weight loading / shard writing bars
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    model_path = resolve_model_path(args.model)
    total = args.warmup + args.steps
    rows = build_prompt_rows(model_path, args.prompts, total, args.seed)
    mb = args.micro_batch_size or args.prompts * args.group_size

    print_setup(args, model_path, rows, threads, mb)
    sys.stdout.flush()

    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-grpo-") as tmp:
        workdir = Path(tmp)
        if args.only in ("r1kit", "both"):
            print("\nrunning r1kit ...", flush=True)
            results["r1kit"] = run_r1kit(args, model_path, rows, workdir)
            gc.collect()
            print(f"r1kit: done in {results['r1kit']['wall']:.1f} s (incl. model load and final save); "
                  f"prompt check: {results['r1kit']['prompt_check']}", flush=True)
        if args.only in ("trl", "both"):
            torch.set_num_threads(threads)
            print("\nrunning TRL GRPOTrainer ...", flush=True)
            results["trl"] = run_trl(args, model_path, rows, workdir)
            r = results["trl"]
            print(f"trl: done in {r['wall']:.1f} s (train() only); model on {r['info']['device']} "
                  f"{r['info']['dtype']}, gradient checkpointing {r['info']['grad_ckpt']}; "
                  f"prompt check: {r['prompt_check']}", flush=True)
            for w in r["warnings"]:
                print(f"  trl warning: {w}")
    if torch.get_num_threads() != threads:
        print(f"warning: torch threads changed to {torch.get_num_threads()} during the run")

    summaries = {k: summarize(k, v, args.warmup) for k, v in results.items()}
    print()
    print_report(args, results, summaries)
    if "r1kit" in summaries and "trl" in summaries:
        print(f"speedup vs TRL: {summaries['trl']['median'] / summaries['r1kit']['median']:.2f}x")
    else:
        print("speedup vs TRL: n/a (run with --only both)")
    failed = {k: v["prompt_check"] for k, v in results.items() if v["prompt_check"] != "ok"}
    if failed:  # the trainers did not see the same prompts: the comparison means nothing
        print(f"error: prompt check failed: {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
