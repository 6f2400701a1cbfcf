"""The training loop's record: everything a run leaves in its directory."""

import json
import struct
import sys

import pytest
import torch
import yaml

from r1kit.checkpoint import load_trainer_state
from r1kit.config import load_config
from r1kit.grpo.train import TrainingError, train

# A reward with spread on a random tiny model (which never earns accuracy/format credit), so the
# advantages are non-zero and the weights really move.
REWARDS_SRC = """
def length(prompts, completions, **columns):
    return [len(c) / 10.0 for c in completions]
"""
LENGTH = "r1kit_test_rewards_train:length"

REQUIRED_KEYS = [
    "step", "reward/mean", "reward/std", "accuracy", "format_rate", "completion_length/mean",
    "completion_length/max", "truncated_frac", "zero_variance_frac", "kl", "entropy", "clip_frac_low",
    "clip_frac_high", "grad_norm", "lr", "tokens_generated", "time/rollout_and_score", "time/learner",
]


def is_png(path):
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return False
    width, height = struct.unpack(">II", data[16:24])
    return width > 100 and height > 100 and data[-8:-4] == b"IEND"


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_dir):
    mod_dir = tmp_path_factory.mktemp("mods")
    (mod_dir / "r1kit_test_rewards_train.py").write_text(REWARDS_SRC)
    sys.path.insert(0, str(mod_dir))
    tmp = tmp_path_factory.mktemp("train")
    cfg_path = tmp / "cfg.yaml"
    cfg_path.write_text(
        yaml.safe_dump(
            {
                "model": {"name_or_path": str(tiny_dir)},
                "data": {"source": "arithmetic"},
                "rollout": {"group_size": 4, "max_new_tokens": 8},
                "rewards": {"accuracy": 1.0, "soft_format": 0.5, LENGTH: 0.5},
                "train": {"max_steps": 4, "prompts_per_step": 2, "lr": 1e-2, "progress": False},
            }
        )
    )
    cfg = load_config(
        cfg_path,
        [f"output_dir={tmp / 'run'}", "train.save_every=1", "train.keep_last=2", "train.tensorboard=true", "train.log_all_samples=true"],
    )
    try:
        yield cfg, train(cfg)
    finally:
        sys.path.remove(str(mod_dir))


def test_config_yaml_round_trips(run):
    cfg, run_dir = run
    assert load_config(run_dir / "config.yaml") == cfg


def test_metrics_one_row_per_step_with_the_documented_keys(run):
    cfg, run_dir = run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    for r in rows:
        missing = [k for k in REQUIRED_KEYS if k not in r]
        missing += [f"rewards/{n}/mean" for n in cfg.rewards if f"rewards/{n}/mean" not in r]
        assert not missing, missing
        assert r["tokens_generated"] == pytest.approx(r["completion_length/mean"] * 2 * 4)
        assert r["completion_length/max"] <= 8 and 0 <= r["truncated_frac"] <= 1
        assert r["lr"] == pytest.approx(1e-2)
        # the total is the weighted sum of the parts
        total = sum(w * r[f"rewards/{n}/mean"] for n, w in cfg.reward_weights.items())
        assert r["reward/mean"] == pytest.approx(total)
    assert any(r["reward/std"] > 0 and r["grad_norm"] > 0 for r in rows)


def test_samples_jsonl(run):
    _, run_dir = run
    rows = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 4 * 2 * 4  # steps x prompts x group (train.log_all_samples=true)
    assert {r["step"] for r in rows} == {1, 2, 3, 4}
    r = rows[0]
    assert {"prompt", "completion", "reward", "advantage", "truncated", f"reward/{LENGTH}"} <= set(r)
    # group-normalised advantages sum to ~0 within each group of 4
    for i in range(0, len(rows), 4):
        assert abs(sum(x["advantage"] for x in rows[i : i + 4])) < 1e-4


def test_curves_png(run):
    _, run_dir = run
    assert is_png(run_dir / "curves.png")


def test_checkpoints_are_hf_loadable_and_keep_last_is_respected(run):
    from transformers import AutoModelForCausalLM

    _, run_dir = run
    ckpts = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert ckpts == ["step-3", "step-4"]  # save_every=1, keep_last=2
    for name, step in (("step-3", 3), ("step-4", 4)):
        path = run_dir / "checkpoints" / name
        model = AutoModelForCausalLM.from_pretrained(path)
        assert model.config.model_type == "llama"
        state = load_trainer_state(path)
        assert state["step"] == step
        assert state["data"]["index"] == 2 * step  # the prompt cursor: 2 prompts per step
        assert {"optimizer", "scheduler", "rng"} <= set(state)
    final = AutoModelForCausalLM.from_pretrained(run_dir / "final")
    last = AutoModelForCausalLM.from_pretrained(run_dir / "checkpoints" / "step-4")
    start = AutoModelForCausalLM.from_pretrained(load_config(run_dir / "config.yaml").model.name_or_path)
    fsd, lsd, ssd = final.state_dict(), last.state_dict(), start.state_dict()
    assert all(torch.equal(fsd[k], lsd[k]) for k in fsd)
    assert not all(torch.equal(fsd[k], ssd[k]) for k in fsd)  # training changed the weights


