"""r1kit GRPO vs TRL ``GRPOTrainer`` over a grid: group size x completion length, on CPU.

Every cell (G completions per prompt, at most L new tokens) runs three trainers, each in its own
process (so each one's peak memory is its own):

- ``r1kit``: r1kit's loop with the settings of ``bench_grpo_cpu.py`` (the same update as TRL's side;
  ``train.micro_batch_tokens`` at the full batch's padded size, so rows of similar completion length
  share a forward/backward pass and no pass holds more than TRL's one batch);
- ``trl``: TRL with those same settings (``bench_grpo_cpu.trl_config``);
- ``trl-defaults``: TRL as a user who changes nothing would run it: only the model, the rewards,
  G, L, the batch (P x G completions per step: TRL's default of 8 cannot hold a group of 16),
  the step count, the prompt order and ``use_cpu`` (without it TRL 1.16 refuses to start on a
  machine without a GPU: its default ``bf16=True`` wants one) are set; everything else is the
  installed TRL's ``GRPOConfig`` default (printed at the start), bf16 included.

Per cell and trainer: median s/step over the measured steps, generated tokens/s, peak RSS (MB).
Per cell also r1kit's step time as a multiple of a roofline floor measured on this machine:

    floor = learner FLOPs / sgemm rate + decode passes x weight bytes / memory-copy rate
    learner FLOPs = 6 x parameters x (P x prompt tokens + generated tokens)   (forward + backward)
    decode passes = the longest completion of the step (one pass over the weights per token)

with the sgemm rate (fp32, 2048^2 matmuls) and the copy rate (256 MB tensor) measured at the start
with the same torch threads. The last line printed is ``min speedup vs TRL over the grid: X.XXx``
(the smallest TRL-same-settings or TRL-defaults s/step over r1kit's).

    python benchmarks/bench_grpo_grid.py                                  # 3 x 3 grid, bundled model
    python benchmarks/bench_grpo_grid.py --groups 4 8 --lengths 32 --steps 2 --defaults-at all
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAINERS = ("r1kit", "trl", "trl-defaults", "r1kit-bf16")
SHORT = {"r1kit": "r1kit", "trl": "trl", "trl-defaults": "def", "r1kit-bf16": "r1k-bf16"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--groups", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--lengths", type=int, nargs="+", default=[32, 128, 256])
    p.add_argument("--prompts", type=int, default=2, help="prompts per step")
    p.add_argument("--steps", type=int, default=3, help="measured steps per trainer and cell")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: os.cpu_count())")
    p.add_argument("--defaults-at", nargs="*", default=["all"], metavar="GxL",
                   help="cells where TRL with its own defaults runs too, or 'all' (default): on a CPU without native "
                        "bf16 its default bf16 can be over 10x slower than fp32, so a few cells may be all it can do")
    p.add_argument("--skip", nargs="*", default=[], metavar="TRAINER@GxL",
                   help="trainer runs to leave out, e.g. trl@16x256 (one that would run out of memory: on the "
                        "24 GB CPU machine TRL's same-settings run there was killed after 17 min in session 10)")
    p.add_argument("--trainers", nargs="+", choices=TRAINERS, default=list(TRAINERS[:3]),
                   help="which trainers run: r1kit, trl and trl-defaults (default), and r1kit-bf16 (r1kit with "
                        "model.dtype autocast_bfloat16, the precision of TRL's defaults)")
    p.add_argument("--child", choices=TRAINERS, help=argparse.SUPPRESS)
    p.add_argument("--group-size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--max-new-tokens", type=int, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    cells = {f"{G}x{L}" for G in args.groups for L in args.lengths}
    for entry in args.skip:
        trainer, _, cell = entry.partition("@")
        if trainer not in TRAINERS or cell not in cells:
            p.error(f"--skip {entry}: expected TRAINER@GxL with TRAINER one of {', '.join(TRAINERS)} and GxL a cell "
                    f"of the grid ({', '.join(sorted(cells))})")
    return args


def load_pair_bench():
    """bench_grpo_cpu.py: the shared prompts, rewards and same-settings configs."""
    sys.path.insert(0, str(HERE))
    import bench_grpo_cpu

    return bench_grpo_cpu


# ---- the roofline (pure) ----


def learner_flops(n_params: int, prompt_tokens: int, generated_tokens: float) -> float:
    """Forward + backward of every prompt once and every generated token: 6 FLOPs per parameter."""
    return 6.0 * n_params * (prompt_tokens + generated_tokens)


def roofline_seconds(flops: float, decode_passes: float, weight_bytes: int, gflops: float, copy_gbs: float) -> float:
    """The step's floor on this machine: its matmul work at sgemm speed plus one read of the weights
    per decoded token position at memory-copy speed."""
    return flops / (gflops * 1e9) + decode_passes * weight_bytes / (copy_gbs * 1e9)


def machine_rates(threads: int) -> tuple[float, float]:
    """fp32 sgemm GFLOP/s (2048^2) and memory-copy GB/s (256 MB), best of a few repeats."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(5))
    gflops = 2 * 2048**3 / best / 1e9
    src = torch.empty(64 * 2**20)  # 256 MB of fp32
    dst = torch.empty_like(src)
    dst.copy_(src)
    copy = min(_timed(lambda: dst.copy_(src)) for _ in range(5))
    return gflops, src.numel() * 4 / copy / 1e9


