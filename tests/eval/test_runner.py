"""``r1kit eval`` end to end on a tiny random model: outputs, resume after SIGKILL, protocol
checks, re-grading, run directories as targets, and the CLI's one-line errors."""

import json
import os
import shutil
import signal
import sys

import pytest
import torch
import yaml

from r1kit.cli import main
from r1kit.config import GRPORun, load_config, save_config
from r1kit.eval.records import EvalError
from r1kit.eval.runner import PAUSE_ENV, evaluate, regrade
from r1kit.logging import read_jsonl
from r1kit.models import ModelError
from r1kit.testing import run_until_then_sigkill


@pytest.fixture(scope="module")
def gsm8k_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "gsm8k.jsonl"
    rows = [{"question": f"Tom has {i} apples and buys {i + 2}. How many now?", "answer": f"... #### {2 * i + 2}"}
            for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def eval_cfg(model, out, *datasets, **options):
    tree = {"model": {"name_or_path": str(model)}, "output_dir": str(out), "progress": False,
            "eval": {"datasets": list(datasets), "k": 2, "max_new_tokens": 6, "batch_size": 4, **options}}
    return load_config(None, [], stage="eval", options=tree)


def datasets(gsm8k_file):
    return [f"gsm8k={gsm8k_file}", {"name": "arithmetic", "num_problems": 3}]


def test_eval_writes_results_rows_and_the_full_protocol(tmp_path, tiny_dir, gsm8k_file):
    out, results, target = evaluate(eval_cfg(tiny_dir, tmp_path / "out", *datasets(gsm8k_file)))
    assert target.run_dir is None
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk == results and list(results) == ["gsm8k", "arithmetic"]
    g = results["gsm8k"]
    for key in ("pass@1", "pass@1_se", "maj@1", "maj@2", "pass@1", "pass@2", "format_rate", "length_mean",
                "length_median", "length_max", "clip_rate", "n_problems", "k"):
        assert key in g, key
    assert (g["n_problems"], g["k"]) == (5, 2)
    assert results["arithmetic"]["n_problems"] == 3
    p = g["protocol"]
    assert p["dataset_path"] == str(gsm8k_file) and len(p["dataset_sha256"]) == 64
    assert "{question}" in p["template_text"] and p["template_text"].endswith("<think>")
    assert (p["name"], p["k"], p["temperature"], p["top_p"], p["max_new_tokens"], p["seed"]) == ("r1", 2, 0.6, 0.95, 6, 0)
    assert p["r1kit_version"] and "+" in p["grader_version"]
    rows = read_jsonl(out / "gsm8k.problems.jsonl")
    assert sorted(r["id"] for r in rows) == ["0", "1", "2", "3", "4"]
    for r in rows:
        assert r["answer"] == str(2 * int(r["id"]) + 2) and len(r["completions"]) == 2
        for c in r["completions"]:
            assert set(c) == {"text", "extracted", "correct", "well_formed", "tokens", "clipped"}
            assert c["text"].startswith("<think>") and 1 <= c["tokens"] <= 6
    # random weights: nothing is right, so every figure is exact
    assert g["pass@1"] == 0.0 and g["pass@2"] == 0.0 and g["maj@2"] == 0.0 and g["pass@1_se"] == 0.0


def test_greedy_protocol_is_one_deterministic_sample(tmp_path, tiny_dir):
    a = evaluate(eval_cfg(tiny_dir, tmp_path / "a", "arithmetic", protocol="greedy", k=None))[1]["arithmetic"]
    assert a["k"] == 1 and a["protocol"]["temperature"] == 0.0 and "pass@2" not in a
    rows_a = read_jsonl(tmp_path / "a" / "arithmetic.problems.jsonl")
    evaluate(eval_cfg(tiny_dir, tmp_path / "b", "arithmetic", protocol="greedy", k=None, batch_size=1))
    rows_b = read_jsonl(tmp_path / "b" / "arithmetic.problems.jsonl")
    # greedy completions do not depend on how problems were batched
    texts = lambda rows: {r["id"]: r["completions"][0]["text"] for r in rows}  # noqa: E731
    assert texts(rows_a) == texts(rows_b)


def test_sigkill_then_rerun_skips_finished_problems_and_matches_an_uninterrupted_run(tmp_path, tiny_dir, gsm8k_file):
    ref = tmp_path / "ref"
    evaluate(eval_cfg(tiny_dir, ref, *datasets(gsm8k_file)))
    killed = tmp_path / "killed"
    cfg_file = tmp_path / "eval.yaml"
    cfg_file.write_text(yaml.safe_dump({
        "stage": "eval", "model": {"name_or_path": str(tiny_dir)}, "output_dir": str(killed),
        "eval": {"datasets": datasets(gsm8k_file), "k": 2, "max_new_tokens": 6, "batch_size": 4},
    }))
    cmd = [sys.executable, "-m", "r1kit.cli", "eval", str(cfg_file), "progress=false"]
    env = {**os.environ, PAUSE_ENV: "2", "OMP_NUM_THREADS": str(torch.get_num_threads())}
    code = run_until_then_sigkill(cmd, env, tmp_path / "killed.log", "paused after chunk 2", timeout_s=120)
    assert code == -signal.SIGKILL
    assert len(read_jsonl(killed / "gsm8k.problems.jsonl")) == 4  # two chunks of two problems
    assert not (killed / "results.json").exists()
    # a kill mid-write would have left half a line: it is dropped and redone
    with open(killed / "gsm8k.problems.jsonl", "a") as f:
        f.write('{"id": "4", "completions": [{"te')
    assert main(["eval", str(cfg_file), "progress=false"]) == 0
    assert json.loads((killed / "results.json").read_text()) == json.loads((ref / "results.json").read_text())
    for name in ("gsm8k", "arithmetic"):
        by_id = lambda d: {r["id"]: r for r in read_jsonl(d / f"{name}.problems.jsonl")}  # noqa: E731
        assert by_id(killed) == by_id(ref)


def test_another_protocol_in_the_same_directory_is_an_error_until_overwrite(tmp_path, tiny_dir):
    out = tmp_path / "out"
    evaluate(eval_cfg(tiny_dir, out, "arithmetic"))
    before = (out / "arithmetic.problems.jsonl").read_text()
    with pytest.raises(EvalError, match=r"another protocol \(protocol.temperature: 0.6 there, 1.0 now\)"):
        evaluate(eval_cfg(tiny_dir, out, "arithmetic", temperature=1.0))
    assert (out / "arithmetic.problems.jsonl").read_text() == before  # nothing touched
    cfg = eval_cfg(tiny_dir, out, "arithmetic", temperature=1.0)
    cfg.overwrite = True
    results = evaluate(cfg)[1]
    assert results["arithmetic"]["protocol"]["temperature"] == 1.0


def test_regrade_a_problems_file_and_a_plain_responses_file(tmp_path, tiny_dir, gsm8k_file):
    out = tmp_path / "out"
    results = evaluate(eval_cfg(tiny_dir, out, f"gsm8k={gsm8k_file}"))[1]
    again_dir, again = regrade(out / "gsm8k.problems.jsonl")
    assert again_dir == out / "regraded" and list(again) == ["gsm8k"]
    for key in ("pass@1", "pass@2", "maj@2", "format_rate", "length_mean", "clip_rate", "n_problems", "k"):
        assert again["gsm8k"][key] == results["gsm8k"][key], key

    plain = tmp_path / "saved.jsonl"
    rows = [
        {"id": 1, "answer": 27.0, "completions": ["<think>x</think> <answer>27</answer>", "\\boxed{26}"]},
        {"id": "b", "answer": "\\frac{1}{2}", "completions": ["so \\boxed{0.5}", "<answer>1/2</answer>"]},
        {"id": "c", "answer": "#### 72", "completions": ["The answer is 70.", "\\boxed{72}", "\\boxed{1}"]},
    ]
    plain.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out2, res = regrade(plain, tmp_path / "re")
    m = res["saved"]
    assert m["k"] == 2 and m["n_problems"] == 3
    assert m["pass@1"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)  # "c" is graded on its first two only
    assert m["pass@2"] == pytest.approx((1 + 1 + 1) / 3)
    assert m["format_rate"] == pytest.approx(1 / 6) and m["length_mean"] is None
    graded = {r["id"]: r for r in read_jsonl(out2 / "saved.problems.jsonl")}
    assert [c["extracted"] for c in graded["b"]["completions"]] == ["0.5", "1/2"]
    assert graded["b"]["majority_answer"] == "0.5"

    with pytest.raises(EvalError, match="problem '1' has 2 completions, fewer than k=3"):
        regrade(plain, tmp_path / "re3", k=3)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"id": 1, "completions": ["x"]}) + "\n")
    with pytest.raises(EvalError, match="line 1 needs 'id', 'answer' and a list 'completions'; missing answer"):
        regrade(bad)


