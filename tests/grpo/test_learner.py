import copy
import math

import pytest
import torch

from r1kit.config import GRPOSection, TrainSection
from r1kit.grpo.learner import Learner, make_batch, selective_log_softmax, token_logprobs
from r1kit.schedules import lr_multiplier
from r1kit.types import Group, Sample


def test_selective_log_softmax_matches_full(tok):
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 50)
    idx = torch.randint(0, 50, (3, 5))
    full = torch.log_softmax(logits, -1).gather(-1, idx[..., None]).squeeze(-1)
    for chunk in (1, 4, 1024):
        assert torch.allclose(selective_log_softmax(logits, idx, chunk), full, atol=1e-6)
    # bf16 logits are upcast per chunk
    assert selective_log_softmax(logits.bfloat16(), idx).dtype == torch.float32


def _groups(tok):
    p1 = tok("What is 3 + 4? <think>")["input_ids"]
    p2 = tok("Hi <think>")["input_ids"]
    eos = tok.eos_token_id
    return [
        Group(Sample("a"), p1, [[5, 6, eos], [7, 8, 9, 10]], ["", ""], [False, True]),
        Group(Sample("b"), p2, [[11, eos], [12, 13, 14, eos]], ["", ""], [False, False]),
    ]


def test_make_batch_layout(tok):
    groups = _groups(tok)
    adv = torch.tensor([1.0, -1.0, 0.5, -0.5])
    b = make_batch(groups, adv, tok.pad_token_id)
    P = max(len(g.prompt_ids) for g in groups)
    assert b.prompt_ids_NL.shape == (4, P) and b.completion_ids_NT.shape == (4, 4)
    assert b.completion_lengths_N.tolist() == [3, 4, 2, 4]
    assert b.completion_mask_NT.tolist() == [[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 1]]
    # prompts are left padded
    p2 = groups[1].prompt_ids
    assert b.prompt_ids_NL[2, P - len(p2):].tolist() == p2 and b.prompt_mask_NL[2, : P - len(p2)].sum() == 0
    masked = make_batch(groups, adv, tok.pad_token_id, mask_truncated=True)
    assert masked.completion_mask_NT[1].sum() == 0 and masked.completion_mask_NT[0].sum() == 3
    sub = b.select(torch.tensor([2]))  # trims to the row's own prompt and completion width
    assert sub.prompt_ids_NL.shape == (1, len(p2)) and sub.completion_ids_NT.shape == (1, 2)


def test_token_logprobs_match_unpadded_forward(tok, model):
    """Left padding + explicit positions give the same log-probs as each sequence alone."""
    model.eval()
    groups = _groups(tok)
    b = make_batch(groups, torch.zeros(4), tok.pad_token_id)
    lp = token_logprobs(model, b, chunk=3)
    rows = [(g.prompt_ids, c) for g in groups for c in g.completion_ids]
    for i, (p, c) in enumerate(rows):
        ids = torch.tensor([p + c])
        logits = model(ids).logits[0, len(p) - 1 : -1]
        ref = torch.log_softmax(logits, -1).gather(-1, torch.tensor(c)[:, None]).squeeze(-1)
        assert torch.allclose(lp[i, : len(c)], ref, atol=1e-5), i


def _grads(model, tok, loss_type, micro, beta=0.0, tokens=0, **grpo):
    m = copy.deepcopy(model)
    ref = copy.deepcopy(model).eval() if beta else None
    learner = Learner(m, ref, GRPOSection(loss_type=loss_type, beta=beta, **grpo),
                      TrainSection(micro_batch_size=micro, micro_batch_tokens=tokens, lr=1e-3, max_grad_norm=0.0), 8)
    b = make_batch(_groups(tok), torch.tensor([1.0, -1.0, 0.5, -0.5]), tok.pad_token_id)
    for group in learner.optimizer.param_groups:  # keep weights: we only compare gradients
        group["lr"] = 0.0
    stats = learner.step(b)
    return {n: p.grad.clone() for n, p in m.named_parameters()}, stats