def decode_matmul_rate(threads: int, rows: int = 16) -> float:
    """GB/s of weights read by ``rows``-row fp32 matmuls (what a decode step is) over 256 MB of
    [1536, 576] weights, best of a few repeats: the decode loop's practical ceiling with torch's
    CPU kernels, next to the memory-copy rate the roofline assumes."""
    import torch

    torch.set_num_threads(threads)
    weights = [torch.randn(1536, 576) for _ in range(76)]  # 76 x 3.5 MB: out of every cache
    x = torch.randn(rows, 576)

    def read_all():
        for w in weights:
            torch.nn.functional.linear(x, w)

    read_all()
    return sum(w.numel() * 4 for w in weights) / min(_timed(read_all) for _ in range(5)) / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def runs_defaults(cells: list[str], G: int, L: int) -> bool:
    """Whether ``--defaults-at`` (``GxL`` strings, or ``all``) names the cell."""
    return "all" in cells or f"{G}x{L}" in cells


def cell_trainers(order: list[str], defaults_at: list[str], skip: list[str], G: int, L: int) -> list[str]:
    """The trainers that run in cell G x L: ``order`` less TRL's defaults outside ``--defaults-at``
    and the ``--skip`` entries (``trainer@GxL``) naming this cell."""
    return [t for t in order
            if (t != "trl-defaults" or runs_defaults(defaults_at, G, L)) and f"{t}@{G}x{L}" not in skip]


# ---- one trainer on one cell (a child process) ----


def trl_default_config(args, workdir: Path, pair):
    """GRPOConfig with only what a run needs set; everything else is TRL's default."""
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=str(workdir / "trl-defaults"), use_cpu=True, num_generations=args.group_size,
        max_completion_length=args.max_new_tokens, per_device_train_batch_size=args.prompts * args.group_size,
        max_steps=args.warmup + args.steps, reward_weights=list(pair.REWARD_WEIGHTS.values()),
        shuffle_dataset=False, seed=args.seed, logging_steps=1, report_to="none", save_strategy="no", disable_tqdm=True,
    )


def trl_defaults_that_matter() -> dict:
    """The installed TRL's defaults for what the same-settings run fixes (printed in the header)."""
    from trl import GRPOConfig

    d = GRPOConfig(output_dir=tempfile.mkdtemp(), use_cpu=True)
    keys = ("loss_type", "beta", "learning_rate", "bf16", "gradient_checkpointing", "temperature", "top_p", "top_k",
            "scale_rewards", "epsilon", "num_iterations", "optim", "lr_scheduler_type", "max_grad_norm",
            "per_device_train_batch_size", "num_generations", "max_completion_length", "use_vllm", "model_init_kwargs")
    return {k: getattr(d, k, None) for k in keys}


