"""``r1kit grpo CONFIG [k=v ...]``, ``r1kit grpo --resume RUN_DIR [k=v ...]``, ``r1kit plot RUN_DIR``."""

import contextlib
import io
import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from r1kit import cli
from r1kit.config import load_config

REWARDS_SRC = """
def length(prompts, completions, **columns):
    return [len(c) / 10.0 for c in completions]
"""


def is_png(path):
    data = Path(path).read_bytes()
    return (
        data[:8] == b"\x89PNG\r\n\x1a\n"
        and data[12:16] == b"IHDR"
        and min(struct.unpack(">II", data[16:24])) > 100
        and data[-8:-4] == b"IEND"
    )


def steps(run_dir):
    return [json.loads(line)["step"] for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def cfg_path(tmp_path_factory, tiny_dir):
    mods = tmp_path_factory.mktemp("mods")
    (mods / "r1kit_test_rewards_cli.py").write_text(REWARDS_SRC)
    sys.path.insert(0, str(mods))
    path = tmp_path_factory.mktemp("cfg") / "cfg.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "model": {"name_or_path": str(tiny_dir)},
                "data": {"source": "arithmetic"},
                "rollout": {"group_size": 4, "max_new_tokens": 8},
                "rewards": {"accuracy": 1.0, "soft_format": 0.5, "r1kit_test_rewards_cli:length": 0.5},
                "train": {"max_steps": 10, "prompts_per_step": 2, "save_every": 2, "lr": 1e-2, "progress": False},
            }
        )
    )
    yield path
    sys.path.remove(str(mods))


@pytest.fixture(scope="module")
def run(cfg_path, tmp_path_factory):
    """``r1kit grpo CFG output_dir=... train.max_steps=4``, in-process; (run_dir, rc, stdout)."""
    run_dir = tmp_path_factory.mktemp("runs") / "run"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = cli.main(["grpo", str(cfg_path), f"output_dir={run_dir}", "train.max_steps=4"])
    return run_dir, rc, out.getvalue()


