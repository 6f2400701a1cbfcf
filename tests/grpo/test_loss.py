"""policy_loss and group_advantages against numbers worked out by hand."""

import math

import pytest
import torch

from r1kit.grpo.advantages import group_advantages, zero_variance_groups
from r1kit.grpo.loss import AGG_MODES, LOSS_TYPES, aggregate, kl_penalty, policy_loss

# Two sequences, three completion-token slots; the second has two real tokens.
LOGP = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.2, 0.0]], dtype=torch.float64)
OLD = torch.tensor([[-1.1, -1.5, -0.5], [-0.3, -0.8, 0.0]], dtype=torch.float64)
REF = torch.tensor([[-1.0, -1.8, -0.7], [-0.5, -1.2, 0.0]], dtype=torch.float64)
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
ADV = torch.tensor([1.0, -2.0], dtype=torch.float64)
# ratios: row0 = e^0.1, e^-0.5, 1 ; row1 = 1, e^-0.4
# objective per token (eps=0.2):
#   row0 (A=+1): min(r, clip(r)) = 1.105170918, 0.606530660 (min with 0.8), 1.0
#   row1 (A=-2): min(-2r, -2clip(r)) = -2.0, -1.6 (r=0.670320 clipped up to 0.8)
ROW0 = [math.exp(0.1), math.exp(-0.5), 1.0]
ROW1 = [-2.0, -1.6]


def test_grpo_sequence_mean():
    loss, m = policy_loss(LOGP, OLD, ADV, MASK, loss_type="grpo")
    expected = -((sum(ROW0) / 3 + sum(ROW1) / 2) / 2)
    assert loss.item() == pytest.approx(expected, abs=1e-9)
    assert loss.item() == pytest.approx(0.448049737, abs=1e-8)
    assert m["clip_frac_low"] == pytest.approx(1 / 5)
    assert m["clip_frac_high"] == 0.0
    assert m["ratio"] == pytest.approx((math.exp(0.1) + math.exp(-0.5) + 1 + 1 + math.exp(-0.4)) / 5)
    assert m["kl"] == 0.0


@pytest.mark.parametrize("loss_type", ["bnpo", "dapo"])
def test_token_mean(loss_type):
    loss, _ = policy_loss(LOGP, OLD, ADV, MASK, loss_type=loss_type)
    assert loss.item() == pytest.approx(-(sum(ROW0) + sum(ROW1)) / 5, abs=1e-9)
    assert loss.item() == pytest.approx(0.177659684, abs=1e-8)


def test_dr_grpo_constant_normaliser():
    loss, _ = policy_loss(LOGP, OLD, ADV, MASK, loss_type="dr_grpo", max_completion_length=4)
    assert loss.item() == pytest.approx(-(sum(ROW0) + sum(ROW1)) / (2 * 4), abs=1e-9)
    # default normaliser is the tensor width T=3
    loss3, _ = policy_loss(LOGP, OLD, ADV, MASK, loss_type="dr_grpo")
    assert loss3.item() == pytest.approx(-(sum(ROW0) + sum(ROW1)) / 6, abs=1e-9)


def test_k3_kl_penalty():
    k3 = lambda d: math.exp(d) - d - 1  # noqa: E731
    kl0 = [k3(0.0), k3(0.2), k3(-0.2)]  # ref - logp on row 0
    kl1 = [k3(-0.2), k3(0.0)]
    beta = 0.1
    loss, m = policy_loss(LOGP, OLD, ADV, MASK, REF, beta=beta)
    row0 = sum(o - beta * k for o, k in zip(ROW0, kl0)) / 3
    row1 = sum(o - beta * k for o, k in zip(ROW1, kl1)) / 2
    assert loss.item() == pytest.approx(-(row0 + row1) / 2, abs=1e-9)
    assert loss.item() == pytest.approx(0.449186898, abs=1e-8)
    assert m["kl"] == pytest.approx((sum(kl0) + sum(kl1)) / 5, abs=1e-12)
    # beta = 0 ignores the reference entirely
    loss0, m0 = policy_loss(LOGP, OLD, ADV, MASK, REF, beta=0.0)
    assert loss0.item() == pytest.approx(0.448049737, abs=1e-8) and m0["kl"] == 0.0


