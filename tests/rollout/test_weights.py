"""hf_weights: the policy's weights under plain HF names, LoRA deltas merged out of place."""

import copy

import pytest
import torch

from r1kit.config import LoraSection
from r1kit.models import _apply_lora
from r1kit.rollout.weights import hf_weights
from r1kit.testing import tiny_model


def _names(pairs):
    names = [n for n, _ in pairs]
    assert len(names) == len(set(names)), "duplicate names"
    return set(names)


def _lora(model, seed=1, r=4, alpha=8):
    peft_model = _apply_lora(model, LoraSection(enabled=True, r=r, alpha=alpha))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:  # peft starts B at zero: make the delta non-zero
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    return peft_model


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_plain_model_equals_state_dict(tok, arch):
    model = tiny_model(tok, arch)
    pairs = hf_weights(model)
    sd = model.state_dict()
    assert _names(pairs) == set(sd)
    params = dict(model.named_parameters())
    for name, t in pairs:
        assert torch.equal(t, sd[name]), name
        assert not t.requires_grad
        if name in params:  # no merge needed: a view of the live parameter, not a copy
            assert t.data_ptr() == params[name].data_ptr(), name
    if arch == "qwen2":
        assert "model.layers.0.self_attn.q_proj.bias" in _names(pairs)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_tied_embeddings_listed_as_lm_head(tok, arch):
    model = tiny_model(tok, arch, tie=True)
    w = dict(hf_weights(model))
    assert "lm_head.weight" in w and "model.embed_tokens.weight" in w
    assert torch.equal(w["lm_head.weight"], w["model.embed_tokens.weight"])
    assert torch.equal(w["lm_head.weight"], model.get_input_embeddings().weight)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_lora_merged_out_of_place(tok, arch):
    policy = _lora(tiny_model(tok, arch))
    live_before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    expected = copy.deepcopy(policy).merge_and_unload().state_dict()

    pairs = hf_weights(policy)
    got = dict(pairs)
    assert _names(pairs) == set(expected)
    assert not any("lora_" in n or "base_layer" in n for n in got)
    # the deltas are real: the merged q_proj differs from the base weight
    base = tiny_model(tok, arch).state_dict()
    assert not torch.allclose(got["model.layers.0.self_attn.q_proj.weight"], base["model.layers.0.self_attn.q_proj.weight"])
    for n, t in expected.items():
        assert torch.allclose(got[n], t, atol=1e-6, rtol=0), n
    # the live policy was not touched (no merge/unmerge residue)
    for n, p in policy.named_parameters():
        assert torch.equal(p, live_before[n]), n
    assert not any(getattr(m, "merged", False) for m in policy.modules())


def test_lora_tied_lists_lm_head(tok):
    policy = _lora(tiny_model(tok, tie=True))
    w = dict(hf_weights(policy))
    assert torch.equal(w["lm_head.weight"], w["model.embed_tokens.weight"])


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_disabled_adapters_give_base_weights(tok, arch):
    base = tiny_model(tok, arch).state_dict()
    policy = _lora(tiny_model(tok, arch))
    with policy.disable_adapter():
        pairs = hf_weights(policy)
    got = dict(pairs)
    assert _names(pairs) == set(base)
    for n, t in base.items():
        assert torch.equal(got[n], t), n
    # and enabled again afterwards: merged weights differ from the base
    on = dict(hf_weights(policy))
    assert not torch.equal(on["model.layers.0.mlp.down_proj.weight"], base["model.layers.0.mlp.down_proj.weight"])
