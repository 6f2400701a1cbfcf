"""benchmarks/bench_grpo_grid.py: the roofline floor it divides r1kit's step time by."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def load_grid():
    from r1kit.testing import load_script

    return load_script(ROOT / "benchmarks" / "bench_grpo_grid.py")


def test_roofline_is_matmul_work_at_sgemm_speed_plus_weight_reads_at_copy_speed():
    grid = load_grid()
    # 135M parameters, 2 prompts of 50 tokens + 16 completions of 55 tokens: 6 * 135e6 * 980 FLOPs
    flops = grid.learner_flops(135_000_000, 100, 880)
    assert flops == pytest.approx(6 * 135e6 * 980)
    # at 257 GFLOP/s that is 3.09 s; 55 decode passes over 0.54 GB at 7 GB/s is 4.24 s
    floor = grid.roofline_seconds(flops, 55, 540_000_000, gflops=257.0, copy_gbs=7.0)
    assert floor == pytest.approx(6 * 135e6 * 980 / 257e9 + 55 * 0.54 / 7.0)
    assert 7.3 < floor < 7.4


def test_defaults_run_only_in_the_named_cells():
    grid = load_grid()
    assert grid.runs_defaults(["4x32"], 4, 32) and not grid.runs_defaults(["4x32"], 4, 128)
    assert not grid.runs_defaults(["4x32"], 32, 4) and grid.runs_defaults(["all"], 16, 256)
    assert not grid.runs_defaults([], 4, 32)


def test_skip_leaves_out_one_trainer_in_one_cell():
    grid = load_grid()
    order = ["r1kit", "trl", "trl-defaults"]
    assert grid.cell_trainers(order, ["all"], ["trl@16x256"], 16, 256) == ["r1kit", "trl-defaults"]
    assert grid.cell_trainers(order, ["all"], ["trl@16x256"], 16, 128) == order
    assert grid.cell_trainers(order, ["4x32"], [], 8, 32) == ["r1kit", "trl"]
    assert grid.parse_args(["--skip", "trl@16x256"]).skip == ["trl@16x256"]
    for typo in ("trl@16x265", "tlr@16x256", "16x256"):  # a cell or trainer the grid does not have
        with pytest.raises(SystemExit):
            grid.parse_args(["--skip", typo])


def test_speedups_pair_each_trl_run_with_the_r1kit_run_of_its_precision():
    grid = load_grid()
    assert grid.speedup_pairs(["r1kit", "trl", "trl-defaults"]) == [("trl", "r1kit"), ("trl-defaults", "r1kit")]
    assert grid.speedup_pairs(["trl-defaults", "r1kit-bf16"]) == [("trl-defaults", "r1kit-bf16")]
    assert grid.speedup_pairs(["r1kit", "r1kit-bf16"]) == []


def test_r1kit_bf16_is_the_same_config_at_trl_default_precision():
    from argparse import Namespace

    from r1kit.config import config_from_dict
    from r1kit.testing import load_script

    grid = load_grid()
    pair = load_script(ROOT / "benchmarks" / "bench_grpo_cpu.py")
    args = Namespace(seed=0, group_size=4, max_new_tokens=8, prompts=2, steps=1, warmup=0)
    same = pair.r1kit_config(args, "some/model", Path("/tmp/x"), 8, 0)
    bf16 = grid.bf16_autocast(same)
    assert bf16["model"]["dtype"] == "autocast_bfloat16" and same["model"]["dtype"] == "float32"
    assert {k: v for k, v in bf16.items() if k != "model"} == {k: v for k, v in same.items() if k != "model"}
    assert config_from_dict(bf16).model.dtype == "autocast_bfloat16"
