"""rollout.async_steps: the schedule of generation ahead of the learner, and whole runs with it.

The runs use a generator with its own copy of the weights (synced after each update, as a vLLM
engine is), so the tests run on CPU in seconds; tests/rollout/test_vllm_real.py runs vLLM itself.
"""

import copy
import json
import threading

import pytest
import torch
import yaml

from r1kit.checkpoint import latest_checkpoint, load_trainer_state
from r1kit.config import ConfigError, load_config
from r1kit.grpo.ahead import RolloutAhead, staleness
from r1kit.grpo.train import TrainingError, train
from r1kit.rollout.hf import HFRollout

REWARDS_SRC = """
def length(prompts, completions, **columns):
    return [len(c) / 10.0 for c in completions]
"""


# ---- the schedule (no model) ----


def _loop(ahead: RolloutAhead, steps: int, learner=lambda step: None) -> list:
    """The training loop's calls: take, update, settle (then the weights would be synced)."""
    out = []
    for k in range(1, steps + 1):
        out.append((k, ahead.take(k)))
        learner(k)
        ahead.settle()
    ahead.close()
    return out


@pytest.mark.parametrize("K", [0, 1, 2])
def test_each_step_is_generated_from_the_weights_of_update_max_0_step_minus_1_minus_k(K):
    calls = []

    def produce(step, version):
        calls.append((step, version, threading.current_thread() is threading.main_thread()))
        return f"batch {step}"

    taken = _loop(RolloutAhead(produce, K, last_step=6), 6)
    assert [g.result for _, g in taken] == [f"batch {k}" for k in range(1, 7)]  # in order, each once
    assert [(s, v) for s, v, _ in calls] == [(j, max(0, j - 1 - K)) for j in range(1, 7)]
    assert [staleness(k, g.version) for k, g in taken] == [min(k - 1, K) for k in range(1, 7)]
    # K = 0 generates in the caller's thread, when the step needs it; K > 0 in the background
    assert all(main == (K == 0) for *_, main in calls)


def test_the_next_generation_runs_while_the_learner_updates():
    started = {2: threading.Event()}

    def produce(step, version):
        if step in started:
            started[step].set()
        return step

    seen = []
    # the learner's step 1 waits until generation for step 2 has begun: it never does if the two were serial
    _loop(RolloutAhead(produce, 1, 3), 3, learner=lambda k: seen.append(started[2].wait(timeout=60)) if k == 1 else None)
    assert seen == [True]


def test_a_generation_error_is_raised_by_the_step_that_needs_it():
    def produce(step, version):
        if step == 2:
            raise ValueError("reward crashed on step 2's batch")
        return step

    ahead = RolloutAhead(produce, 1, 4)
    assert ahead.take(1).result == 1
    with pytest.raises(ValueError, match="step 2's batch"):
        ahead.take(2)
    ahead.close()


def test_pending_batches_restore_into_a_new_schedule():
    calls = []
    a = RolloutAhead(lambda s, v: calls.append((s, v)) or s, 2, 6)
    a.take(1)
    a.settle()
    pending = a.pending()
    a.close()
    assert sorted(pending) == [2, 3] and [g.version for g in pending.values()] == [0, 0]
    b = RolloutAhead(lambda s, v: calls.append((s, v)) or s, 2, 6)
    b.restore(pending)
    assert b.take(2).result == 2 and b.take(3).result == 3
    b.settle()
    b.close()
    # what was restored is not generated again; step 4 comes from the weights after update 1
    assert calls == [(1, 0), (2, 0), (3, 0), (4, 1), (5, 2)]


# ---- whole runs ----


class OwnWeightsRollout(HFRollout):
    """The HF generator on a copy of the policy: weights change only when synced (like vLLM)."""

    shares_weights = False

    def __init__(self, model, tokenizer, cfg, amp=None):
        super().__init__(copy.deepcopy(model), tokenizer, cfg, amp)

    def sync_weights(self, model, weights=None) -> None:
        with torch.no_grad():
            for mine, theirs in zip(self.model.parameters(), model.parameters(), strict=True):
                mine.copy_(theirs)


@pytest.fixture
def own_weights(monkeypatch):
    """rollout.backend=vllm builds OwnWeightsRollout; hf stays the policy itself."""
    import r1kit.setup

    real = r1kit.setup.build_rollout

    def build(cfg, model, tokenizer, amp=None, **kw):
        return OwnWeightsRollout(model, tokenizer, cfg, amp) if cfg.backend == "vllm" else real(cfg, model, tokenizer, amp, **kw)

    monkeypatch.setattr(r1kit.setup, "build_rollout", build)