def run_child(args) -> dict:
    import torch

    pair = load_pair_bench()
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    from r1kit.models import resolve_model_path

    model_path = resolve_model_path(args.model)
    total = args.warmup + args.steps
    rows = pair.build_prompt_rows(model_path, args.prompts, total, args.seed)
    args.micro_batch_size = 0
    with tempfile.TemporaryDirectory(prefix="bench-grid-") as tmp:
        if args.child.startswith("r1kit"):
            if args.child == "r1kit-bf16":
                same = pair.r1kit_config
                pair.r1kit_config = lambda *a, **k: bf16_autocast(same(*a, **k))
            res = pair.run_r1kit(args, model_path, rows, Path(tmp))
        else:
            if args.child == "trl-defaults":
                pair.trl_config = lambda a, w: trl_default_config(a, w, pair)
            res = pair.run_trl(args, model_path, rows, Path(tmp))
    measured = res["steps"][args.warmup:]
    return {
        "s_step": statistics.median(s["seconds"] for s in measured),
        "tokens_per_s": sum(s["tokens"] for s in measured) / sum(s["seconds"] for s in measured),
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "prompt_check": res["prompt_check"],
        "generated_per_step": statistics.mean(s["tokens"] for s in measured),
        "longest_per_step": statistics.mean(s.get("max_len", s["mean_len"]) for s in measured),
        "prompt_tokens": sum(pair.prompt_lengths(model_path, rows[: args.prompts])),
    }


def bf16_autocast(cfg: dict) -> dict:
    """r1kit's benchmark config with TRL's default precision: fp32 weights, bf16 autocast."""
    return {**cfg, "model": {**cfg["model"], "dtype": "autocast_bfloat16"}}


