"""The chunked vocabulary projection (r1kit.grpo.lm_head): the same log-probs, entropies and
gradients as projecting the whole logits tensor, and the learner the same with it as without."""

import copy

import pytest
import torch

from r1kit.config import GRPOSection, TrainSection
from r1kit.grpo.learner import Learner, completion_logits, make_batch, token_stats
from r1kit.grpo.lm_head import chunkable_head, head_logprobs
from r1kit.testing import tiny_model
from r1kit.types import Group, Sample


def whole(hidden, weight, bias, index, temperature):
    logp = torch.log_softmax((hidden @ weight.T + (0 if bias is None else bias)) / temperature, -1)
    return logp.gather(-1, index[..., None]).squeeze(-1), -(logp.exp() * logp).sum(-1)


@pytest.mark.parametrize("bias,temperature,chunk", [(False, 1.0, 4), (True, 0.7, 5), (False, 1.3, 1), (True, 1.0, 4096)])
def test_values_and_gradients_equal_the_whole_projection(bias, temperature, chunk):
    torch.manual_seed(0)
    N, T, H, V = 3, 7, 16, 101  # 21 positions: the chunks do not divide them evenly
    head = torch.nn.Linear(H, V, bias=bias)
    hidden = torch.randn(N, T, H, requires_grad=True)
    index = torch.randint(0, V, (N, T))
    g = torch.randn(N, T)
    lp, ent = head_logprobs(hidden, head, index, chunk, temperature)
    params = [hidden, head.weight] + ([head.bias] if bias else [])
    grads = torch.autograd.grad((lp * g).sum(), params)
    lp_ref, ent_ref = whole(hidden, head.weight, head.bias, index, temperature)
    grads_ref = torch.autograd.grad((lp_ref * g).sum(), params)
    assert torch.allclose(lp, lp_ref, atol=1e-5) and torch.allclose(ent, ent_ref, atol=1e-5)
    assert not ent.requires_grad
    for a, b in zip(grads, grads_ref):
        assert torch.allclose(a, b, atol=1e-5), (a - b).abs().max()


def test_a_frozen_head_gets_no_gradient_and_the_hidden_states_do():
    head = torch.nn.Linear(8, 20).requires_grad_(False)
    hidden = torch.randn(2, 3, 8, requires_grad=True)
    lp, _ = head_logprobs(hidden, head, torch.randint(0, 20, (2, 3)), chunk=2)
    lp.sum().backward()
    assert head.weight.grad is None and hidden.grad is not None and hidden.grad.abs().sum() > 0


def test_which_heads_are_chunked(tok):
    from peft import LoraConfig, get_peft_model

    model = tiny_model(tok, "llama")
    assert chunkable_head(model) is model.lm_head
    lora_head = get_peft_model(tiny_model(tok, "llama"), LoraConfig(r=2, target_modules=["lm_head"]))
    assert chunkable_head(lora_head) is None  # a LoRA-wrapped head: its delta is not in .weight
    capped = tiny_model(tok, "llama")
    capped.config.final_logit_softcapping = 30.0
    assert chunkable_head(capped) is None


def _batch(tok, shared: bool):
    eos = tok.eos_token_id
    p1, p2 = tok("What is 3 + 4? <think>")["input_ids"], tok("Hi <think>")["input_ids"]
    groups = [Group(Sample("a"), p1, [[5, 6, eos], [7, 8, 9, 10]], ["", ""], [False, True])]
    groups.append(Group(Sample("b"), p1 if shared else p2, [[11, eos], [12, 13, 14, eos]], ["", ""], [False, False]))
    return make_batch(groups, torch.tensor([1.0, -1.0, 0.5, -0.5]), tok.pad_token_id)


@pytest.mark.parametrize("arch,tie", [("llama", False), ("qwen2", True)])
def test_token_stats_with_the_chunked_head_equal_the_models_logits(tok, arch, tie):
    model = tiny_model(tok, arch, tie=tie)
    for shared in (False, True):
        b = _batch(tok, shared)
        lp, ent = token_stats(model, b, chunk=3, temperature=0.8, head=chunkable_head(model))
        lp_ref, ent_ref = token_stats(model, b, chunk=3, temperature=0.8, head=None)
        assert torch.allclose(lp, lp_ref, atol=1e-5) and torch.allclose(ent, ent_ref, atol=1e-5)
        assert completion_logits(model, b).shape[:2] == lp.shape


@pytest.mark.parametrize("arch,tie", [("llama", False), ("qwen2", True)])
def test_learner_step_is_the_same_with_and_without_the_chunked_head(tok, arch, tie):
    """beta > 0 (a separate reference), mu = 2, micro-batches of 2: the same metrics and gradients
    (the learning rate is 0, so both passes see the same weights; Adam's first steps would
    magnify float noise of near-zero gradients into +-lr)."""
    model = tiny_model(tok, arch, tie=tie)
    out = {}
    for chunked in (True, False):
        m = copy.deepcopy(model)
        learner = Learner(m, copy.deepcopy(model).eval(), GRPOSection(beta=0.1, num_iterations=2),
                          TrainSection(micro_batch_size=2, lr=1e-2, logit_chunk=3, chunked_head=chunked), 8)
        assert (learner.head is not None) == chunked
        for group in learner.optimizer.param_groups:
            group["lr"] = 0.0
        stats = learner.step(_batch(tok, shared=True))
        out[chunked] = (stats, {n: p.grad.clone() for n, p in m.named_parameters()})
    (s_c, g_c), (s_p, g_p) = out[True], out[False]
    for k in ("loss", "entropy", "kl", "ratio", "grad_norm"):
        assert s_c[k] == pytest.approx(s_p[k], rel=1e-4, abs=1e-6), k
    assert s_c["grad_norm"] > 0
    for n in g_c:
        assert torch.allclose(g_c[n], g_p[n], atol=1e-6, rtol=1e-4), n