def test_run_state_and_tensorboard(run):
    _, run_dir = run
    state = json.loads((run_dir / "run_state.json").read_text())
    assert state["status"] == "completed" and state["step"] == 4
    assert state["last_checkpoint"].endswith("step-4")
    events = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    assert [e.step for e in acc.Scalars("reward/mean")] == [1, 2, 3, 4]


def test_output_dir_holding_a_run_is_refused_without_resume(run):
    cfg, run_dir = run
    before = {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()}
    with pytest.raises(TrainingError, match=r"already holds a run; resume it with `r1kit grpo --resume"):
        train(cfg)
    assert {p.name: p.stat().st_mtime_ns for p in run_dir.iterdir()} == before


def test_samples_default_to_the_extremes_of_each_step():
    from r1kit.grpo.train import StepResult, _sample_rows
    from r1kit.types import Group, Sample

    groups = [
        Group(Sample("p1", "<think>"), [1], [[5], [6, 7]], ["a", "b"], [False, True]),
        Group(Sample("p2", "<think>"), [2], [[8], [9]], ["c", "d"], [False, False]),
    ]
    res = StepResult(groups, torch.tensor([0.5, 1.0, 0.0, 1.0]), {"accuracy": [0.0, 1.0, 0.0, 1.0]}, 0, 0, 0.0, 0, 0, 5)
    adv = torch.tensor([-1.0, 1.0, -1.0, 1.0])
    rows = _sample_rows(7, res, adv, log_all=False)
    assert [(r["kind"], r["completion"], r["reward"]) for r in rows] == [("highest", "<think>b", 1.0), ("lowest", "<think>c", 0.0)]
    assert rows[0]["reward/accuracy"] == 1.0 and rows[0]["truncated"] and rows[0]["completion_tokens"] == 2
    assert len(_sample_rows(7, res, adv, log_all=True)) == 4


def test_a_reward_that_hangs_is_cut_off_and_training_continues(tmp_path, tiny_dir):
    """A reward that never returns costs its deadline, scores 0, is counted, and the run finishes."""
    import time
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent / "rewards"))
    cfg = load_config(
        None,
        [
            f"model.name_or_path={tiny_dir}",
            f"output_dir={tmp_path / 'run'}",
            "rewards={soft_format: 1.0, hanging_rewards:sleep_forever: 1.0}",
            "reward_runtime.timeout_s=0.5",
            "reward_runtime.batch_timeout_s=1.0",
            "train.diagnostic_rewards=[]",  # only the two rewards under test are scored
            "rollout.group_size=2",
            "rollout.max_new_tokens=4",
            "train.prompts_per_step=1",
            "train.max_steps=2",
            "train.progress=false",
        ],
    )
    start = time.monotonic()
    run_dir = train(cfg)
    elapsed = time.monotonic() - start
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["reward/timeouts"] == 2 and r["rewards/hanging_rewards:sleep_forever/mean"] == 0.0 for r in rows), [(r["reward/timeouts"], r["rewards/hanging_rewards:sleep_forever/mean"]) for r in rows]
    assert json.loads((run_dir / "run_state.json").read_text())["status"] == "completed"
    assert elapsed < 2 * (1.0 + 1.0) + 20  # two steps, each cut off within its batch deadline + 1 s


def test_informative_groups_keeps_the_first_groups_with_a_signal():
    from r1kit.grpo.train import informative_groups

    groups = ["g0", "g1", "g2", "g3"]  # only their order matters here
    totals = [1.0, 1.0, 0.0, 1.0, 0.5, 0.5, 1.0, 0.0]  # G = 2: g0 and g2 are flat
    per_reward = {"accuracy": [1, 1, 0, 1, 0, 0, 1, 0]}
    kept, kept_totals, columns, dropped = informative_groups(groups, totals, per_reward, 2, want=4)
    assert kept == ["g1", "g3"] and kept_totals == [0.0, 1.0, 1.0, 0.0] and dropped == 2
    assert columns == {"accuracy": [0, 1, 1, 0]}
    kept, _, _, dropped = informative_groups(groups, totals, per_reward, 2, want=1)
    assert kept == ["g1"] and dropped == 2  # all flat groups are counted, even past `want`