def model_size(model_path: str) -> tuple[int, int]:
    """Parameters and their fp32 bytes."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        m = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model_path))
    n = sum(p.numel() for p in m.parameters())
    return n, 4 * n


# ---- the grid ----


def run_cell(args, trainer: str, G: int, L: int) -> dict:
    cmd = [sys.executable, str(Path(__file__)), "--child", trainer, "--group-size", str(G), "--max-new-tokens", str(L),
           "--model", args.model, "--prompts", str(args.prompts), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--seed", str(args.seed), "--threads", str(args.threads)]
    p = subprocess.run(cmd, check=False, capture_output=True, text=True)
    if p.returncode == -9:  # SIGKILL: on a machine without swap, the kernel's out-of-memory killer
        return {"killed": f"{trainer} at G={G}, L={L} was killed (SIGKILL: out of memory?)"}
    line = next((x for x in p.stdout.splitlines() if x.startswith("RESULT ")), None)
    if p.returncode or line is None:
        raise RuntimeError(f"{trainer} at G={G}, L={L} failed ({p.returncode}):\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}")
    return json.loads(line[len("RESULT "):])


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        print("RESULT " + json.dumps(run_child(args)), flush=True)
        return 0
    from r1kit.models import resolve_model_path

    threads = args.threads or os.cpu_count() or 1
    gflops, copy_gbs = machine_rates(threads)
    n_params, weight_bytes = model_size(resolve_model_path(args.model))
    decode_gbs = decode_matmul_rate(threads)
    print(f"[grid] {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {threads}: "
          f"sgemm {gflops:.0f} GFLOP/s, memory copy {copy_gbs:.1f} GB/s, 16-row matmuls read weights at "
          f"{decode_gbs:.1f} GB/s; {args.model}: {n_params / 1e6:.1f}M parameters "
          f"({weight_bytes / 1e9:.2f} GB fp32); {args.prompts} prompts per step, {args.warmup} warm-up + {args.steps} "
          f"measured steps per trainer")
    print(f"[grid] TRL defaults: {trl_defaults_that_matter()}", flush=True)
    order = [t for t in TRAINERS if t in args.trainers]
    pairs = speedup_pairs(order)
    print(" ".join([f"{'G':>3}", f"{'L':>4}", "|", *[f"{SHORT[t] + ' s':>9}" for t in order], "|",
                    *[f"{SHORT[b] + '/' + SHORT[a]:>13}" for b, a in pairs], "|",
                    *[f"{SHORT[t] + ' tok/s':>14}" for t in order], "|", *[f"{SHORT[t] + ' MB':>11}" for t in order],
                    "|", f"{'x roofline':>10}"]))
    ratios: dict[tuple[str, str], list[float]] = {p: [] for p in pairs}
    failed = []
    for G in args.groups:
        for L in args.lengths:
            trainers = cell_trainers(order, args.defaults_at, args.skip, G, L)
            for t in set(order) - set(trainers):
                if f"{t}@{G}x{L}" in args.skip:
                    print(f"[grid] {t} at G={G}, L={L}: skipped (--skip)", flush=True)
            try:
                r = {t: run_cell(args, t, G, L) for t in trainers}
            except RuntimeError as e:
                print(f"[grid] {e}", file=sys.stderr)
                return 1
            killed = [r.pop(t)["killed"] for t in list(r) if "killed" in r[t]]
            if "r1kit" not in r and "r1kit-bf16" not in r:
                print(f"[grid] G={G} L={L}: " + "; ".join(killed), flush=True)
                continue
            failed += [f"{t} G={G} L={L}: {v['prompt_check']}" for t, v in r.items() if v["prompt_check"] != "ok"]
            x = {(b, a): r[b]["s_step"] / r[a]["s_step"] for b, a in pairs if a in r and b in r}
            for key, ratio in x.items():
                ratios[key].append(ratio)
            base = r.get("r1kit") or r.get("r1kit-bf16") or next(iter(r.values()))  # the roofline is r1kit's
            floor = roofline_seconds(learner_flops(n_params, base["prompt_tokens"], base["generated_per_step"]),
                                     base["longest_per_step"], weight_bytes, gflops, copy_gbs)
            cell = lambda t, key, fmt, w: format(r[t][key], fmt).rjust(w) if t in r else "-".rjust(w)  # noqa: E731
            print(" ".join([f"{G:>3}", f"{L:>4}", "|", *[cell(t, "s_step", ".2f", 9) for t in order], "|",
                            *[(f"{x[p]:.2f}x" if p in x else "-").rjust(13) for p in pairs], "|",
                            *[cell(t, "tokens_per_s", ".1f", 14) for t in order], "|",
                            *[cell(t, "peak_mb", ".0f", 11) for t in order], "|",
                            f"{base['s_step'] / floor:9.1f}x"]), flush=True)
            for k in killed:
                print(f"[grid] {k}", flush=True)
    if failed:
        print("error: prompt check failed: " + "; ".join(failed), file=sys.stderr)
        return 1
    for (b, a), xs in ratios.items():
        if xs and a != "r1kit":
            print(f"min speedup of {a} vs {b} over the grid: {min(xs):.2f}x")
    vs_trl = [x for (b, a), xs in ratios.items() if a == "r1kit" for x in xs]
    print(f"min speedup vs TRL over the grid: {min(vs_trl):.2f}x" if vs_trl else
          "min speedup vs TRL over the grid: n/a (run r1kit and a TRL trainer)")
    return 0


def speedup_pairs(order: list[str]) -> list[tuple[str, str]]:
    """(slower, faster) trainer pairs whose s/step ratio is printed: each TRL run over r1kit, and
    TRL's defaults over r1kit-bf16 (the same precision)."""
    want = [("trl", "r1kit"), ("trl-defaults", "r1kit"), ("trl-defaults", "r1kit-bf16")]
    return [(b, a) for b, a in want if a in order and b in order]


if __name__ == "__main__":
    sys.exit(main())