@pytest.mark.parametrize("loss_type", ["grpo", "bnpo", "dr_grpo"])
def test_micro_batching_equals_full_batch(tok, model, loss_type):
    full, s_full = _grads(model, tok, loss_type, micro=4)
    acc, s_acc = _grads(model, tok, loss_type, micro=1)
    for n in full:
        assert torch.allclose(full[n], acc[n], atol=1e-6, rtol=1e-4), n
    assert s_full["loss"] == pytest.approx(s_acc["loss"], abs=1e-6)
    assert s_full["entropy"] == pytest.approx(s_acc["entropy"], rel=1e-5)
    assert s_full["ratio"] == pytest.approx(1.0) and s_full["grad_norm"] > 0


OBJECTIVES = {
    "cispo": ("cispo", {}),
    "sapo": ("sapo", {"sapo_tau_neg": 2.0}),
    "gspo": ("grpo", {"importance_sampling_level": "sequence"}),
    "gspo_token_dapo": ("dapo", {"importance_sampling_level": "sequence_token"}),
    "dual_clip_mu2": ("grpo", {"dual_clip_c": 3.0, "num_iterations": 2}),
    "top_entropy": ("grpo", {"top_entropy_quantile": 0.5}),
    "top_entropy_cispo_mu2": ("cispo", {"top_entropy_quantile": 0.3, "num_iterations": 2}),
}


@pytest.mark.parametrize("name", sorted(OBJECTIVES))
def test_every_objective_micro_batched_equals_the_full_batch(tok, model, name):
    loss_type, grpo = OBJECTIVES[name]
    full, s_full = _grads(model, tok, loss_type, 4, beta=0.1, **grpo)
    acc, s_acc = _grads(model, tok, loss_type, 1, beta=0.1, **grpo)
    for n in full:
        assert torch.allclose(full[n], acc[n], atol=1e-6, rtol=1e-4), n
    assert s_full["loss"] == pytest.approx(s_acc["loss"], abs=1e-6)
    assert s_full["grad_norm"] > 0
    if "top_entropy_quantile" in grpo:  # the step's threshold, whatever the micro-batching
        assert s_full["entropy/threshold"] == s_acc["entropy/threshold"]
        assert s_full["entropy/selected_frac"] == pytest.approx(grpo["top_entropy_quantile"], abs=0.1)


@pytest.mark.parametrize("loss_type,grpo", [("grpo", {}), ("dapo", {"num_iterations": 2}), ("cispo", {})])
def test_length_micro_batches_equal_the_full_batch(tok, model, loss_type, grpo):
    """train.micro_batch_tokens regroups rows by completion length (groups split across
    micro-batches, prompts run once per micro-batch): the same gradients and metrics."""
    b = make_batch(_groups(tok), torch.zeros(4), tok.pad_token_id)
    p1 = len(_groups(tok)[0].prompt_ids)
    budget = 2 * (p1 + 4)  # at most two of the longest rows together
    learner = Learner(copy.deepcopy(model), None, GRPOSection(), TrainSection(micro_batch_tokens=budget), 8)
    parts = [idx.tolist() for idx in learner._micro_batches(b)]
    assert sorted(sum(parts, [])) == [0, 1, 2, 3] and len(parts) > 1
    assert parts[0] == [1, 3]  # the two 4-token completions, one from each group
    full, s_full = _grads(model, tok, loss_type, 4, beta=0.1, **grpo)
    split, s_split = _grads(model, tok, loss_type, 4, beta=0.1, tokens=budget, **grpo)
    for n in full:
        assert torch.allclose(full[n], split[n], atol=1e-6, rtol=1e-4), n
    for k in ("loss", "entropy", "kl", "grad_norm"):
        assert s_full[k] == pytest.approx(s_split[k], rel=1e-4, abs=1e-7), k


def test_top_entropy_selection_drops_the_low_entropy_tokens_gradient(tok, model):
    """Only the selected tokens carry the policy gradient: the gradient differs from all tokens',
    and with beta > 0 the KL term (zero at the start, policy == reference) changes nothing else."""
    every, _ = _grads(model, tok, "grpo", 2)
    some, stats = _grads(model, tok, "grpo", 2, top_entropy_quantile=0.5)
    assert any(not torch.allclose(every[n], some[n], atol=1e-7) for n in every)
    assert 0.3 <= stats["entropy/selected_frac"] <= 0.7