def make_run_dir(tmp_path, tiny_dir):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copytree(tiny_dir, run / "checkpoints" / "step-2")
    (run / "checkpoints" / "step-2" / "trainer_state.pt").write_bytes(b"")  # what makes it complete
    cfg = GRPORun(output_dir=str(run), seed=3)
    cfg.model.name_or_path = str(tiny_dir)
    cfg.data.template = "r1zero"
    cfg.data.arithmetic.min_value, cfg.data.arithmetic.max_value, cfg.data.arithmetic.ops = 100, 120, "+"
    cfg.rollout.max_new_tokens = 5
    save_config(cfg, run / "config.yaml")
    return run


def test_run_directories_supply_template_task_and_length(tmp_path, tiny_dir):
    run = make_run_dir(tmp_path, tiny_dir)
    with pytest.raises(ModelError, match=r"the run has no final model \(no final/; checkpoints there: step-2\); "
                                         "evaluate one with --checkpoint step-N"):
        evaluate(eval_cfg(run, None, "arithmetic"))
    with pytest.raises(ModelError, match="no checkpoint 'step-9' \\(checkpoints there: step-2\\)"):
        cfg = eval_cfg(run, None, "arithmetic")
        cfg.checkpoint = "step-9"
        evaluate(cfg)
    cfg = load_config(None, [], stage="eval", options={
        "model": {"name_or_path": str(run)}, "checkpoint": "step-2", "progress": False,
        "eval": {"datasets": [{"name": "arithmetic", "num_problems": 2}], "k": 1}})
    out, results, target = evaluate(cfg)
    assert out == run / "eval-step-2" and target.checkpoint == "step-2"
    p = results["arithmetic"]["protocol"]
    assert p["template"] == "r1zero" and p["template_text"].startswith("A conversation between User and Assistant")
    assert p["max_new_tokens"] == 5  # the run's rollout.max_new_tokens
    rows = read_jsonl(out / "arithmetic.problems.jsonl")
    assert all(200 <= int(r["answer"]) <= 240 for r in rows)  # the run's operand range


