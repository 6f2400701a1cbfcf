"""Every recipe in configs/recipes/ loads, says where its settings come from, and runs one GRPO
step (with its evaluation) on a tiny random model of the same architecture family."""

import json
from pathlib import Path

import pytest
import yaml

from r1kit.config import load_config
from r1kit.eval.benchmarks import LAYOUTS
from r1kit.grpo.train import train
from r1kit.logging import read_jsonl

ALL_RECIPES = sorted((Path(__file__).resolve().parents[2] / "configs" / "recipes").glob("*.yaml"))
# GRPO recipes; the pipeline recipes (teacher traces -> filter -> student) have their own tests
RECIPES = [p for p in ALL_RECIPES if yaml.safe_load(p.read_text()).get("stage", "grpo") == "grpo"]
# a few rows in each benchmark layout a recipe may evaluate on
LAYOUT_ROWS = {
    "gsm8k": [{"question": "What is 2 + 3?", "answer": "2 + 3 = 5\n#### 5"}] * 2,
    "math500": [{"problem": "Find 1/2 + 1/2.", "answer": "1", "subject": "Algebra", "level": 1, "unique_id": f"t/{i}"}
                for i in range(2)],
    "aime24": [{"id": i, "problem": "Find 3 * 4.", "answer": "12"} for i in range(2)],
    "amc23": [{"id": i, "problem": "Find 3 * 9.", "answer": 27.0} for i in range(2)],
}


def test_there_are_recipes_for_every_published_setup():
    names = {p.stem for p in RECIPES}
    assert {"simplerl_zero_qwen2.5_0.5b", "simplerl_zero_qwen2.5_1.5b", "oat_zero_qwen2.5_math_1.5b",
            "tinyzero_countdown_qwen2.5_3b", "r1zero_llama3.2_1b"} <= names
    assert "r1_distill_qwen" in {p.stem for p in ALL_RECIPES} and "r1_distill_qwen" not in names


@pytest.mark.parametrize("path", ALL_RECIPES, ids=lambda p: p.stem)
def test_recipe_cites_sources_and_records_reference_numbers(path):
    text = path.read_text()
    header = "".join(line for line in text.splitlines(keepends=True) if line.startswith("#"))
    assert "depart" in header.lower() or "no published" in header.lower(), "say where the recipe departs"
    cfg = load_config(path)
    ref = cfg.reference
    assert ref.get("source")
    numbers = {**(ref.get("before") or {}), **(ref.get("after") or {})}
    if numbers:  # every reference dataset is evaluated by the recipe, under the same name
        assert set(numbers) <= {d.name for d in cfg.eval.datasets}
    else:
        assert ref.get("note")


def _tiny_for(name_or_path, tiny_dir, tiny_qwen_dir):
    return tiny_dir if "llama" in name_or_path.lower() else tiny_qwen_dir


@pytest.mark.parametrize("path", RECIPES, ids=lambda p: p.stem)
def test_recipe_runs_one_step_with_a_tiny_model_of_its_family(path, tmp_path, tiny_dir, tiny_qwen_dir):
    cfg = load_config(path)
    overrides = [
        f"model.name_or_path={_tiny_for(cfg.model.name_or_path, tiny_dir, tiny_qwen_dir)}",
        f"output_dir={tmp_path / 'run'}", "rollout.backend=hf", "rollout.max_new_tokens=8", "train.max_steps=1",
        "train.prompts_per_step=2", "train.save_every=0", "train.progress=false", "eval.limit=2",
        "eval.max_new_tokens=4",
    ]
    if cfg.data.source == "dataset":
        fmt = cfg.data.dataset
        rows = [{fmt.question_column: f"What is {i} + 1?", fmt.answer_column: str(i + 1)} for i in range(4)]
        data = tmp_path / "train.jsonl"
        data.write_text("".join(json.dumps(r) + "\n" for r in rows))
        overrides.append(f"data.dataset.path={data}")
    datasets = []
    for spec in cfg.eval.datasets:
        entry = {"name": spec.name, "num_problems": 2}
        if spec.layout_name in LAYOUTS:
            f = tmp_path / f"{spec.name}.jsonl"
            f.write_text("".join(json.dumps(r) + "\n" for r in LAYOUT_ROWS[spec.layout_name]))
            entry = {"name": spec.name, "path": str(f)}
        datasets.append(entry)
    overrides.append(f"eval.datasets={yaml.safe_dump(datasets, default_flow_style=True).strip()}")
    run_dir = train(load_config(path, overrides))
    (row,) = read_jsonl(run_dir / "metrics.jsonl")
    for spec in cfg.eval.datasets:
        assert f"eval/{spec.name}/pass@1" in row
    assert (run_dir / "final" / "config.json").is_file()
    saved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert saved["reference"] == cfg.reference and saved["data"]["template"] == cfg.data.template