@pytest.fixture
def run_copy(run, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(run[0], dst)
    return dst


def test_grpo_runs_with_overrides(run, cfg_path):
    run_dir, rc, out = run
    assert rc == 0
    assert f"[r1kit] run directory: {run_dir}" in out and "4 steps" in out
    assert steps(run_dir) == [1, 2, 3, 4]
    cfg = load_config(run_dir / "config.yaml")
    assert cfg.train.max_steps == 4 and cfg.output_dir == str(run_dir)
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == ["step-2", "step-4"]


def test_resume_with_more_steps_continues_from_the_last_checkpoint(run_copy, capsys):
    before = (run_copy / "metrics.jsonl").read_text().splitlines()
    assert cli.main(["grpo", "--resume", str(run_copy), "train.max_steps=6"]) == 0
    assert f"run directory: {run_copy}" in capsys.readouterr().out
    assert steps(run_copy) == [1, 2, 3, 4, 5, 6]
    assert (run_copy / "metrics.jsonl").read_text().splitlines()[:4] == before
    assert load_config(run_copy / "config.yaml").train.max_steps == 6
    assert sorted(p.name for p in (run_copy / "checkpoints").iterdir()) == ["step-4", "step-6"]
    state = json.loads((run_copy / "run_state.json").read_text())
    assert state["status"] == "completed" and state["step"] == 6


@pytest.mark.parametrize(
    "argv",
    [
        ["grpo", "--resume", "{run}", "train.max_steps=5", "seed=0"],
        ["grpo", "train.max_steps=5", "--resume", "{run}", "seed=0"],
        ["grpo", "--resume={run}", "seed=0", "train.max_steps=5"],
    ],
)
def test_resume_argv_forms_map_words_to_overrides(argv, run_copy, monkeypatch):
    import r1kit.grpo.train as train_mod

    seen = {}

    def fake_train(cfg, resume=False):
        seen.update(cfg=cfg, resume=resume)
        return Path(cfg.output_dir)

    monkeypatch.setattr(train_mod, "train", fake_train)
    monkeypatch.setattr(train_mod, "summarize", lambda run_dir: "ok")
    assert cli.main([a.format(run=run_copy) for a in argv]) == 0
    assert seen["resume"] is True
    assert seen["cfg"].output_dir == str(run_copy)
    assert seen["cfg"].train.max_steps == 5 and seen["cfg"].seed == 0
    assert seen["cfg"].rollout.group_size == 4  # the rest comes from the run's config.yaml


def test_plot_writes_curves_png(run_copy, capsys):
    (run_copy / "curves.png").unlink()
    assert cli.main(["plot", str(run_copy)]) == 0
    assert capsys.readouterr().out.strip() == str(run_copy / "curves.png")
    assert is_png(run_copy / "curves.png")
    other = run_copy / "other.png"
    assert cli.main(["plot", str(run_copy), "--out", str(other)]) == 0
    assert is_png(other)


def _expect_error(capsys, argv, *fragments):
    rc = cli.main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("r1kit: error: "), err
    for f in fragments:
        assert f in lines[0], lines[0]


def test_errors_are_one_line_with_exit_code_2(cfg_path, run, tmp_path, capsys):
    out = tmp_path / "out"
    o = f"output_dir={out}"
    _expect_error(capsys, ["grpo", str(cfg_path), o, "train.max_stpes=3"],
                  "'train.max_stpes'", "did you mean 'train.max_steps'")
    _expect_error(capsys, ["grpo", str(cfg_path), o, "rollout.temprature=0.5"], "did you mean 'rollout.temperature'")
    _expect_error(capsys, ["grpo", str(tmp_path / "nope.yaml")], "config file not found")
    _expect_error(capsys, ["grpo"], "give a CONFIG file or --resume RUN_DIR")
    _expect_error(capsys, ["grpo", "--resume", str(tmp_path)], "no config.yaml there")
    _expect_error(capsys, ["grpo", "--resume", str(run[0]), str(cfg_path)], "is not a key=value override")
    _expect_error(capsys, ["grpo", str(cfg_path), "--bogus"], "unrecognized arguments: --bogus")
    _expect_error(capsys, ["plot", str(tmp_path), "--bogus"], "unrecognized arguments: --bogus")
    _expect_error(capsys, ["frobnicate"], "invalid choice: 'frobnicate'")
    _expect_error(capsys, ["plot", str(tmp_path)], "no metrics")
    _expect_error(capsys, ["fetch-model", "gpt-17"], "unknown builtin model 'gpt-17'")
    _expect_error(capsys, ["grpo", str(cfg_path), o, "model.name_or_path=/no/such/model"],
                  "model path '/no/such/model' does not exist")
    _expect_error(capsys, ["grpo", str(cfg_path), f"output_dir={run[0]}"], "already holds a run", "--resume")
    assert not out.exists()  # none of these created the output directory


def test_python_dash_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "r1kit.cli", "grpo", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--resume RUN_DIR" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "r1kit.cli", "nope"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("r1kit: error: ")


def test_config_command_prints_resolved_yaml(capsys):
    import yaml

    from r1kit.cli import main

    assert main(["config", "configs/r1zero_cpu.yaml", "train.lr=2e-5", "seed=7"]) == 0
    tree = yaml.safe_load(capsys.readouterr().out)
    assert tree["train"]["lr"] == 2e-5 and tree["seed"] == 7 and tree["data"]["source"] == "arithmetic"
    assert main(["config", "rollout.group_size=3"]) == 0  # defaults + overrides, no file
    assert yaml.safe_load(capsys.readouterr().out)["rollout"]["group_size"] == 3
    assert main(["config", "train.max_stesp=3"]) == 2
    assert "train.max_steps" in capsys.readouterr().err


def test_module_function_rewards_resolve_from_the_working_directory(tmp_path, monkeypatch, capsys):
    import sys

    from r1kit.cli import main

    (tmp_path / "my_cwd_rewards.py").write_text(
        "def brevity(prompts, completions, **kw):\n    return [1.0 for _ in completions]\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    assert main(["config", "rewards={my_cwd_rewards:brevity: 0.5}"]) == 0
    assert "my_cwd_rewards:brevity: 0.5" in capsys.readouterr().out


def test_resume_applies_an_lr_override(tmp_path, tiny_dir):
    import json

    from r1kit.cli import main

    out = tmp_path / "run"
    args = ["grpo", "configs/r1zero_cpu.yaml", f"model.name_or_path={tiny_dir}", f"output_dir={out}",
            "train.max_steps=2", "train.save_every=1", "train.prompts_per_step=1", "rollout.group_size=2",
            "rollout.max_new_tokens=4", "train.progress=false", "train.warmup_steps=0", "eval.datasets=[]"]
    assert main(args) == 0
    assert main(["grpo", "--resume", str(out), "train.max_steps=3", "train.lr=3e-4"]) == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in rows] == [1e-5, 1e-5, 3e-4]