def test_step_updates_and_mu_uses_old_logprobs(tok, model):
    m = copy.deepcopy(model)
    learner = Learner(m, None, GRPOSection(num_iterations=2), TrainSection(micro_batch_size=2, lr=1e-2), 8)
    b = make_batch(_groups(tok), torch.tensor([1.0, -1.0, 0.5, -0.5]), tok.pad_token_id)
    before = copy.deepcopy(m.state_dict())
    old_NT, ref_NT, ent_NT = learner._logprobs(b)  # returned, the batch is not changed
    assert old_NT is not None and old_NT.shape == b.completion_ids_NT.shape and ref_NT is None and ent_NT is None
    stats = learner.step(b)
    assert b.old_logp_NT is None
    # second pass sees a moved policy: the mean ratio over both passes differs from 1
    assert abs(stats["ratio"] - 1.0) > 1e-6
    assert any(not torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert learner.scheduler.last_epoch == 2  # one scheduler tick per optimizer step


def test_beta_with_frozen_reference(tok, model):
    _, stats = _grads(model, tok, "grpo", micro=2, beta=0.1)
    assert stats["kl"] == pytest.approx(0.0, abs=1e-9)  # policy == reference at the start


def test_lr_schedules():
    f = lr_multiplier("cosine", warmup=2, total=10)
    assert [f(0), f(1)] == [0.5, 1.0]
    assert f(2) == pytest.approx(1.0) and f(6) == pytest.approx(0.5) and f(10) == pytest.approx(0.0)
    g = lr_multiplier("linear", warmup=0, total=4)
    assert [g(s) for s in range(5)] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert lr_multiplier("constant", 3, 10)(7) == 1.0


def test_nonfinite_loss_raises(tok, model):
    m = copy.deepcopy(model)
    learner = Learner(m, None, GRPOSection(), TrainSection(micro_batch_size=4), 8)
    b = make_batch(_groups(tok), torch.tensor([math.nan, 1.0, 0.0, 0.0]), tok.pad_token_id)
    before = copy.deepcopy(m.state_dict())
    with pytest.raises(FloatingPointError, match="non-finite"):
        learner.step(b)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())  # no update applied


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_shared_prompt_path_equals_plain_path(tok, arch):
    """Running a group's prompt once must give the same log-probs and gradients as per row."""
    from r1kit.grpo.learner import _plain_logits, completion_logits
    from r1kit.testing import tiny_model

    model = tiny_model(tok, arch, seed=5)
    b = make_batch(_groups(tok), torch.zeros(4), tok.pad_token_id)
    shared = completion_logits(model, b)
    plain = _plain_logits(model, b)
    assert torch.allclose(shared, plain, atol=1e-5)
    idx = b.completion_ids_NT
    gs = torch.autograd.grad(selective_log_softmax(shared, idx).mul(b.completion_mask_NT).sum(), list(model.parameters()))
    gp = torch.autograd.grad(selective_log_softmax(plain, idx).mul(b.completion_mask_NT).sum(), list(model.parameters()))
    for a, c in zip(gs, gp):
        assert torch.allclose(a, c, atol=1e-5, rtol=1e-4)


def test_learner_logprobs_use_the_sampling_temperature(tok, model):
    """Samples drawn at temperature T are scored under softmax(logits / T)."""
    model.eval()
    b = make_batch(_groups(tok), torch.zeros(4), tok.pad_token_id)
    plain = _plain_logits_for_test(model, b)
    lp = token_logprobs(model, b, temperature=0.7)
    ref = torch.log_softmax(plain / 0.7, -1).gather(-1, b.completion_ids_NT[..., None]).squeeze(-1)
    assert torch.allclose(lp, ref, atol=1e-5)
    assert not torch.allclose(lp, token_logprobs(model, b), atol=1e-3)


def _plain_logits_for_test(model, b):
    from r1kit.grpo.learner import _plain_logits

    return _plain_logits(model, b)


