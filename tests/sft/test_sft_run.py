"""`r1kit sft`: a run directory like GRPO's, TRL's SFTTrainer underneath, the first loss checked
by hand, exact resume after SIGKILL, LoRA and packing, on tiny random models."""

from __future__ import annotations

import json
import os
import sys

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from r1kit.cli import main
from r1kit.config import load_config
from r1kit.rundir import PAUSE_ENV
from r1kit.sft.data import IGNORE, build_examples
from r1kit.sft.train import ensure_pad, resume_config, stop_ids, train
from r1kit.testing import run_until_then_sigkill, save_tiny


def worked_traces(n: int) -> list[dict]:
    return [{"problem": f"What is {i % 10} + {i * 3 % 10}?", "reasoning": f"{i % 10} + {i * 3 % 10} = {i % 10 + i * 3 % 10}",
             "answer": str(i % 10 + i * 3 % 10)} for i in range(n)]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft")
    model = save_tiny(root / "tiny", "qwen2")
    data = root / "traces.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in worked_traces(12)))
    return model, data


def overrides(setup, out, *extra):
    model, data = setup
    return [f"model.name_or_path={model}", f"data.path={data}", f"output_dir={out}", "train.batch_size=4",
            "train.lr=5e-3", "train.progress=false", *extra]


def rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_run_directory_records_and_an_hf_loadable_final_model(setup, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["sft", *overrides(setup, run, "train.num_epochs=3", "train.save_every=4", "train.keep_last=2")]) == 0
    assert "9 steps on 12 examples (0 dropped" in capsys.readouterr().out
    for name in ("config.yaml", "data_stats.json", "metrics.jsonl", "curves.png", "run_state.json"):
        assert (run / name).is_file(), name
    got = rows(run)
    assert [r["step"] for r in got] == list(range(1, 10))
    assert got[-1]["loss"] < got[0]["loss"] and got[0]["lr"] == pytest.approx(5e-3)
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-8", "step-9"]  # keep_last, and the last step
    assert not (run / ".trainer").exists()
    state = json.loads((run / "run_state.json").read_text())
    assert state["status"] == "completed" and state["step"] == 9
    stats = json.loads((run / "data_stats.json").read_text())
    assert stats["format"] == "trace" and stats["examples"] == 12 and stats["eos_added"] == 12
    model = AutoModelForCausalLM.from_pretrained(run / "final")
    tok = AutoTokenizer.from_pretrained(run / "final")
    assert tok.pad_token_id != tok.eos_token_id and model.config.vocab_size == len(tok)
    # a new run never writes into this one
    assert main(["sft", *overrides(setup, run)]) == 2
    assert f"output_dir {run} already holds a run; resume it with `r1kit sft --resume {run}`" in capsys.readouterr().err


def test_first_loss_is_the_mean_nll_of_the_trained_tokens(setup, tmp_path):
    """One batch holding every example, no shuffle: TRL's first logged loss is the mean negative
    log-likelihood over the completion tokens (labels != -100) under the untouched model."""
    cfg = load_config(None, overrides(setup, tmp_path / "run", "train.batch_size=12", "train.max_steps=1",
                                      "train.shuffle=false"), stage="sft")
    tok = AutoTokenizer.from_pretrained(setup[0])
    model = AutoModelForCausalLM.from_pretrained(setup[0])
    ensure_pad(tok, model)
    examples, _ = build_examples(worked_traces(12), cfg.data, tok, stop_ids(tok, model))
    nll, count = 0.0, 0
    with torch.no_grad():
        for ex in examples:
            ids = torch.tensor([ex.input_ids])
            logp = model(ids).logits[0, :-1].log_softmax(-1)
            target = torch.tensor(ex.labels[1:])
            keep = target != IGNORE
            nll -= logp[keep].gather(1, target[keep, None]).sum().item()
            count += int(keep.sum())
    train(cfg)
    assert rows(tmp_path / "run")[0]["loss"] == pytest.approx(nll / count, rel=1e-4)


