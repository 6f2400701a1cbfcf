"""`r1kit sft` on 2 processes (accelerate launch, DDP over gloo; DeepSpeed ZeRO-2 and ZeRO-3 on
its CPU accelerator): the same losses and weights as one process at the same global batch,
process 0 keeping the run directory, every process's RNG state in the checkpoints, and exact
resume after SIGKILL of every process."""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest
from safetensors.torch import load_file

from r1kit.testing import launch_cmd, run_until_then_sigkill, save_tiny

pytestmark = pytest.mark.slow
ACCELERATE_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "accelerate"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("sft_ddp")
    model = save_tiny(root / "tiny", "qwen2")
    data = root / "traces.jsonl"
    traces = [{"problem": f"What is {i % 10} + {i * 3 % 10}?", "reasoning": f"{i % 10} + {i * 3 % 10}",
               "answer": str(i % 10 + i * 3 % 10)} for i in range(16)]
    data.write_text("".join(json.dumps(r) + "\n" for r in traces))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return root, model, data, env


# an evaluation every 2 steps, one problem per chunk: process r generates chunks r, r + 2, ...
EVAL = ("eval.datasets=[{name: arithmetic, num_problems: 3}]", "eval.every=2", "eval.batch_size=1",
        "eval.max_new_tokens=4")


def sft(n, setup, out, batch_size, config_file=None, *extra):
    root, model, data, base_env = setup
    return launch_cmd(n, "sft", f"model.name_or_path={model}", f"data.path={data}", f"output_dir={out}",
                      f"train.batch_size={batch_size}", "train.lr=5e-3", "train.progress=false", "train.shuffle=false",
                      "train.max_steps=4", "train.save_every=2", *extra, config_file=config_file)


def ok(cmd, env):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]
    return p


def rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def max_diff(a, b):
    wa, wb = load_file(a / "final" / "model.safetensors"), load_file(b / "final" / "model.safetensors")
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


@pytest.fixture(scope="module")
def two(setup):
    root, *_, env = setup
    ok(sft(2, setup, root / "two", 2, None, *EVAL), env)
    return root / "two"


@pytest.fixture(scope="module")
def one(setup):
    root, *_, env = setup
    ok(sft(1, setup, root / "one", 4, None, *EVAL), env)
    return root / "one"


def strip(rs):
    """Rows without timings and TRL's running count of tokens seen (which TRL restarts on resume,
    one process too)."""
    return [{k: v for k, v in r.items() if k != "num_tokens" and not k.startswith("time/")} for r in rs]


def train_rows(run):
    return [r for r in rows(run) if "loss" in r]  # not the step-0 evaluation's row


def assert_same_training(one, two):
    a, b = train_rows(one), train_rows(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4]
    for x, y in zip(a, b):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5) and y["num_tokens"] == x["num_tokens"]
    diff = max_diff(one, two)
    print(f"max |w_1proc - w_2proc| = {diff:.3g}")
    assert diff < 1e-5


def test_two_processes_equal_one_process_at_the_same_global_batch(setup, one, two):
    assert_same_training(one, two)
    assert train_rows(two)[-1]["loss"] < train_rows(two)[0]["loss"]
    for step in (0, 2, 4):  # the evaluations, shared out by chunks, score what one process scores
        a, b = (r / "eval" / f"step-{step}" / "arithmetic.problems.jsonl" for r in (one, two))
        assert len(a.read_text().splitlines()) == 3
        assert [json.loads(x)["completions"] for x in a.read_text().splitlines()] == [
            json.loads(x)["completions"] for x in b.read_text().splitlines()]
    assert [r.get("eval/arithmetic/pass@1") for r in rows(one)] == [r.get("eval/arithmetic/pass@1") for r in rows(two)]
    ckpt = two / "checkpoints" / "step-2"
    assert (ckpt / "rng_state_0.pth").is_file() and (ckpt / "rng_state_1.pth").is_file()
    assert json.loads((two / "run_state.json").read_text())["status"] == "completed"
    assert not (two / ".trainer").exists()


def test_sigkill_two_processes_then_resume_is_exact(setup, two, tmp_path):
    env = setup[3]
    killed = tmp_path / "killed"
    code = run_until_then_sigkill(sft(2, setup, killed, 2, None, *EVAL), dict(env, R1KIT_TEST_PAUSE_AFTER_CHECKPOINT="2"),
                                  tmp_path / "log", "paused after the step-2 checkpoint", timeout_s=300)
    assert code == -signal.SIGKILL and [r["step"] for r in rows(killed)] == [0, 1, 2]
    ok(launch_cmd(2, "sft", "--resume", str(killed)), env)
    assert strip(rows(killed)) == strip(rows(two))
    assert max_diff(killed, two) == 0.0


@pytest.mark.parametrize("zero", ["zero2", "zero3"])
def test_deepspeed_two_processes_equal_one_process_then_resume(zero, setup, one, tmp_path):
    """DeepSpeed (its CPU accelerator over gloo) through accelerate's own config files: ZeRO-2
    shards optimizer states and gradients, ZeRO-3 the parameters too; TRL saves the ZeRO shards
    in each checkpoint, and a 2-process run killed after step 2 resumes to the same weights."""
    env = setup[3]
    cfg = ACCELERATE_CONFIGS / f"{zero}.yaml"
    if zero == "zero3":  # evaluation during training needs the whole model on every process
        p = subprocess.run(sft(2, setup, tmp_path / "refused", 2, cfg, *EVAL), env=env, capture_output=True, text=True,
                           timeout=600)
        assert p.returncode != 0 and "evaluation during sft training needs the whole model" in p.stderr, p.stderr[-3000:]
    two = tmp_path / "two"
    ok(sft(2, setup, two, 2, cfg), env)
    assert_same_training(one, two)
    assert (two / "checkpoints" / "step-2" / "global_step2").is_dir()  # DeepSpeed's own sharded states
    killed = tmp_path / "killed"
    code = run_until_then_sigkill(sft(2, setup, killed, 2, cfg), dict(env, R1KIT_TEST_PAUSE_AFTER_CHECKPOINT="2"),
                                  tmp_path / "log", "paused after the step-2 checkpoint", timeout_s=300)
    assert code == -signal.SIGKILL and [r["step"] for r in rows(killed)] == [1, 2]
    ok(launch_cmd(2, "sft", "--resume", str(killed), config_file=cfg), env)
    assert strip(rows(killed)) == strip(rows(two))
    assert max_diff(killed, two) == 0.0
