"""GSPO, GSPO-token, CISPO, SAPO and dual clip (r1kit.grpo.loss) against numbers worked out by
hand, their gradients against hand-derived ones and against gradcheck, and the refused
combinations."""

import math

import pytest
import torch

from r1kit.config import ConfigError, load_config
from r1kit.grpo.loss import (
    IS_LEVELS, LOSS_TYPES, check_objective, entropy_threshold, high_entropy_mask, importance_ratio, policy_loss,
)

# Two sequences: row 0 has three tokens, row 1 two (its third slot is padding).
LOGP = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -0.7, 0.0]], dtype=torch.float64)
OLD = torch.tensor([[-1.2, -1.9, -0.5], [-0.5, -0.4, 0.0]], dtype=torch.float64)
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
ADV = torch.tensor([1.0, -0.5], dtype=torch.float64)
# per-token log-ratios: row 0 = 0.2, -0.1, 0 ; row 1 = 0.2, -0.3
S0 = math.exp((0.2 - 0.1 + 0.0) / 3)  # GSPO's sequence ratio of row 0: 1.033895
S1 = math.exp((0.2 - 0.3) / 2)  # row 1: 0.951229


def grad_of(loss_fn, x=LOGP):
    x = x.clone().requires_grad_(True)
    loss_fn(x).backward()
    return x.grad


def test_sequence_ratio_is_the_exp_of_the_mean_log_ratio():
    s = importance_ratio(LOGP, OLD, MASK.double(), "sequence")
    assert s.shape == (2, 1)
    assert s[:, 0].tolist() == pytest.approx([S0, S1], abs=1e-12)
    st = importance_ratio(LOGP, OLD, MASK.double(), "sequence_token")
    assert st.shape == (2, 3) and st[0].tolist() == pytest.approx([S0] * 3, abs=1e-12)
    assert st[1, :2].tolist() == pytest.approx([S1] * 2, abs=1e-12)


def test_gspo_value_and_gradient_by_hand():
    # both ratios inside [0.8, 1.2]: obj_i = s_i * A_i, aggregated as GRPO (mean over sequences)
    loss, m = policy_loss(LOGP, OLD, ADV, MASK, importance_sampling_level="sequence")
    assert loss.item() == pytest.approx(-(S0 * 1.0 + S1 * -0.5) / 2, abs=1e-12)
    assert m["ratio"] == pytest.approx((3 * S0 + 2 * S1) / 5, abs=1e-12)
    # d s_i / d logp_t = s_i / |y_i| on each of the sequence's tokens
    g = grad_of(lambda x: policy_loss(x, OLD, ADV, MASK, importance_sampling_level="sequence")[0])
    expected = [[-S0 * 1.0 / 3 / 2] * 3, [-S1 * -0.5 / 2 / 2] * 2 + [0.0]]
    assert g.tolist()[0] == pytest.approx(expected[0], abs=1e-12)
    assert g.tolist()[1] == pytest.approx(expected[1], abs=1e-12)


def test_gspo_token_has_gspos_value_and_with_sequence_advantages_its_gradient():
    """GSPO-token equals GSPO in value, and in gradient when every token of a sequence has the
    sequence's advantage (the GSPO paper's remark); the token level differs."""
    seq = lambda x: policy_loss(x, OLD, ADV, MASK, importance_sampling_level="sequence")[0]  # noqa: E731
    tok = lambda x: policy_loss(x, OLD, ADV, MASK, importance_sampling_level="sequence_token")[0]  # noqa: E731
    assert tok(LOGP).item() == pytest.approx(seq(LOGP).item(), abs=1e-12)
    assert torch.allclose(grad_of(tok), grad_of(seq), atol=1e-12)
    per_token = grad_of(lambda x: policy_loss(x, OLD, ADV, MASK)[0])
    assert not torch.allclose(per_token, grad_of(seq), atol=1e-6)
    # a clipped sequence (s_0 > 1 + eps) gives no gradient at either level
    old = OLD.clone()
    old[0] -= 0.5  # s_0 = e^{0.5333} = 1.70
    g = grad_of(lambda x: policy_loss(x, old, ADV, MASK, importance_sampling_level="sequence_token")[0])
    assert g[0].abs().max().item() == 0.0 and g[1].abs().max().item() > 0