def test_sigkill_after_a_checkpoint_then_resume_is_exact(setup, tmp_path):
    args = overrides(setup, tmp_path / "killed", "train.num_epochs=2", "train.save_every=2")
    env = dict(os.environ, **{PAUSE_ENV: "2", "OMP_NUM_THREADS": str(torch.get_num_threads())})
    rc = run_until_then_sigkill([sys.executable, "-m", "r1kit.cli", "sft", *args], env, tmp_path / "killed.log",
                                "paused after the step-2 checkpoint")
    assert rc == -9
    killed = tmp_path / "killed"
    assert [r["step"] for r in rows(killed)] == [1, 2] and not (killed / "final").exists()
    train(resume_config(killed), resume=True)
    train(load_config(None, overrides(setup, tmp_path / "ref", "train.num_epochs=2", "train.save_every=2"), stage="sft"))
    ref, resumed = rows(tmp_path / "ref"), rows(killed)
    assert [r["step"] for r in resumed] == [1, 2, 3, 4, 5, 6]
    for a, b in zip(ref, resumed):
        assert {k: a[k] for k in ("loss", "grad_norm", "lr", "epoch")} == {k: b[k] for k in ("loss", "grad_norm", "lr", "epoch")}
    wa = AutoModelForCausalLM.from_pretrained(tmp_path / "ref" / "final").state_dict()
    wb = AutoModelForCausalLM.from_pretrained(killed / "final").state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_lora_and_packing_and_schedules(setup, tmp_path):
    run = tmp_path / "lora"
    train(load_config(None, overrides(setup, run, "model.lora.enabled=true", "model.lora.r=4", "train.max_steps=3",
                                      "train.lr_schedule=cosine", "train.warmup_steps=1"), stage="sft"))
    got = rows(run)
    # r1kit's schedule, the LR each step used: 1 step of warmup (1/1), then cosine over steps 1..3
    assert [r["lr"] for r in got] == pytest.approx([5e-3, 5e-3, 2.5e-3])
    assert not (run / "final" / "adapter_config.json").exists()  # merged: a plain model
    assert AutoModelForCausalLM.from_pretrained(run / "final").config.model_type == "qwen2"
    checkpointed = tmp_path / "checkpointed"  # gradient checkpointing: the same losses, recomputed activations
    train(load_config(None, overrides(setup, checkpointed, "model.gradient_checkpointing=true", "train.max_steps=2",
                                      "train.shuffle=false"), stage="sft"))
    plain = tmp_path / "plain"
    train(load_config(None, overrides(setup, plain, "train.max_steps=2", "train.shuffle=false"), stage="sft"))
    assert [r["loss"] for r in rows(checkpointed)] == pytest.approx([r["loss"] for r in rows(plain)], rel=1e-5)
    packed = tmp_path / "packed"
    train(load_config(None, overrides(setup, packed, "train.packing=true", "data.max_length=256", "train.max_steps=2"),
                      stage="sft"))
    assert [r["step"] for r in rows(packed)] == [1, 2]


def test_resume_without_a_checkpoint_and_bad_data_are_one_line_errors(setup, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["sft", *overrides(setup, run, "train.max_steps=1")]) == 0
    capsys.readouterr()
    assert main(["sft", "--resume", str(run)]) == 2
    assert f"cannot resume {run}: no complete checkpoint" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"problem": "Q", "reasoning": "r", "answer": ""}) + "\n")
    assert main(["sft", *overrides(setup, tmp_path / "other"), f"data.path={bad}"]) == 2
    err = capsys.readouterr().err
    assert err.strip().splitlines()[-1] == f"r1kit: error: {bad}: row 0: empty 'answer'"
    assert not (tmp_path / "other").exists()


def test_evaluation_before_and_after_training_through_the_eval_runner(setup, tmp_path):
    run = tmp_path / "run"
    train(load_config(None, overrides(setup, run, "train.max_steps=2", "eval.max_new_tokens=8",
                                      "eval.datasets=[{name: arithmetic, num_problems: 3}]"), stage="sft"))
    got = rows(run)
    assert [r["step"] for r in got] == [0, 1, 2]
    assert "loss" not in got[0] and "eval/arithmetic/pass@1" in got[0] and "eval/arithmetic/pass@1" in got[2]
    assert "eval/arithmetic/pass@1" not in got[1]
    for step in (0, 2):
        results = json.loads((run / "eval" / f"step-{step}" / "results.json").read_text())
        assert results["arithmetic"]["n_problems"] == 3
        assert results["arithmetic"]["pass@1"] == got[step]["eval/arithmetic/pass@1"]


def test_trainer_args_ask_trl_for_bf16_only_where_r1kit_autocasts(setup, tmp_path):
    """model.dtype -> TRL's bf16 flag: autocast_bfloat16 everywhere, auto only on a GPU."""
    from r1kit.sft.trl_stage import trainer_args

    for dtype, bf16 in (("auto", torch.cuda.is_available()), ("float32", False), ("autocast_bfloat16", True)):
        cfg = load_config(None, overrides(setup, tmp_path / dtype, f"model.dtype={dtype}"), stage="sft")
        assert trainer_args(cfg, tmp_path / "scratch")["bf16"] is bf16, dtype