@pytest.fixture(scope="module")
def base_cfg(tmp_path_factory, tiny_dir):
    from r1kit.testing import module_on_path

    path = tmp_path_factory.mktemp("cfg") / "cfg.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"name_or_path": str(tiny_dir)},
        "data": {"source": "arithmetic"},
        "rollout": {"group_size": 4, "max_new_tokens": 8},
        "rewards": {"r1kit_test_rewards_ahead:length": 1.0},
        "train": {"max_steps": 4, "prompts_per_step": 2, "lr": 1e-2, "progress": False, "log_all_samples": True},
    }))
    with module_on_path(tmp_path_factory.mktemp("mods"), "r1kit_test_rewards_ahead", REWARDS_SRC):
        yield path


def _train(base_cfg, out, *overrides, resume=False):
    cfg = load_config(base_cfg, [f"output_dir={out}", *overrides])
    return train(cfg, resume=resume)


def _rows(run, name="metrics.jsonl"):
    return [json.loads(x) for x in (run / name).read_text().splitlines()]


def _weights(run):
    from safetensors.torch import load_file

    return load_file(run / "final" / "model.safetensors")


def _max_diff(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def test_async_steps_0_with_its_own_weights_equals_the_synchronous_loop(own_weights, base_cfg, tmp_path):
    sync = _train(base_cfg, tmp_path / "hf")
    own = _train(base_cfg, tmp_path / "own", "rollout.backend=vllm", "rollout.async_steps=0")
    assert _max_diff(_weights(sync), _weights(own)) == 0.0
    assert [r["completion"] for r in _rows(sync, "samples.jsonl")] == [r["completion"] for r in _rows(own, "samples.jsonl")]
    assert all(r["sampling/staleness/max"] == 0 for r in _rows(own))


@pytest.fixture
def one_ahead(own_weights, base_cfg, tmp_path_factory):
    out = tmp_path_factory.mktemp("ahead") / "run"
    return _train(base_cfg, out, "rollout.backend=vllm", "rollout.async_steps=1", "train.save_every=2")


def test_async_steps_1_trains_on_batches_one_update_old(one_ahead, base_cfg, tmp_path):
    rows = _rows(one_ahead)
    assert [(r["sampling/staleness/mean"], r["sampling/staleness/max"]) for r in rows] == [(0, 0), (1, 1), (1, 1), (1, 1)]
    assert all(r["time/rollout_wait"] >= 0 for r in rows)
    # the same prompts in the same steps as the synchronous run: only the weights behind them differ
    sync = _train(base_cfg, tmp_path / "sync")
    prompts = [(r["step"], r["prompt"]) for r in _rows(one_ahead, "samples.jsonl")]
    assert prompts == [(r["step"], r["prompt"]) for r in _rows(sync, "samples.jsonl")]
    # step 2 was generated before update 1: off-policy, so the runs part from step 2 on
    assert _max_diff(_weights(one_ahead), _weights(sync)) > 0


def test_async_steps_1_resumes_exactly(one_ahead, own_weights, base_cfg, tmp_path, monkeypatch):
    """A crash after the step-2 checkpoint, then --resume: the batch generated ahead for step 3 comes
    from the checkpoint, and the run ends as the uninterrupted one did."""
    import r1kit.grpo.learner

    state = load_trainer_state(latest_checkpoint(one_ahead))
    assert state["async_steps"] == 1 and sorted(state["generated_ahead"]) == []  # the last step saves nothing ahead
    step2 = load_trainer_state(one_ahead / "checkpoints" / "step-2")
    assert sorted(step2["generated_ahead"]) == [3] and step2["generated_ahead"][3].version == 1

    out = tmp_path / "crashed"
    real_step = r1kit.grpo.learner.Learner.step
    calls = {"n": 0}

    def crash_at_3(self, batch):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("killed at step 3")
        return real_step(self, batch)

    monkeypatch.setattr(r1kit.grpo.learner.Learner, "step", crash_at_3)
    with pytest.raises(RuntimeError, match="killed at step 3"):
        _train(base_cfg, out, "rollout.backend=vllm", "rollout.async_steps=1", "train.save_every=2")
    monkeypatch.setattr(r1kit.grpo.learner.Learner, "step", real_step)
    with pytest.raises(TrainingError, match="rollout.async_steps=1"):  # the cursor is past the saved batch
        _train(base_cfg, out, "rollout.backend=vllm", "rollout.async_steps=0", "train.save_every=2", resume=True)
    _train(base_cfg, out, "rollout.backend=vllm", "rollout.async_steps=1", "train.save_every=2", resume=True)
    assert _max_diff(_weights(out), _weights(one_ahead)) == 0.0
    keep = ("reward/mean", "loss", "grad_norm", "sampling/staleness/max")
    assert [[r[k] for k in keep] for r in _rows(out)] == [[r[k] for k in keep] for r in _rows(one_ahead)]


def test_async_steps_needs_an_engine_with_its_own_weights(base_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"rollout.async_steps=1 .*rollout.backend"):
        load_config(base_cfg, [f"output_dir={tmp_path}", "rollout.async_steps=1"])
    with pytest.raises(ConfigError, match="async_steps"):
        load_config(base_cfg, [f"output_dir={tmp_path}", "rollout.backend=vllm", "rollout.async_steps=-1"])
