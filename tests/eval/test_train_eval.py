"""Held-out evaluation during GRPO training, curves of several runs, and the run report."""

import json

import pytest
import torch
import yaml
from safetensors.torch import load_file

from r1kit.cli import main
from r1kit.config import load_config
from r1kit.eval.plots import PANELS, plot_runs, read_reference, run_name
from r1kit.eval.report import write_report
from r1kit.grpo.train import resume_config, train
from r1kit.logging import read_jsonl

EVAL = {"datasets": [{"name": "arithmetic", "num_problems": 3, "seed": 99}], "every": 2, "max_new_tokens": 4}


def cfg(tiny_dir, out, **extra):
    tree = {
        "name": extra.pop("name", None),
        "output_dir": str(out),
        "model": {"name_or_path": str(tiny_dir)},
        "data": {"source": "arithmetic"},
        "rollout": {"group_size": 4, "max_new_tokens": 8},
        "rewards": {"accuracy": 1.0, "tag_count": 0.5},
        "train": {"max_steps": 4, "prompts_per_step": 2, "save_every": 2, "lr": 1e-2, "progress": False},
        **extra,
    }
    return load_config(None, [], stage="grpo", options=tree)


def training_only(row):
    return {k: v for k, v in row.items() if not k.startswith(("time/", "eval/"))}


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_dir):
    root = tmp_path_factory.mktemp("runs")
    with_eval = train(cfg(tiny_dir, root / "with_eval", eval=EVAL, name="tiny with eval"))
    without = train(cfg(tiny_dir, root / "without"))
    return with_eval, without


def test_eval_is_logged_every_n_steps_and_leaves_training_untouched(runs):
    with_eval, without = runs
    rows, plain = read_jsonl(with_eval / "metrics.jsonl"), read_jsonl(without / "metrics.jsonl")
    assert [r["step"] for r in rows if "eval/arithmetic/pass@1" in r] == [2, 4]
    r2 = next(r for r in rows if r["step"] == 2)
    for key in ("pass@1", "pass@1_se", "maj@1", "format_rate", "length_mean", "clip_rate"):
        assert f"eval/arithmetic/{key}" in r2
    assert r2["time/eval"] > 0
    results = json.loads((with_eval / "eval" / "step-4" / "results.json").read_text())
    assert results["arithmetic"]["pass@1"] == rows[-1]["eval/arithmetic/pass@1"]
    assert results["arithmetic"]["protocol"]["name"] == "greedy" and results["arithmetic"]["k"] == 1
    assert len(read_jsonl(with_eval / "eval" / "step-2" / "arithmetic.problems.jsonl")) == 3
    # the evaluation draws from its own seeds: the training stream, the metrics and the weights
    # are exactly those of the run without evaluation
    assert [training_only(r) for r in rows] == [training_only(r) for r in plain]
    a, b = load_file(with_eval / "final" / "model.safetensors"), load_file(without / "final" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_with_eval_on_is_exact(runs, tmp_path, tiny_dir):
    with_eval, _ = runs
    short = cfg(tiny_dir, tmp_path / "resumed", eval=EVAL, name="tiny with eval")
    short.train.max_steps = 2
    train(short)
    run_dir = train(resume_config(tmp_path / "resumed", ["train.max_steps=4"]), resume=True)
    strip = lambda r: {k: v for k, v in r.items() if not k.startswith("time/")}  # noqa: E731
    assert [strip(r) for r in read_jsonl(run_dir / "metrics.jsonl")] == [strip(r) for r in read_jsonl(with_eval / "metrics.jsonl")]


def test_panels_plot_several_runs_with_reference_markers(runs, tmp_path):
    with_eval, without = runs
    rows = read_jsonl(with_eval / "metrics.jsonl")
    (label, steps, values), = PANELS["eval pass@1"](rows)
    assert (label, steps) == ("arithmetic", [2, 4]) and len(values) == 2
    assert [s[0] for s in PANELS["reward per reward (mean)"](rows)] == ["accuracy", "tag_count"]
    assert run_name(with_eval) == "tiny with eval" and run_name(without / "final") == "without"
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({"reference": {"source": "paper", "before": {"arithmetic": 10.0},
                                                    "after": {"arithmetic": 50.0}}}))
    assert read_reference(recipe)["after"] == {"arithmetic": 50.0}
    out = plot_runs([with_eval, without], tmp_path / "both.png", read_reference(recipe))
    assert out.stat().st_size > 10_000 and out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(with_eval), str(without), "--out", str(tmp_path / "cli.png"), "--reference", str(recipe)]) == 0
    assert (tmp_path / "cli.png").is_file()
    (tmp_path / "empty.yaml").write_text("a: 1\n")
    assert main(["plot", str(with_eval), "--reference", str(tmp_path / "empty.yaml")]) == 2


def test_report_has_config_curves_eval_table_metrics_and_samples(runs):
    with_eval, _ = runs
    report = write_report(with_eval).read_text()
    assert report.startswith("# tiny with eval\n")
    assert "![curves](curves.png)" in report and (with_eval / "curves.png").is_file()
    assert "From `eval/step-4/results.json`" in report and "arithmetic" in report
    assert "| `reward/mean` |" in report and "| metric | step 1 | step 4 |" in report
    assert "### Highest reward" in report and "### Lowest reward" in report
    assert "```yaml\nstage: grpo\nname: tiny with eval" in report
