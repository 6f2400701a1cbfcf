"""`r1kit pipeline`: stages chained by path, resumable stage by stage, `--from`, failures named.
Fast tests on tiny random models; the shipped CPU pipeline end to end on the bundled model."""

from __future__ import annotations

import json
import os
import sys

import pytest
import yaml
from transformers import AutoModelForCausalLM

from r1kit.cli import main
from r1kit.config import ConfigError, load_config
from r1kit.pipeline import MARKER, PipelineError, resolve, run
from r1kit.rundir import PAUSE_ENV
from r1kit.testing import run_until_then_sigkill, save_tiny


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipe")
    return save_tiny(root / "qwen", "qwen2"), save_tiny(root / "llama", "llama")


def pipeline_yaml(tmp_path, models, **changes) -> str:
    teacher, student = models
    cfg = {
        "stage": "pipeline", "output_dir": str(tmp_path / "run"), "model": str(teacher), "student": str(student),
        "stages": [
            {"name": "examples", "kind": "worked_examples", "config": {"num_problems": 12}},
            {"name": "cold_start", "kind": "sft",
             "config": {"data": {"format": "trace"}, "train": {"num_epochs": 2, "batch_size": 4, "lr": 5e-3,
                                                                 "save_every": 2, "progress": False}}},
            {"name": "student", "kind": "distill", "data_from": "examples",
             "config": {"train": {"max_steps": 2, "batch_size": 4, "lr": 5e-3, "progress": False}}},
        ],
    }
    for dotted, value in changes.items():
        node = cfg
        *parents, last = dotted.split("/")
        for p in parents:
            node = node[int(p)] if isinstance(node, list) else node[p]
        node[last] = value
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_stages_chain_by_path_and_a_finished_pipeline_is_not_rerun(tmp_path, models, capsys):
    path = pipeline_yaml(tmp_path, models)
    steps = resolve(load_config(path, stage="pipeline"))
    run_dir = tmp_path / "run"
    assert [(s.stage.name, s.model_in, s.data_in) for s in steps] == [
        ("examples", str(models[0]), None),
        ("cold_start", str(models[0]), str(run_dir / "examples" / "traces.jsonl")),
        ("student", str(models[1]), str(run_dir / "examples" / "traces.jsonl")),  # distill: the student
    ]
    assert main(["pipeline", path]) == 0
    table = capsys.readouterr().out
    assert "cold_start" in table and "student" in table and str(run_dir / "student" / "final") in table
    rows = [json.loads(x) for x in (run_dir / "examples" / "traces.jsonl").read_text().splitlines()]
    assert len(rows) == 12 and rows[0]["reasoning"] == f"{rows[0]['problem'][8:-1]} = {rows[0]['answer']}"
    for name in ("examples", "cold_start", "student"):
        assert (run_dir / name / MARKER).is_file()
    assert AutoModelForCausalLM.from_pretrained(run_dir / "student" / "final").config.model_type == "llama"
    summary = json.loads((run_dir / "summary.json").read_text())
    assert [r["stage"] for r in summary] == ["examples", "cold_start", "student"]
    mtime = (run_dir / "cold_start" / "final" / "model.safetensors").stat().st_mtime_ns
    _, again = run(load_config(path, stage="pipeline"), progress=False)  # nothing left to do
    assert again == summary and (run_dir / "cold_start" / "final" / "model.safetensors").stat().st_mtime_ns == mtime
    # --from reruns that stage and the ones after it, not the ones before
    before = (run_dir / "examples" / "traces.jsonl").stat().st_mtime_ns
    assert main(["pipeline", path, "--from", "cold_start"]) == 0
    assert (run_dir / "cold_start" / "final" / "model.safetensors").stat().st_mtime_ns != mtime
    assert (run_dir / "examples" / "traces.jsonl").stat().st_mtime_ns == before
    # a finished stage whose config changed is not silently reused
    changed = pipeline_yaml(tmp_path, models, **{"stages/1/config/train/lr": 1e-3})
    with pytest.raises(PipelineError, match="stage 'cold_start' finished with another config.*--from cold_start"):
        run(load_config(changed, stage="pipeline"), progress=False)


def test_a_killed_stage_resumes_from_its_checkpoint(tmp_path, models):
    path = pipeline_yaml(tmp_path, models)
    env = dict(os.environ, **{PAUSE_ENV: "2"})
    rc = run_until_then_sigkill([sys.executable, "-m", "r1kit.cli", "pipeline", path], env, tmp_path / "log",
                                "paused after the step-2 checkpoint")
    assert rc == -9
    stage = tmp_path / "run" / "cold_start"
    assert (stage / "checkpoints" / "step-2").is_dir() and not (stage / MARKER).exists()
    assert (tmp_path / "run" / "examples" / MARKER).is_file()
    run(load_config(path, stage="pipeline"), progress=False)
    metrics = [json.loads(x) for x in (stage / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in metrics] == [1, 2, 3, 4, 5, 6]  # steps 1-2 kept, 3-6 after the resume
    assert json.loads((stage / "run_state.json").read_text())["status"] == "completed"


def test_a_failing_stage_is_named_and_earlier_outputs_stay(tmp_path, models, capsys):
    path = pipeline_yaml(tmp_path, models, **{"stages/2/config/data": {"format": "messages"}})
    assert main(["pipeline", path]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("r1kit: error: pipeline stage 'student' (distill) failed: DataError:") and "messages" in err
    assert (tmp_path / "run" / "cold_start" / MARKER).is_file() and not (tmp_path / "run" / "student" / MARKER).exists()


@pytest.mark.parametrize("change, message", [
    ({"stages/1/config/train/lr": 0}, r"stages\[1\] \(cold_start\): train.lr: must be > 0"),
    ({"stages/2/data_from": "nope"}, r"stages\[2\].data_from: 'nope' is not a stage before 'student'"),
    ({"stages/1/kind": "sftt"}, r"kind: 'sftt' is not one of"),
    ({"stages/0/config": {"num_problem": 3}}, r"stages\[0\] \(examples\): config: unknown key 'num_problem'"),
    ({"stages/1/name": "examples"}, r"the name 'examples' is used twice"),
])
def test_every_stage_config_is_checked_before_anything_runs(tmp_path, models, change, message):
    with pytest.raises(ConfigError, match=message):
        resolve(load_config(pipeline_yaml(tmp_path, models, **change), stage="pipeline"))
    assert not (tmp_path / "run").exists()


def test_a_stage_without_data_is_a_config_error(tmp_path, models):
    path = pipeline_yaml(tmp_path, models, **{"stages/0/skip": True})
    with pytest.raises(ConfigError, match=r"stages\[1\] \(cold_start\): a sft stage needs data"):
        resolve(load_config(path, stage="pipeline"))


@pytest.mark.slow
def test_the_cpu_pipeline_runs_end_to_end_on_the_bundled_model(tmp_path, capsys):
    assert main(["pipeline", "configs/r1_pipeline_cpu.yaml", f"output_dir={tmp_path / 'run'}"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert [r["stage"] for r in summary] == ["start", "cold_start_data", "cold_start", "rl", "traces", "kept",
                                             "rejection_sft", "student"]
    assert all("arithmetic" in r["eval"] for r in summary if r["kind"] in ("model", "sft", "grpo", "distill"))
    report = json.loads((tmp_path / "run" / "kept" / "kept.report.json").read_text())
    assert report["read"] == 64 and report["kept"] > 0
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "student" / "final")
    assert student.config.model_type == "llama"
    assert "arithmetic pass@1" in out
