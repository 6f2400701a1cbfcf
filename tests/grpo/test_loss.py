"""policy_loss and group_advantages against numbers worked out by hand."""

import math

import pytest
import torch

from r1kit.grpo.advantages import group_advantages, zero_variance_groups
from r1kit.grpo.loss import LOSS_TYPES, micro_batch_weight, policy_loss

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


def test_micro_batch_weights_sum_to_one():
    for lt in LOSS_TYPES:
        w = micro_batch_weight(lt, MASK[:1], MASK) + micro_batch_weight(lt, MASK[1:], MASK)
        assert w == pytest.approx(1.0)
        # and the weighted micro-batch losses add up to the full-batch loss
        full, _ = policy_loss(LOGP, OLD, ADV, MASK, loss_type=lt, max_completion_length=3)
        parts = sum(
            policy_loss(LOGP[s], OLD[s], ADV[s], MASK[s], loss_type=lt, max_completion_length=3)[0].item()
            * micro_batch_weight(lt, MASK[s], MASK)
            for s in (slice(0, 1), slice(1, 2))
        )
        assert parts == pytest.approx(full.item(), abs=1e-12)


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
