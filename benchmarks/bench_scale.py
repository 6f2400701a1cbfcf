"""GRPO on 1 process vs N processes (``accelerate launch``, DDP) on this machine: training
throughput and the communication time per step.

Both runs train the same config for ``--warmup + --steps`` steps with ``rollout.seeding:
per_prompt``, so they generate the same completions and do the same work; the N-process run
splits each step's prompts over the processes. The one-process run gets every core as torch
threads, each of the N processes cores/N threads: the same machine either way.

Throughput = completion tokens generated per second of step time (``tokens_generated`` /
``time/step`` of metrics.jsonl), median over the measured steps. Communication = the seconds a
step spends exchanging the scored groups (``time/gather_groups``) and in DDP's gradient
all-reduce (``time/grad_allreduce``, which overlaps the backward pass), on process 0.

On a 2-core CPU the ratio says little about GPUs -- two processes share two cores, and gloo
copies through memory -- the point is that the run works and what the overhead costs.

    python benchmarks/bench_scale.py                          # SmolLM2-135M-Instruct, 2 processes
    python benchmarks/bench_scale.py --model /tmp/tiny --steps 3

The last line printed is ``throughput N vs 1 processes: X.XXx``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct", help="builtin name or HF model directory")
    p.add_argument("--processes", type=int, default=2)
    p.add_argument("--steps", type=int, default=3, help="measured steps per run (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="untimed first steps per run (default 1)")
    p.add_argument("--prompts", type=int, default=4, help="prompts per step (a multiple of --processes)")
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=32)
    return p.parse_args(argv)


def config(args: argparse.Namespace) -> dict:
    return {
        "model": {"name_or_path": args.model},
        "data": {"source": "arithmetic"},
        "rollout": {"group_size": args.group_size, "max_new_tokens": args.max_new_tokens, "seeding": "per_prompt"},
        "rewards": {"accuracy": 1.0, "format": 0.2},
        "train": {"max_steps": args.warmup + args.steps, "prompts_per_step": args.prompts,
                  "micro_batch_size": args.group_size, "save_every": 0, "lr": 1e-6, "progress": False},
    }


def run(n: int, cfg_path: Path, out: Path, threads: int) -> tuple[list[dict], float]:
    from r1kit.testing import launch_cmd

    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = launch_cmd(n, "grpo", str(cfg_path), f"output_dir={out}")
    t0 = time.perf_counter()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if p.returncode:
        sys.exit(f"bench_scale: the {n}-process run failed:\n{p.stderr[-4000:]}")
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return rows, wall


def summary(rows: list[dict], warmup: int) -> dict[str, float]:
    measured = rows[warmup:]
    med = lambda key: statistics.median(r.get(key, 0.0) for r in measured)  # noqa: E731
    return {
        "s_step": med("time/step"),
        "tok_s": statistics.median(r["tokens_generated"] / r["time/step"] for r in measured),
        "tokens": med("tokens_generated"),
        "gather": med("time/gather_groups"),
        "allreduce": med("time/grad_allreduce"),
        "learner": med("time/learner"),
        "rollout": med("time/rollout_and_score"),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.prompts % args.processes:
        sys.exit(f"--prompts {args.prompts} must be a multiple of --processes {args.processes}")
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory(prefix="r1kit-bench-scale-") as tmp:
        tmp = Path(tmp)
        cfg_path = tmp / "cfg.yaml"
        cfg_path.write_text(yaml.safe_dump(config(args)))
        one_rows, one_wall = run(1, cfg_path, tmp / "one", cores)
        many_rows, many_wall = run(args.processes, cfg_path, tmp / "many", max(1, cores // args.processes))
    same = [r["tokens_generated"] for r in one_rows] == [r["tokens_generated"] for r in many_rows]
    one, many = summary(one_rows, args.warmup), summary(many_rows, args.warmup)
    n = args.processes
    print(f"machine: {platform.machine()}, {cores} cores, python {platform.python_version()}")
    print(f"model {args.model}; {args.prompts} prompts x {args.group_size} completions x <= {args.max_new_tokens} "
          f"tokens per step; {args.steps} measured steps after {args.warmup} warm-up")
    print(f"same completions in both runs: {'yes' if same else 'NO'}")
    print(f"{'':14}{'s/step':>9}{'tok/s':>9}{'rollout s':>11}{'learner s':>11}{'gather s':>10}{'allreduce s':>13}{'wall s':>8}")
    for name, s, wall in (("1 process", one, one_wall), (f"{n} processes", many, many_wall)):
        print(f"{name:14}{s['s_step']:9.2f}{s['tok_s']:9.1f}{s['rollout']:11.2f}{s['learner']:11.2f}"
              f"{s['gather']:10.3f}{s['allreduce']:13.3f}{wall:8.1f}")
    comm = many["gather"] + many["allreduce"]
    print(f"communication per step with {n} processes: {comm:.3f} s ({comm / many['s_step']:.1%} of the step; "
          "the all-reduce overlaps the backward pass)")
    print(f"throughput {n} vs 1 processes: {many['tok_s'] / one['tok_s']:.2f}x")
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
