"""benchmarks/bench_grpo_cpu.py checks that r1kit trained on the shared prompt list: a real
(tiny) r1kit run with the benchmark's own config passes the check; other prompts fail it."""

from argparse import Namespace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_bench():
    from r1kit.testing import load_script

    return load_script(ROOT / "benchmarks" / "bench_grpo_cpu.py")


def test_the_prompt_check_passes_a_real_run_and_fails_other_prompts(tiny_qwen_dir, tmp_path):
    bench = load_bench()
    args = Namespace(seed=3, group_size=2, max_new_tokens=4, warmup=1, steps=1, prompts=2, micro_batch_size=0)
    total = args.warmup + args.steps
    rows = bench.build_prompt_rows(str(tiny_qwen_dir), args.prompts, total, args.seed)
    res = bench.run_r1kit(args, str(tiny_qwen_dir), rows, tmp_path)
    assert res["prompt_check"] == "ok"
    from r1kit.logging import read_jsonl

    samples = read_jsonl(tmp_path / "r1kit" / "samples.jsonl")
    assert len(samples) == total * args.prompts * args.group_size  # every completion is logged
    assert bench.r1kit_prompt_problems(samples, rows, args.prompts, args.group_size, total) == 0
    swapped = rows[1:2] + rows[0:1] + rows[2:]  # step 1's two prompts in the other order
    assert bench.r1kit_prompt_problems(samples, swapped, args.prompts, args.group_size, total) == 1
    other = bench.build_prompt_rows(str(tiny_qwen_dir), args.prompts, total, args.seed + 1)
    assert bench.r1kit_prompt_problems(samples, other, args.prompts, args.group_size, total) == total
