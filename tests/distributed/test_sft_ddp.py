"""`r1kit sft` on 2 processes (accelerate launch, DDP over gloo): the same losses and weights as
one process at the same global batch, process 0 keeping the run directory, every process's RNG
state in the checkpoints, and exact resume after SIGKILL of every process."""

import json
import os
import signal
import subprocess

import pytest
from safetensors.torch import load_file

from r1kit.testing import launch_cmd, run_until_then_sigkill, save_tiny

pytestmark = pytest.mark.slow


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


def sft(n, setup, out, batch_size, env=None):
    root, model, data, base_env = setup
    return launch_cmd(n, "sft", f"model.name_or_path={model}", f"data.path={data}", f"output_dir={out}",
                      f"train.batch_size={batch_size}", "train.lr=5e-3", "train.progress=false", "train.shuffle=false",
                      "train.max_steps=4", "train.save_every=2")


def ok(cmd, env):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-6000:]


def rows(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def max_diff(a, b):
    wa, wb = load_file(a / "final" / "model.safetensors"), load_file(b / "final" / "model.safetensors")
    return max(float((wa[k] - wb[k]).abs().max()) for k in wa)


@pytest.fixture(scope="module")
def two(setup):
    root, *_, env = setup
    ok(sft(2, setup, root / "two", 2), env)
    return root / "two"


def test_two_processes_equal_one_process_at_the_same_global_batch(setup, two, tmp_path):
    env = setup[3]
    one = tmp_path / "one"
    ok(sft(1, setup, one, 4), env)
    a, b = rows(one), rows(two)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4]
    for x, y in zip(a, b):
        assert y["loss"] == pytest.approx(x["loss"], rel=1e-5) and y["num_tokens"] == x["num_tokens"]
    assert b[-1]["loss"] < b[0]["loss"]
    assert max_diff(one, two) < 1e-5
    ckpt = two / "checkpoints" / "step-2"
    assert (ckpt / "rng_state_0.pth").is_file() and (ckpt / "rng_state_1.pth").is_file()
    assert json.loads((two / "run_state.json").read_text())["status"] == "completed"
    assert not (two / ".trainer").exists()


def test_sigkill_two_processes_then_resume_is_exact(setup, two, tmp_path):
    env = setup[3]
    killed = tmp_path / "killed"
    code = run_until_then_sigkill(sft(2, setup, killed, 2), dict(env, R1KIT_TEST_PAUSE_AFTER_CHECKPOINT="2"),
                                  tmp_path / "log", "paused after the step-2 checkpoint", timeout_s=300)
    assert code == -signal.SIGKILL and [r["step"] for r in rows(killed)] == [1, 2]
    ok(launch_cmd(2, "sft", "--resume", str(killed)), env)
    # num_tokens is TRL's running count of tokens seen, which TRL restarts on resume (one process too)
    strip = lambda rs: [{k: v for k, v in r.items() if k != "num_tokens"} for r in rs]  # noqa: E731
    assert strip(rows(killed)) == strip(rows(two))
    assert max_diff(killed, two) == 0.0
