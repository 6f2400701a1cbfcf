"""`r1kit dpo`: TRL's DPOTrainer in r1kit's run directory, on pairs from `r1kit distill pairs`:
the first loss is ln 2 (policy = reference), the margin grows, SIGKILL + resume is exact."""

from __future__ import annotations

import json
import math
import os
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM

from r1kit.cli import main
from r1kit.config import load_config
from r1kit.distill.pairs import pair_traces
from r1kit.rundir import PAUSE_ENV
from r1kit.sft.dpo import resume_config, train
from r1kit.testing import run_until_then_sigkill, save_tiny


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpo")
    model = save_tiny(root / "tiny", "llama")
    traces = root / "traces.jsonl"
    rows = []
    for i in range(8):
        a, b = i % 10, i * 3 % 10
        base = {"id": f"p{i}", "prompt": f"What is {a} + {b}?", "answer": str(a + b), "finish_reason": "stop"}
        rows.append({**base, "completion": f"<think>{a} + {b} = {a + b}</think> <answer>{a + b}</answer>"})
        rows.append({**base, "completion": f"<think>guess</think> <answer>{a + b + 1}</answer>"})
    traces.write_text("".join(json.dumps(r) + "\n" for r in rows))
    pairs = root / "pairs.jsonl"
    assert pair_traces(traces, pairs, progress=False)["pairs"] == 8
    return model, pairs


def overrides(setup, out, *extra):
    model, pairs = setup
    return [f"model.name_or_path={model}", f"data.path={pairs}", f"output_dir={out}", "train.batch_size=4",
            "train.lr=1e-3", "train.progress=false", *extra]


def rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_dpo_on_distilled_pairs(setup, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["dpo", *overrides(setup, run, "train.num_epochs=3")]) == 0
    assert "6 steps on 8 preference pairs; loss 0.6931" in capsys.readouterr().out
    got = rows(run)
    assert got[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # policy == reference: -log sigmoid(0)
    assert got[0]["rewards/margins"] == 0.0 and got[-1]["rewards/margins"] > 0.05
    assert got[-1]["loss"] < got[0]["loss"]
    assert AutoModelForCausalLM.from_pretrained(run / "final").config.model_type == "llama"
    assert (run / "curves.png").is_file() and json.loads((run / "data_stats.json").read_text()) == {"pairs": 8}


def test_dpo_sigkill_then_resume_is_exact_and_lora_runs(setup, tmp_path):
    args = overrides(setup, tmp_path / "killed", "train.num_epochs=2", "train.save_every=2")
    env = dict(os.environ, **{PAUSE_ENV: "2", "OMP_NUM_THREADS": str(torch.get_num_threads())})
    assert run_until_then_sigkill([sys.executable, "-m", "r1kit.cli", "dpo", *args], env, tmp_path / "log",
                                  "paused after the step-2 checkpoint") == -9
    train(resume_config(tmp_path / "killed"), resume=True)
    train(load_config(None, overrides(setup, tmp_path / "ref", "train.num_epochs=2", "train.save_every=2"), stage="dpo"))
    keys = ("loss", "grad_norm", "rewards/margins", "lr")
    assert [[r[k] for k in keys] for r in rows(tmp_path / "killed")] == [[r[k] for k in keys] for r in rows(tmp_path / "ref")]
    wa = AutoModelForCausalLM.from_pretrained(tmp_path / "ref" / "final").state_dict()
    wb = AutoModelForCausalLM.from_pretrained(tmp_path / "killed" / "final").state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    lora = tmp_path / "lora"
    train(load_config(None, overrides(setup, lora, "model.lora.enabled=true", "model.lora.r=4", "train.max_steps=2"),
                      stage="dpo"))
    assert rows(lora)[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)  # the reference is the base under the adapter
    assert not (lora / "final" / "adapter_config.json").exists()


def test_bad_pairs_are_one_line_errors(setup, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "Q", "chosen": "a"}) + "\n")
    assert main(["dpo", *overrides(setup, tmp_path / "r"), f"data.path={bad}"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"r1kit: error: {bad}: no column 'rejected' (data.rejected_column); available columns: prompt, chosen")
    bad.write_text(json.dumps({"prompt": "Q", "chosen": "a", "rejected": "a"}) + "\n")
    assert main(["dpo", *overrides(setup, tmp_path / "r"), f"data.path={bad}"]) == 2
    assert "row 0: 'chosen' and 'rejected' are the same" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
