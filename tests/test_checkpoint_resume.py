"""Atomic checkpoints and exact resume: a killed-and-resumed run equals an uninterrupted one."""

import json
import os
import random
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from r1kit import checkpoint as ck
from r1kit.config import GRPOSection, TrainSection, load_config
from r1kit.grpo import train as train_mod
from r1kit.grpo.learner import Learner
from r1kit.grpo.train import PAUSE_ENV, resume_config, train
from r1kit.testing import run_until_then_sigkill

REWARDS_SRC = """
def length(prompts, completions, **columns):
    return [len(c) / 10.0 for c in completions]


def parity(prompts, completions, **columns):
    return [float(len(c) % 2) for c in completions]
"""


@pytest.fixture(scope="module")
def rewards_dir(tmp_path_factory):
    """A user reward module on sys.path (and PYTHONPATH for subprocesses): rewards with spread on a
    random tiny model, so advantages are non-zero and the weights really change."""
    d = tmp_path_factory.mktemp("mods")
    (d / "r1kit_test_rewards_resume.py").write_text(REWARDS_SRC)
    sys.path.insert(0, str(d))
    yield d
    sys.path.remove(str(d))


def write_cfg(path, tiny_dir, **sections):
    tree = {
        "model": {"name_or_path": str(tiny_dir)},
        "data": {"source": "arithmetic"},
        "rollout": {"group_size": 4, "max_new_tokens": 8},
        "rewards": {"accuracy": 1.0, "r1kit_test_rewards_resume:length": 0.5},
        "train": {"max_steps": 4, "prompts_per_step": 2, "save_every": 2, "lr": 1e-2, "progress": False},
    }
    for k, v in sections.items():  # merged into the section; `rewards` is replaced whole
        tree[k] = v if k == "rewards" else {**tree.get(k, {}), **v}
    path.write_text(yaml.safe_dump(tree))
    return path


