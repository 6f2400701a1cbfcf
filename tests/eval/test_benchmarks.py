import json

import pytest

from r1kit.config import DataSection, EvalDatasetSpec
from r1kit.config.parse import ConfigError
from r1kit.data import DataError
from r1kit.data.loaders import plain_gold
from r1kit.eval.benchmarks import load_benchmark


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def spec(**kw):
    return EvalDatasetSpec.from_yaml("eval.datasets", kw)


def test_gsm8k_layout(tmp_path):
    path = write_jsonl(tmp_path / "gsm8k.jsonl", [
        {"question": "Q1?", "answer": "so 3 * 4 = 12\n#### 12"},
        {"question": "Q2?", "answer": "big\n#### 1,250"},
    ])
    b = load_benchmark(spec(name="gsm8k", path=path))
    assert [(p["id"], p["question"], p["answer"], p["task"]) for p in b.problems] == [
        ("0", "Q1?", "12", "math"), ("1", "Q2?", "1250", "math")]
    assert len(b.sha256) == 64 and b.source == path


def test_math500_layout_keeps_subject_level_and_unique_id(tmp_path):
    rows = [{"problem": "Find x.", "solution": "... \\boxed{\\frac{1}{2}}", "answer": "\\frac{1}{2}",
             "subject": "Algebra", "level": 3, "unique_id": "test/algebra/1.json"}]
    b = load_benchmark(spec(name="math500", path=write_jsonl(tmp_path / "m.jsonl", rows)))
    (p,) = b.problems
    assert p == {"id": "test/algebra/1.json", "question": "Find x.", "answer": "\\frac{1}{2}", "task": "math",
                 "subject": "Algebra", "level": 3}


def test_aime24_both_layouts_and_amc23_float_answers(tmp_path):
    import pandas as pd

    lower = write_jsonl(tmp_path / "a.jsonl", [{"id": 60, "problem": "P", "answer": "204"}])
    pd.DataFrame([{"ID": "2024-I-1", "Problem": "P", "Answer": 204}]).to_parquet(tmp_path / "b.parquet")
    amc = tmp_path / "amc.json"
    amc.write_text(json.dumps([{"id": 0, "problem": "P", "answer": 27.0, "url": "u"},
                               {"id": 1, "problem": "Q", "answer": 0.5, "url": "u"}]))
    assert load_benchmark(spec(name="aime24", path=lower)).problems[0]["answer"] == "204"
    upper = load_benchmark(spec(name="aime24", path=str(tmp_path / "b.parquet"))).problems[0]
    assert (upper["id"], upper["answer"]) == ("2024-I-1", "204")
    assert [p["answer"] for p in load_benchmark(spec(name="amc23", path=str(amc))).problems] == ["27", "0.5"]


def test_plain_gold():
    assert plain_gold(27.0) == "27" and plain_gold(204) == "204" and plain_gold(0.25) == "0.25"
    assert plain_gold("$\\boxed{5}$") == "5" and plain_gold("x\n#### 72") == "72"
    assert plain_gold(None) is None and plain_gold("  ") is None


def test_custom_layout_with_a_column_mapping_and_a_directory(tmp_path):
    d = tmp_path / "mine"
    d.mkdir()
    write_jsonl(d / "test.jsonl", [{"q": "What?", "gold": 3, "key": "k1"}])
    write_jsonl(d / "train.jsonl", [{"q": "Other", "gold": 4, "key": "k2"}])
    b = load_benchmark(spec(name="mine", layout="custom", path=str(d), prompt_column="q", answer_column="gold",
                            id_column="key"))
    assert [(p["id"], p["question"], p["answer"]) for p in b.problems] == [("k1", "What?", "3")]


def test_missing_column_names_the_file_the_column_and_the_columns_found(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"question": "Q", "solution": "#### 1"}])
    with pytest.raises(DataError) as e:
        load_benchmark(spec(name="gsm8k", path=path))
    assert str(e.value) == f"{path}: no answer column 'answer' (layout gsm8k); columns found: question, solution"
    with pytest.raises(DataError, match="no prompt column 'q'"):
        load_benchmark(spec(name="x", layout="custom", path=path, prompt_column="q", answer_column="solution"))


def test_bad_rows_and_names_are_clear_errors(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"question": "Q", "answer": "no marker"}])
    with pytest.raises(DataError, match="row 0 has no gold answer in 'answer'"):
        load_benchmark(spec(name="gsm8k", path=path))
    with pytest.raises(DataError, match=r"unknown benchmark 'gsm9k' \(known: gsm8k, math500, aime24, amc23, custom, arithmetic, countdown"):
        load_benchmark(spec(name="gsm9k", path=path))
    with pytest.raises(DataError, match="does not exist"):
        load_benchmark(spec(name="gsm8k", path=str(tmp_path / "nope.jsonl")))
    dup = write_jsonl(tmp_path / "d.jsonl", [{"id": 1, "problem": "P", "answer": 1}, {"id": 1, "problem": "Q", "answer": 2}])
    with pytest.raises(DataError, match="row 1 repeats the id '1'"):
        load_benchmark(spec(name="aime24", path=dup))
    with pytest.raises(ConfigError, match="eval.datasets.arithmetic: unknown config key .max_valu. \(did you mean .max_value.\?\)"):
        spec(name="arithmetic", arithmetic={"max_valu": 3})


def test_procedural_tasks_are_seeded_and_inherit_the_training_task():
    a = load_benchmark(spec(name="arithmetic", num_problems=5, seed=7))
    again = load_benchmark(spec(name="arithmetic", num_problems=5, seed=7))
    other = load_benchmark(spec(name="arithmetic", num_problems=5, seed=8))
    assert a.problems == again.problems and a.sha256 == again.sha256
    assert a.problems != other.problems
    assert a.problems[0]["id"] == "arithmetic-7-0" and a.problems[0]["task"] == "arithmetic"
    train = DataSection(source="arithmetic", arithmetic={"min_value": 100, "max_value": 200, "ops": "+"})
    big = load_benchmark(spec(name="arithmetic", num_problems=20), train_data=train)
    assert all(" + " in p["question"] and int(p["answer"]) >= 200 for p in big.problems)
    # the spec's own keys win over the run's
    small = load_benchmark(spec(name="arithmetic", num_problems=20, arithmetic={"max_value": 150}), train_data=train)
    assert all(int(p["answer"]) <= 300 for p in small.problems)
    cd = load_benchmark(spec(name="countdown", num_problems=3), limit=2)
    assert len(cd.problems) == 2 and {"numbers", "target"} <= set(cd.problems[0])