def test_cli_short_form_and_one_line_errors(tmp_path, tiny_dir, gsm8k_file, capsys):
    out = tmp_path / "cli"
    code = main(["eval", str(tiny_dir), "--data", f"gsm8k={gsm8k_file}", "--protocol", "greedy", "--limit", "2",
                 "--max-new-tokens", "4", "--output", str(out), "progress=false"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "dataset" in printed and "gsm8k" in printed and str(out / "results.json") in printed
    assert json.loads((out / "results.json").read_text())["gsm8k"]["n_problems"] == 2

    def error(*argv):
        assert main(["eval", *argv]) == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1, lines
        return lines[0]

    assert "unknown benchmark 'gsm9k' (known: gsm8k, math500" in error(str(tiny_dir), "--data", f"gsm9k={gsm8k_file}")
    assert "another protocol" in error(str(tiny_dir), "--data", f"gsm8k={gsm8k_file}", "--limit", "3",
                                       "--max-new-tokens", "4", "--output", str(out), "--protocol", "greedy")
    assert error(str(tiny_dir), "--data", f"mine={gsm8k_file}", "--prompt-column", "q", "--answer-column", "answer") == (
        f"r1kit: error: {gsm8k_file}: no prompt column 'q' (layout custom); columns found: question, answer")
    assert "give at least one dataset" in error(str(tiny_dir))
    custom = main(["eval", str(tiny_dir), "--data", f"mine={gsm8k_file}", "--prompt-column", "question",
                   "--answer-column", "answer", "--k", "1", "--max-new-tokens", "2", "--output", str(tmp_path / "c"),
                   "progress=false"])
    assert custom == 0


def test_reference_deltas_compare_with_the_published_side():
    from r1kit.eval.runner import reference_deltas

    results = {"gsm8k": {"pass@1": 0.512}, "math500": {"pass@1": 0.3}, "mine": {"pass@1": 0.9}}
    reference = {"before": {"gsm8k": 36.7}, "after": {"gsm8k": 49.5, "math500": 34.4}}
    assert reference_deltas(results, reference, trained=True) == [
        "gsm8k: pass@1 51.2 vs published after 49.5 (+1.7 points)",
        "math500: pass@1 30.0 vs published after 34.4 (-4.4 points)",
    ]
    assert reference_deltas(results, reference, trained=False) == ["gsm8k: pass@1 51.2 vs published before 36.7 (+14.5 points)"]
    assert reference_deltas(results, {}, trained=True) == []