def test_autocast_step_keeps_fp32_master_weights(tok, model):
    """dtype auto on a GPU: fp32 weights, bf16 forward passes (exercised here with CPU autocast)."""
    from r1kit.models import autocast_dtype, resolve_dtype

    assert resolve_dtype("auto", torch.device("cuda")) == torch.float32
    assert autocast_dtype("auto", torch.device("cuda")) == torch.bfloat16
    assert autocast_dtype("auto", torch.device("cpu")) is None and autocast_dtype("float32", torch.device("cuda")) is None
    for device in ("cpu", "cuda"):  # TRL's bf16=True: fp32 weights, bf16 autocast everywhere
        assert resolve_dtype("autocast_bfloat16", torch.device(device)) == torch.float32
        assert autocast_dtype("autocast_bfloat16", torch.device(device)) == torch.bfloat16
    m = copy.deepcopy(model)
    learner = Learner(m, None, GRPOSection(num_iterations=2), TrainSection(micro_batch_size=2, lr=1e-2), 8, amp=torch.bfloat16)
    b = make_batch(_groups(tok), torch.tensor([1.0, -1.0, 0.5, -0.5]), tok.pad_token_id)
    before = copy.deepcopy(m.state_dict())
    assert learner._logprobs(b)[0].dtype == torch.float32  # old log-probs stay fp32 under autocast
    stats = learner.step(b)
    assert math.isfinite(stats["loss"])
    assert all(p.dtype == torch.float32 for p in m.parameters())
    assert any(not torch.equal(before[k], v) for k, v in m.state_dict().items())


def _pg_grads(logits, b, params):
    lp = selective_log_softmax(logits, b.completion_ids_NT)
    return torch.autograd.grad((lp * b.adv_N[:, None] * b.completion_mask_NT).sum(), params)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_shared_prompt_gradients_are_bit_reproducible(tok, arch):
    """The main job's layout, one group per micro-batch: the prompt's KV cache and first logits are
    repeated G times. ``x[idx]`` with repeated indices backpropagates through an accumulating
    ``index_put_`` whose CPU sum order varies between passes with 2 threads (different last bits
    every time at these sizes); the repeat must give the same gradient bits on every pass, and
    the same log-probs and gradients as the plain path. Also with two groups in one micro-batch."""
    from r1kit.grpo.learner import _plain_logits, completion_logits
    from r1kit.testing import tiny_model

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        model = tiny_model(tok, arch, seed=3, hidden=128)  # KV cache [1, 2, ~107, 32] per layer
        params = list(model.parameters())
        long_prompt = tok("What is 3 + 4? Think step by step, then answer in \\boxed{}. " * 3 + "<think>")["input_ids"]
        g = torch.Generator().manual_seed(0)
        comps = [torch.randint(3, len(tok), (int(n),), generator=g).tolist() for n in torch.randint(2, 7, (8,), generator=g)]
        one_group = [Group(Sample("a"), long_prompt, comps, [""] * 8, [False] * 8)]
        two_groups = [  # the second prompt sorts first in torch.unique: inverse rows [1,1,1,1,0,0,0,0]
            Group(Sample("a"), long_prompt, comps[:4], [""] * 4, [False] * 4),
            Group(Sample("b"), tok("Hi <think>")["input_ids"], comps[4:], [""] * 4, [False] * 4),
        ]
        for groups in (one_group, two_groups):
            b = make_batch(groups, torch.linspace(-1, 1, 8), tok.pad_token_id)

            plain = _plain_logits(model, b)
            seen = set()
            for _ in range(8):
                shared = completion_logits(model, b)
                gs = _pg_grads(shared, b, params)
                seen.add(b"".join(x.numpy().tobytes() for x in gs))
            assert len(seen) == 1, f"{len(groups)} group(s): {len(seen)} different gradients in 8 passes"
            assert torch.allclose(shared, plain, atol=1e-5)
            for a, c in zip(gs, _pg_grads(plain, b, params)):
                assert torch.allclose(a, c, atol=1e-5, rtol=1e-4)
    finally:
        torch.set_num_threads(threads)
