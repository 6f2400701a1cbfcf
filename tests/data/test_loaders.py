import json
from pathlib import Path

import pytest

from r1kit.config import DatasetSection
from r1kit.data.loaders import DataError, gsm8k_answer, last_boxed, load_rows

FIXTURES = Path(__file__).parent / "fixtures"
GSM8K = FIXTURES / "gsm8k_sample.jsonl"
MATH = FIXTURES / "math_sample.jsonl"


def test_gsm8k_rows():
    rows = load_rows(DatasetSection(path=str(GSM8K), format="gsm8k"))
    assert [r["answer"] for r in rows] == ["72", "10", "5", "1080", "850000"]
    assert rows[0]["question"].startswith("Natalia sold clips to 48 of her friends in April")
    assert rows[0]["solution"].endswith("#### 72")
    assert "<<48/2=24>>" in rows[0]["solution"]
    assert {r["task"] for r in rows} == {"math"}
    assert set(rows[0]) == {"question", "answer", "solution", "task"}


def test_gsm8k_answer_extraction():
    assert gsm8k_answer("a #### 3\nb #### 1,000 ") == "1000"
    assert gsm8k_answer("#### -4.5") == "-4.5"
    assert gsm8k_answer("no marker") is None


def test_math_rows_take_last_balanced_box():
    rows = load_rows(DatasetSection(path=str(MATH), format="math"))
    assert [r["answer"] for r in rows] == [r"\frac{1}{2}", r"2\sqrt{3}", r"\{-2, 2\}", "12"]
    assert rows[0]["question"] == r"What is $\frac{1}{4} + \frac{1}{4}$?"


def test_last_boxed():
    assert last_boxed(r"\boxed{\frac{1}{2}}") == r"\frac{1}{2}"
    assert last_boxed(r"first \boxed{1}, then \fbox{ {2}+3 }") == "{2}+3"
    assert last_boxed(r"\boxed{\{1, 2\}}") == r"\{1, 2\}"
    assert last_boxed(r"\boxed{2} and a truncated \boxed{\frac{3}{") == "2"
    assert last_boxed(r"so $\boxed 5$.") == "5"
    assert last_boxed("no box {here}") is None
    assert last_boxed(r"\boxed{}") is None


def test_limit_and_column_override(tmp_path):
    path = tmp_path / "renamed.jsonl"
    path.write_text(
        "\n".join(json.dumps({"q": f"What is {i} + 1?", "sol": f"so #### {i + 1}"}) for i in range(6))
    )
    rows = load_rows(
        DatasetSection(path=str(path), question_column="q", answer_column="sol", limit=4)
    )
    assert [r["question"] for r in rows] == [f"What is {i} + 1?" for i in range(4)]
    assert [r["answer"] for r in rows] == ["1", "2", "3", "4"]


def test_missing_column_names_column_path_and_available():
    with pytest.raises(DataError) as err:
        load_rows(DatasetSection(path=str(GSM8K), format="math"))
    msg = str(err.value)
    assert "'problem'" in msg and str(GSM8K) in msg and "available columns: question, answer" in msg
    assert isinstance(err.value, ValueError)


def test_row_without_gold_names_the_row(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"problem": "a", "solution": "\\\\boxed{1}"}\n{"problem": "b", "solution": "none"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl: row 1 has no \\boxed"):
        load_rows(DatasetSection(path=str(path), format="math"))


def test_missing_local_path(tmp_path):
    for path in (str(tmp_path / "nope.jsonl"), "data/train.parquet", "./somewhere/else"):
        with pytest.raises(DataError, match="does not exist"):
            load_rows(DatasetSection(path=path))


def test_parquet_and_csv_round_trip(tmp_path):
    import pandas as pd

    frame = pd.DataFrame(
        {"problem": ["p1", "p2"], "solution": [r"$\boxed{\frac{1}{2}}$", r"\boxed{7}"], "extra": [1, 2]}
    )
    frame.to_parquet(tmp_path / "math.parquet")
    frame.to_csv(tmp_path / "math.csv", index=False)
    for name in ("math.parquet", "math.csv"):
        rows = load_rows(DatasetSection(path=str(tmp_path / name), format="math"))
        assert [(r["question"], r["answer"]) for r in rows] == [("p1", r"\frac{1}{2}"), ("p2", "7")]


def test_directory_uses_the_split(tmp_path):
    for split, n in (("train", 3), ("test", 2)):
        (tmp_path / f"{split}.jsonl").write_text(
            "\n".join(json.dumps({"question": f"{split}{i}", "answer": f"#### {i}"}) for i in range(n))
        )
    train = load_rows(DatasetSection(path=str(tmp_path), split="train"))
    test = load_rows(DatasetSection(path=str(tmp_path), split="test"))
    assert [r["question"] for r in train] == ["train0", "train1", "train2"]
    assert [r["question"] for r in test] == ["test0", "test1"]


def test_math_solution_with_several_boxes_keeps_the_whole_answer(tmp_path):
    import json

    from r1kit.config import DatasetSection
    from r1kit.data.loaders import load_rows
    from r1kit.rewards.math import answers_match

    path = tmp_path / "two_boxes.jsonl"
    path.write_text(json.dumps({"problem": "Solve x^2 = 3x - 2.", "solution": "The solutions are $\\boxed{1}$ and $\\boxed{2}$."}) + "\n")
    (row,) = load_rows(DatasetSection(path=str(path), format="math"))
    assert row["answer"] == "1, 2"
    assert answers_match("1, 2", row["answer"]) and not answers_match("2", row["answer"])