def rows(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def without_times(row):
    return {k: v for k, v in row.items() if not k.startswith("time/")}


def weights(d):
    d = Path(d)
    f = d / "adapter_model.safetensors"
    return load_file(f if f.is_file() else d / "model.safetensors")


def assert_same_run(a, b, steps):
    ra, rb = rows(a / "metrics.jsonl"), rows(b / "metrics.jsonl")
    assert [r["step"] for r in rb] == list(range(1, steps + 1))
    for x, y in zip(ra, rb):
        assert without_times(x) == without_times(y), f"step {x['step']} differs"
    assert rows(a / "samples.jsonl") == rows(b / "samples.jsonl")
    wa, wb = weights(a / "final"), weights(b / "final")
    assert wa.keys() == wb.keys() and wa
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


# ---- checkpoint.py units ------------------------------------------------------------------------


def test_rng_state_round_trip():
    torch.manual_seed(1), np.random.seed(1), random.seed(1)
    state = ck.rng_state()
    first = (torch.rand(3), np.random.rand(3), random.random())
    torch.rand(5), np.random.rand(7), random.random()
    ck.set_rng_state(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(first[0], again[0]) and np.array_equal(first[1], again[1]) and first[2] == again[2]


def test_save_list_prune_and_ignore_incomplete(tmp_path, model, tok):
    learner = Learner(model, None, GRPOSection(), TrainSection(), 8)
    save = lambda step, keep: ck.save_checkpoint(  # noqa: E731
        tmp_path, step, model, tok, learner.optimizer, learner.scheduler, {"index": step}, keep
    )
    assert ck.latest_checkpoint(tmp_path) is None
    for step in (1, 2, 3):
        save(step, keep=2)
    assert [s for s, _ in ck.list_checkpoints(tmp_path)] == [2, 3]
    root = tmp_path / "checkpoints"
    # a kill mid-write leaves .tmp-step-N (even one with its trainer_state written); a step dir
    # without trainer_state.pt is not complete either
    (root / ".tmp-step-9").mkdir()
    shutil.copy(root / "step-3" / ck.STATE_FILE, root / ".tmp-step-9" / ck.STATE_FILE)
    (root / "step-7").mkdir()
    (root / "step-7" / "model.safetensors").write_bytes(b"\0")
    assert ck.latest_checkpoint(tmp_path) == root / "step-3"
    assert ck.load_trainer_state(root / "step-3")["data"] == {"index": 3}
    # re-saving a step replaces it whole; a stale .tmp of the same step is cleared first
    (root / ".tmp-step-3").mkdir()
    (root / ".tmp-step-3" / "junk").write_text("x")
    save(3, keep=5)
    assert not (root / ".tmp-step-3").exists() and not (root / "step-3" / "junk").exists()
    assert not list(root.glob(".old-step-*"))
    assert ck.load_trainer_state(root / "step-3")["step"] == 3


def test_load_policy_weights_rejects_a_mismatched_checkpoint(tmp_path, model, tok):
    from r1kit.testing import tiny_model

    model.save_pretrained(tmp_path / "a")
    other = tiny_model(tok, "llama", seed=1, hidden=48)
    with pytest.raises(Exception, match="size mismatch|does not match"):
        ck.load_policy_weights(other, tmp_path / "a")
    with pytest.raises(FileNotFoundError, match="no model weights"):
        ck.load_policy_weights(model, tmp_path)
    same = tiny_model(tok, "llama", seed=5)
    ck.load_policy_weights(same, tmp_path / "a")
    assert all(torch.equal(p, q) for p, q in zip(same.state_dict().values(), model.state_dict().values()))


# ---- exact resume after SIGKILL -----------------------------------------------------------------


def test_sigkill_after_checkpoint_then_resume_is_exact(tmp_path, tiny_dir, rewards_dir):
    cfg_path = write_cfg(tmp_path / "cfg.yaml", tiny_dir)
    ref_dir, killed_dir = tmp_path / "ref", tmp_path / "killed"
    train(load_config(cfg_path, [f"output_dir={ref_dir}"]))

    env = dict(os.environ)
    env[PAUSE_ENV] = "2"
    env["PYTHONPATH"] = os.pathsep.join([str(rewards_dir), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())  # same float reductions as this process
    cmd = [sys.executable, "-m", "r1kit.cli", "grpo", str(cfg_path), f"output_dir={killed_dir}"]
    code = run_until_then_sigkill(cmd, env, tmp_path / "killed.log", "paused after the step-2 checkpoint")
    assert code == -signal.SIGKILL
    assert [r["step"] for r in rows(killed_dir / "metrics.jsonl")] == [1, 2]
    assert not (killed_dir / "final").exists()

    # a second kill, during the step-4 checkpoint write, would have left this behind: never used
    partial = killed_dir / "checkpoints" / ".tmp-step-4"
    shutil.copytree(killed_dir / "checkpoints" / "step-2", partial)
    (partial / "model.safetensors").write_bytes(b"\0" * 100)
    assert ck.latest_checkpoint(killed_dir) == killed_dir / "checkpoints" / "step-2"

    train(resume_config(killed_dir), resume=True)
    assert_same_run(ref_dir, killed_dir, 4)
    assert not partial.exists()  # replaced by the real step-4 checkpoint
    assert ck.load_trainer_state(killed_dir / "checkpoints" / "step-4")["step"] == 4
    state = json.loads((killed_dir / "run_state.json").read_text())
    assert state["status"] == "completed" and state["step"] == 4
    assert not all(torch.equal(v, weights(tiny_dir)[k]) for k, v in weights(killed_dir / "final").items())


# ---- LoRA + dynamic sampling, crashed in-process and resumed -------------------------------------


def test_lora_dynamic_sampling_crash_and_resume_is_exact(tmp_path, tiny_dir, rewards_dir, monkeypatch):
    from transformers import AutoModelForCausalLM

    cfg_path = write_cfg(
        tmp_path / "cfg.yaml",
        tiny_dir,
        model={"lora": {"enabled": True, "r": 4, "alpha": 8}},
        rollout={"group_size": 2},
        rewards={"r1kit_test_rewards_resume:parity": 1.0},
        grpo={"dynamic_sampling": True, "max_resample_rounds": 2, "beta": 0.05},
    )
    ref_dir, crashed_dir = tmp_path / "ref", tmp_path / "crashed"
    train(load_config(cfg_path, [f"output_dir={ref_dir}"]))
    ref_rows = rows(ref_dir / "metrics.jsonl")
    # the test is only meaningful if groups were dropped and refilled after the checkpoint
    assert sum(r["dynamic_sampling/dropped_groups"] for r in ref_rows[2:]) > 0
    # tokens_generated counts the refill rounds too: more than the kept completions hold
    for r in ref_rows:
        if r["dynamic_sampling/rounds"] > 0:
            kept_tokens = r["completion_length/mean"] * 2 * 2  # prompts_per_step x group_size
            assert r["tokens_generated"] > kept_tokens + 0.5
    assert all(r["kl"] is not None for r in ref_rows) and any(r["kl"] > 0 for r in ref_rows[1:])

    def crash(step):
        if step == 2:
            raise RuntimeError("simulated crash right after the step-2 checkpoint")

    with monkeypatch.context() as m:
        m.setattr(train_mod, "pause_for_tests", crash)
        with pytest.raises(RuntimeError, match="simulated crash"):
            train(load_config(cfg_path, [f"output_dir={crashed_dir}"]))
    state = json.loads((crashed_dir / "run_state.json").read_text())
    assert state["status"] == "failed" and state["step"] == 2
    assert state["last_checkpoint"].endswith("step-2") and "simulated crash" in state["error"]

    ckpt = crashed_dir / "checkpoints" / "step-2"
    assert (ckpt / "adapter_model.safetensors").is_file() and not (ckpt / "model.safetensors").exists()
    # the adapter checkpoint loads as a model (transformers' PEFT integration finds the base)
    assert AutoModelForCausalLM.from_pretrained(ckpt).config.model_type == "llama"

    train(resume_config(crashed_dir), resume=True)
    assert_same_run(ref_dir, crashed_dir, 4)
    lora_b = [v for k, v in weights(crashed_dir / "final").items() if "lora_B" in k]
    assert lora_b and any(v.abs().sum() > 0 for v in lora_b)  # lora_B starts at 0: it trained