def test_cispo_by_hand():
    """sg(min(r, 1 + eps_high)) * A * logp, token mean; eps_high = 0.2 caps the first ratio of each row."""
    old = OLD.clone()
    old[1, 0] = -0.8  # log-ratio 0.5: r = 1.6487 -> weight 1.2 (row 0's e^0.2 = 1.2214 -> 1.2 too)
    r = [[1.2, math.exp(-0.1), 1.0], [1.2, math.exp(-0.3)]]
    lp = LOGP.tolist()
    obj = [r[0][t] * 1.0 * lp[0][t] for t in range(3)] + [r[1][t] * -0.5 * lp[1][t] for t in range(2)]
    loss, m = policy_loss(LOGP, old, ADV, MASK, loss_type="cispo", epsilon_high=0.2)
    assert loss.item() == pytest.approx(-sum(obj) / 5, abs=1e-12)
    # every token keeps a gradient: -w_t * A / num_tokens (the capped one too)
    g = grad_of(lambda x: policy_loss(x, old, ADV, MASK, loss_type="cispo", epsilon_high=0.2)[0])
    expected = [[-r[0][t] * 1.0 / 5 for t in range(3)], [-r[1][t] * -0.5 / 5 for t in range(2)] + [0.0]]
    assert g.tolist()[0] == pytest.approx(expected[0], abs=1e-12)
    assert g.tolist()[1] == pytest.approx(expected[1], abs=1e-12)
    assert m["clip_frac_low"] == 0.0 and m["clip_frac_high"] == pytest.approx(1 / 5)  # capped with A > 0: row 0's
    flipped = policy_loss(LOGP, old, -ADV, MASK, loss_type="cispo", epsilon_high=0.2)[1]
    assert flipped["clip_frac_low"] == 0.0 and flipped["clip_frac_high"] == pytest.approx(1 / 5)  # row 1's


def test_sapo_by_hand():
    """(4 / tau) sigmoid(tau (r - 1)) A, tau_pos for A > 0, tau_neg for A < 0, GRPO's aggregation;
    gradient 4 sigma (1 - sigma) * tau/tau * r * A per token."""
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    r = [[math.exp(0.2), math.exp(-0.1), 1.0], [math.exp(0.2), math.exp(-0.3)]]
    taus = (1.0, 2.0)  # pos, neg
    gate = [[4 / taus[0] * sig(taus[0] * (x - 1)) for x in r[0]], [4 / taus[1] * sig(taus[1] * (x - 1)) for x in r[1]]]
    expected = -((sum(gate[0]) * 1.0 / 3) + (sum(gate[1]) * -0.5 / 2)) / 2
    kw = dict(loss_type="sapo", sapo_tau_pos=taus[0], sapo_tau_neg=taus[1])
    loss, _ = policy_loss(LOGP, OLD, ADV, MASK, **kw)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    g = grad_of(lambda x: policy_loss(x, OLD, ADV, MASK, **kw)[0])
    for i, (a, n) in enumerate(((1.0, 3), (-0.5, 2))):
        tau = taus[0] if a > 0 else taus[1]
        for t in range(n):
            s = sig(tau * (r[i][t] - 1))
            assert g[i, t].item() == pytest.approx(-4 * s * (1 - s) * r[i][t] * a / n / 2, abs=1e-12)
    # on-policy (r = 1) SAPO's gradient is the policy gradient, as the clipped objective's
    on = lambda lt: grad_of(lambda x: policy_loss(x, x.detach(), ADV, MASK, loss_type=lt)[0])  # noqa: E731
    assert torch.allclose(on("sapo"), on("grpo"), atol=1e-12)


def test_sapo_defaults_are_trls():
    from trl import GRPOConfig

    cfg = GRPOConfig(output_dir="/tmp/unused", use_cpu=True, bf16=False)
    g = load_config(None, []).grpo
    assert (g.sapo_tau_pos, g.sapo_tau_neg) == (cfg.sapo_temperature_pos, cfg.sapo_temperature_neg)


def test_dual_clip_bounds_a_negative_advantage():
    """A < 0 and ratio 4: PPO's clipped objective is 4A (the min keeps the unclipped side),
    dual clip with c = 3 makes it 3A, a constant (no gradient); A > 0 tokens are untouched."""
    logp = torch.tensor([[math.log(4.0), 0.0]], dtype=torch.float64)
    old = torch.zeros((1, 2), dtype=torch.float64)
    mask = torch.tensor([[1, 1]])
    adv = torch.tensor([-1.0], dtype=torch.float64)
    plain, _ = policy_loss(logp, old, adv, mask)
    assert plain.item() == pytest.approx(-(4.0 * -1 + 1.0 * -1) / 2, abs=1e-12)
    dual, m = policy_loss(logp, old, adv, mask, dual_clip_c=3.0)
    assert dual.item() == pytest.approx(-(3.0 * -1 + 1.0 * -1) / 2, abs=1e-12)
    assert m["clip_frac_dual"] == pytest.approx(0.5)
    g = grad_of(lambda x: policy_loss(x, old, adv, mask, dual_clip_c=3.0)[0], logp)
    assert g[0, 0].item() == 0.0 and g[0, 1].item() == pytest.approx(-(1.0 * -1) / 2, abs=1e-12)
    assert policy_loss(logp, old, -adv, mask, dual_clip_c=3.0)[0].item() == policy_loss(logp, old, -adv, mask)[0].item()