def test_asymmetric_clip_higher():
    logp = torch.log(torch.tensor([[1.5, 0.5]], dtype=torch.float64))
    old = torch.zeros_like(logp)
    mask = torch.ones_like(logp)
    adv = torch.tensor([1.0], dtype=torch.float64)
    loss, m = policy_loss(logp, old, adv, mask, epsilon_low=0.2)
    assert loss.item() == pytest.approx(-(1.2 + 0.5) / 2)
    assert m["clip_frac_high"] == 0.5 and m["clip_frac_low"] == 0.0
    loss_h, _ = policy_loss(logp, old, adv, mask, epsilon_low=0.2, epsilon_high=0.28)
    assert loss_h.item() == pytest.approx(-(1.28 + 0.5) / 2)


def test_gradients_match_autograd_and_vanish_when_clipped():
    logp = LOGP.clone().requires_grad_(True)
    loss, _ = policy_loss(logp, OLD, ADV, MASK, REF, beta=0.05)
    (g,) = torch.autograd.grad(loss, logp)
    # token (1,1) is clipped on the pessimistic side: no gradient; padding: no gradient
    assert g[1, 1].item() == 0.0 and g[1, 2].item() == 0.0
    # unclipped token (0,0): d/dlogp of -(1/2)(1/3)[A r - beta k3] = -(1/6)[A r - beta (1 - e^(ref-logp))]
    r = math.exp(0.1)
    expected = -(1 / 6) * (1.0 * r - 0.05 * (1 - math.exp(0.0)))
    assert g[0, 0].item() == pytest.approx(expected, abs=1e-9)

    def f(x):
        return policy_loss(x, OLD, ADV, MASK, REF, beta=0.05, loss_type="bnpo")[0]

    x = torch.tensor([[-1.05, -1.6, -0.45], [-0.31, -0.9, 0.0]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(f, (x,))


@pytest.mark.parametrize("loss_type", sorted(LOSS_TYPES))
def test_micro_batches_with_the_steps_denominators_add_up_to_the_full_batch(loss_type):
    full, _ = policy_loss(LOGP, OLD, ADV, MASK, loss_type=loss_type, max_completion_length=3)
    step = {"num_tokens": float(MASK.sum()), "num_seqs": 2.0}
    parts = sum(
        policy_loss(LOGP[s], OLD[s], ADV[s], MASK[s], loss_type=loss_type, max_completion_length=3, **step)[0]
        for s in (slice(0, 1), slice(1, 2))
    )
    assert parts.item() == pytest.approx(full.item(), abs=1e-12)
    # without the step's denominators each micro-batch would be normalised on its own
    alone = sum(policy_loss(LOGP[s], OLD[s], ADV[s], MASK[s], loss_type=loss_type, max_completion_length=3)[0]
                for s in (slice(0, 1), slice(1, 2)))
    assert alone.item() != pytest.approx(full.item(), abs=1e-6)


def test_aggregation_modes_by_formula_with_given_denominators():
    x = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=torch.float64)
    m = torch.tensor([[1, 1, 0], [1, 1, 1]])
    # token-mean: (1+2+4+5+6) / num_tokens
    assert aggregate(x, m, "token-mean").item() == pytest.approx(18 / 5)
    assert aggregate(x, m, "token-mean", num_tokens=10).item() == pytest.approx(18 / 10)
    # seq-mean-token-mean: ((1+2)/2 + (4+5+6)/3) / num_seqs
    assert aggregate(x, m, "seq-mean-token-mean").item() == pytest.approx((1.5 + 5.0) / 2)
    assert aggregate(x, m, "seq-mean-token-mean", num_seqs=4).item() == pytest.approx((1.5 + 5.0) / 4)
    # seq-mean-token-sum-norm: 18 / (num_seqs * max_len)
    assert aggregate(x, m, "seq-mean-token-sum-norm", max_len=6).item() == pytest.approx(18 / 12)
    assert aggregate(x, m, "seq-mean-token-sum-norm", num_seqs=3, max_len=6).item() == pytest.approx(18 / 18)
    assert {LOSS_TYPES[k] for k in LOSS_TYPES} <= set(AGG_MODES)


def test_kl_estimators_by_hand():
    logp = torch.tensor([[-1.0, -2.0]], dtype=torch.float64)
    ref = torch.tensor([[-1.5, -1.0]], dtype=torch.float64)
    r = [0.5, -1.0]  # logp - ref
    assert kl_penalty(logp, ref, "k1").tolist()[0] == pytest.approx(r)
    assert kl_penalty(logp, ref, "k2").tolist()[0] == pytest.approx([0.5 * 0.25, 0.5 * 1.0])
    assert kl_penalty(logp, ref, "k3").tolist()[0] == pytest.approx([math.exp(-x) + x - 1 for x in r])
    mask = torch.ones_like(logp)
    adv = torch.zeros(1, dtype=torch.float64)  # objective is the KL term alone
    for est, per_token in (("k1", r), ("k2", [0.125, 0.5]), ("k3", [math.exp(-x) + x - 1 for x in r])):
        loss, m = policy_loss(logp, logp, adv, mask, ref, beta=0.5, kl_estimator=est)
        assert loss.item() == pytest.approx(0.5 * sum(per_token) / 2) and m["kl"] == pytest.approx(sum(per_token) / 2)
    with pytest.raises(ValueError, match="kl_estimator"):
        kl_penalty(logp, ref, "k4")


def test_extreme_log_ratios_are_clamped_and_stay_finite():
    # a token whose log-prob moved by 1000 nats: exp would overflow to inf without the clamp
    logp = torch.tensor([[0.0, -1000.0]], dtype=torch.float64, requires_grad=True)
    old = torch.tensor([[-1000.0, 0.0]], dtype=torch.float64)
    ref = torch.tensor([[-1000.0, 0.0]], dtype=torch.float64)
    mask = torch.ones(1, 2)
    for est in ("k1", "k2", "k3"):
        kl = kl_penalty(logp.detach(), ref, est)
        assert torch.isfinite(kl).all()
    assert kl_penalty(logp.detach(), ref, "k3")[0, 1].item() == pytest.approx(math.exp(20) - 20 - 1)
    loss, m = policy_loss(logp, old, torch.tensor([1.0], dtype=torch.float64), mask, ref, beta=0.1)
    assert math.isfinite(loss.item()) and math.isfinite(m["ratio"]) and math.isfinite(m["kl"])
    (g,) = torch.autograd.grad(loss, logp)
    assert torch.isfinite(g).all()


def test_unknown_loss_type():
    with pytest.raises(ValueError, match="loss_type"):
        policy_loss(LOGP, OLD, ADV, MASK, loss_type="ppo")


def test_group_advantages_scales():
    r = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.5, 0.5, 0.5, 0.5])
    a = group_advantages(r, 4, "group")
    # group 1: mean 0.5, population std 0.5 -> +-0.5 / 0.5001; group 2 is flat -> 0
    assert a[:4].tolist() == pytest.approx([0.5 / 0.5001, -0.5 / 0.5001, -0.5 / 0.5001, 0.5 / 0.5001], abs=1e-6)
    assert a[4:].tolist() == [0.0] * 4
    # batch: population std of all 8 rewards is sqrt(0.125)
    b = group_advantages(r, 4, "batch")
    assert b[0].item() == pytest.approx(0.5 / (math.sqrt(0.125) + 1e-4), abs=1e-6)
    n = group_advantages(r, 4, "none")
    assert n.tolist() == pytest.approx([0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0])
    assert zero_variance_groups(r, 4).tolist() == [False, True]


def test_group_advantages_rejects_bad_input():
    with pytest.raises(ValueError, match="groups of 3"):
        group_advantages(torch.zeros(4), 3)
    with pytest.raises(ValueError, match="scale"):
        group_advantages(torch.zeros(4), 2, "bogus")
    with pytest.raises(ValueError, match="1-D"):
        group_advantages(torch.zeros(2, 2), 2)
