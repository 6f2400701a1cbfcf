"""Failures say what is wrong and never leave a run directory that looks complete."""

import json

import pytest
import torch
import yaml

from r1kit import cli
from r1kit.checkpoint import latest_checkpoint, load_trainer_state
from r1kit.config import ConfigError, load_config
from r1kit.data import DataError
from r1kit.grpo import learner as learner_mod
from r1kit.grpo.train import TrainingError, resume_config, train
from r1kit.models import ModelError


@pytest.fixture
def cfg_path(tmp_path, tiny_dir):
    path = tmp_path / "cfg.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": {"name_or_path": str(tiny_dir)},
                "data": {"source": "arithmetic"},
                "rollout": {"group_size": 2, "max_new_tokens": 4},
                "rewards": {"accuracy": 1.0, "soft_format": 0.5},
                "train": {"max_steps": 4, "prompts_per_step": 2, "save_every": 2, "lr": 1e-3, "progress": False},
            }
        )
    )
    return path


def test_unknown_key_names_it_and_the_closest(cfg_path, tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=r"unknown config key 'train.max_stpes' \(did you mean 'train.max_steps'\?\)"):
        load_config(cfg_path, [f"output_dir={out}", "train.max_stpes=3"])
    assert not out.exists()


def test_missing_dataset_column_names_the_column_and_the_file(cfg_path, tmp_path, capsys):
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": f"What is {i}+1?", "solution": f"#### {i + 1}"}) + "\n"
                            for i in range(3)))
    out = tmp_path / "out"
    cfg = load_config(cfg_path, [f"output_dir={out}", "data.source=dataset", f"data.dataset.path={data}"])
    with pytest.raises(DataError) as e:
        train(cfg)
    assert "'answer'" in str(e.value) and str(data) in str(e.value)
    assert "available columns: question, solution" in str(e.value)
    assert not out.exists()
    # through the CLI: one line, exit code 2
    argv = ["grpo", str(cfg_path), f"output_dir={out}", "data.source=dataset", f"data.dataset.path={data}"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("r1kit: error: ") and "no column 'answer'" in err[-1] and str(data) in err[-1]
    assert not out.exists()


def test_bad_model_path_says_which(cfg_path, tmp_path):
    out = tmp_path / "out"
    missing = tmp_path / "models" / "not-here"
    cfg = load_config(cfg_path, [f"output_dir={out}", f"model.name_or_path={missing}"])
    with pytest.raises(ModelError, match=f"model path '{missing}' does not exist"):
        train(cfg)
    assert not out.exists()


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(cfg_path, tmp_path, monkeypatch):
    from transformers import AutoModelForCausalLM

    real_loss = learner_mod.policy_loss
    calls = []

    def nan_at_step_3(*args, **kwargs):  # one micro-batch per step: call n is step n
        calls.append(1)
        loss, metrics = real_loss(*args, **kwargs)
        return (loss * float("nan") if len(calls) == 3 else loss), metrics

    run_dir = tmp_path / "run"
    monkeypatch.setattr(learner_mod, "policy_loss", nan_at_step_3)
    with pytest.raises(TrainingError) as e:
        train(load_config(cfg_path, [f"output_dir={run_dir}"]))
    monkeypatch.undo()
    step2 = run_dir / "checkpoints" / "step-2"
    assert "step 3" in str(e.value) and "non-finite loss" in str(e.value)
    assert f"last good checkpoint: {step2}" in str(e.value)

    state = json.loads((run_dir / "run_state.json").read_text())
    assert state["status"] == "failed" and state["step"] == 2 and state["last_checkpoint"] == str(step2)
    assert "step 3" in state["error"]
    assert not (run_dir / "final").exists()  # not mistaken for a finished run
    assert [json.loads(r)["step"] for r in (run_dir / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert latest_checkpoint(run_dir) == step2 and load_trainer_state(step2)["step"] == 2
    model = AutoModelForCausalLM.from_pretrained(step2)
    assert all(torch.isfinite(p).all() for p in model.parameters())

    # a resume that does not fit the checkpoint fails before the run's records are rewritten
    records = {n: (run_dir / n).read_text() for n in ("config.yaml", "metrics.jsonl", "samples.jsonl")}
    with pytest.raises(DataError, match="seed"):
        train(resume_config(run_dir, ["seed=1"]), resume=True)
    with pytest.raises(TrainingError, match="does not match the config"):
        train(resume_config(run_dir, ["model.lora.enabled=true"]), resume=True)
    with pytest.raises(TrainingError, match="checkpoint is at step 2, past train.max_steps=1"):
        train(resume_config(run_dir, ["train.max_steps=1"]), resume=True)
    assert {n: (run_dir / n).read_text() for n in records} == records

    # the checkpoint is good: resuming from it finishes the run
    train(resume_config(run_dir), resume=True)
    state = json.loads((run_dir / "run_state.json").read_text())
    assert state["status"] == "completed" and state["step"] == 4 and (run_dir / "final").is_dir()


def test_resume_without_a_complete_checkpoint(cfg_path, tmp_path, capsys):
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints" / ".tmp-step-2").mkdir(parents=True)  # killed during the first save
    (run_dir / "config.yaml").write_text(cfg_path.read_text())
    assert cli.main(["grpo", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"r1kit: error: cannot resume {run_dir}: no complete checkpoint in {run_dir / 'checkpoints'}"
    # and a new run refuses to write over it
    with pytest.raises(TrainingError, match="already holds a run"):
        train(load_config(cfg_path, [f"output_dir={run_dir}"]))


def test_a_run_that_failed_before_its_first_checkpoint_can_be_run_again(tmp_path, tiny_dir, monkeypatch):
    import json

    import r1kit.grpo.learner as learner_mod
    from r1kit.config import load_config
    from r1kit.grpo.train import TrainingError, train

    overrides = [f"model.name_or_path={tiny_dir}", f"output_dir={tmp_path / 'run'}", "train.max_steps=2",
                 "train.save_every=5", "train.prompts_per_step=1", "rollout.group_size=2",
                 "rollout.max_new_tokens=4", "train.progress=false"]
    real = learner_mod.policy_loss
    monkeypatch.setattr(learner_mod, "policy_loss", lambda *a, **k: (real(*a, **k)[0] * float("nan"), real(*a, **k)[1]))
    with pytest.raises(TrainingError, match="step 1"):
        train(load_config(None, overrides))
    state = json.loads((tmp_path / "run" / "run_state.json").read_text())
    assert state["status"] == "failed" and state["last_checkpoint"] is None
    monkeypatch.setattr(learner_mod, "policy_loss", real)
    run_dir = train(load_config(None, overrides))  # same output_dir: allowed, starts over
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