def test_pg_mask_keeps_the_kl_on_every_token():
    ref = LOGP - 0.1
    keep = torch.tensor([[1, 0, 1], [0, 1, 0]])
    loss, _ = policy_loss(LOGP, OLD, ADV, MASK, ref, beta=0.5, kl_estimator="k1", loss_type="bnpo", pg_mask=keep)
    r = [[math.exp(0.2), math.exp(-0.1), 1.0], [math.exp(0.2), math.exp(-0.3)]]
    pg = min(r[0][0], 1.2) * 1 + r[0][2] * 1 + max(r[1][1], 0.8) * -0.5  # the kept tokens' clipped objectives
    assert loss.item() == pytest.approx(-(pg - 0.5 * 0.1 * 5) / 5, abs=1e-12)


COMBOS = [(lt, lvl) for lt in sorted(LOSS_TYPES) for lvl in IS_LEVELS
          if not (lt == "cispo" and lvl != "token") and not (lvl == "sequence" and LOSS_TYPES[lt] != "seq-mean-token-mean")]


@pytest.mark.parametrize("loss_type,level", COMBOS)
def test_every_objective_passes_gradcheck_and_splits_into_micro_batches(loss_type, level):
    ref = LOGP - 0.2
    kw = dict(loss_type=loss_type, importance_sampling_level=level, beta=0.1, max_completion_length=3)
    if loss_type in ("grpo", "bnpo", "dapo", "dr_grpo"):
        kw["dual_clip_c"] = 3.0
    x = (LOGP + 0.01).clone().requires_grad_(True)
    if loss_type != "cispo":  # CISPO's gradient is by design not its value's (a detached weight): see test_cispo_by_hand
        assert torch.autograd.gradcheck(lambda v: policy_loss(v, OLD, ADV, MASK, ref, **kw)[0], (x,))
    full, _ = policy_loss(LOGP, OLD, ADV, MASK, ref, **kw)
    step = {"num_tokens": float(MASK.sum()), "num_seqs": 2.0}
    parts = sum(policy_loss(LOGP[s], OLD[s], ADV[s], MASK[s], ref[s], **kw, **step)[0] for s in (slice(0, 1), slice(1, 2)))
    assert parts.item() == pytest.approx(full.item(), abs=1e-12)


@pytest.mark.parametrize("overrides,keys", [
    (["grpo.loss_type=cispo", "grpo.importance_sampling_level=sequence"], ["grpo.loss_type", "grpo.importance_sampling_level"]),
    (["grpo.loss_type=dapo", "grpo.importance_sampling_level=sequence"], ["grpo.loss_type", "grpo.importance_sampling_level"]),
    (["grpo.loss_type=sapo", "grpo.dual_clip_c=3"], ["grpo.loss_type", "grpo.dual_clip_c"]),
    (["grpo.loss_type=cispo", "grpo.dual_clip_c=3"], ["grpo.loss_type", "grpo.dual_clip_c"]),
    (["grpo.dual_clip_c=1.0"], ["grpo.dual_clip_c"]),
    (["grpo.loss_type=sapo", "grpo.sapo_tau_neg=0"], ["grpo.sapo_tau_neg"]),
    (["grpo.importance_sampling_level=seq"], ["grpo.importance_sampling_level"]),
])
def test_nonsensical_combinations_are_config_errors_naming_the_keys(overrides, keys):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert all(k in str(e.value) for k in keys), str(e.value)
    assert not str(e.value).startswith("grpo.grpo.")


def test_sensible_combinations_load_and_the_pure_check_agrees():
    for lt, lvl in COMBOS:
        load_config(None, [f"grpo.loss_type={lt}", f"grpo.importance_sampling_level={lvl}"])
        check_objective(lt, lvl)
    with pytest.raises(ValueError, match="loss_type='cispo' with importance_sampling_level='sequence'"):
        check_objective("cispo", "sequence")


def test_entropy_threshold_is_torch_quantile_and_selects_the_top_fraction():
    x = torch.tensor([0.5, 2.0, 0.1, 1.5, 3.0, 0.7, 0.0, 2.5, 1.0, 0.2])
    for q in (1.0, 0.5, 0.2, 0.05):
        assert entropy_threshold(x, q) == pytest.approx(float(torch.quantile(x.double(), 1 - q)), abs=1e-12)
    thr = entropy_threshold(x, 0.2)  # 80th percentile: 2.0 + 0.2 * (2.5 - 2.0) = 2.1
    assert thr == pytest.approx(2.1)
    ent = torch.tensor([[0.5, 2.5, 3.0], [2.2, 0.1, 9.0]])
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    assert high_entropy_mask(ent, mask, thr).tolist() == [[0, 1, 1], [1, 0, 0]]  # padding never selected
    assert entropy_threshold(torch.tensor([]), 0.2) == float("inf")
