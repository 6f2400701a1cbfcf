"""Importance-sampling correction for a rollout engine other than the learner (vLLM): weights
worked out by hand, policy_loss with is_weight, and what Learner.step does with sampling log-probs."""

import copy
import math

import pytest
import torch

from r1kit.config import GRPOSection, TrainSection
from r1kit.grpo.learner import Learner, make_batch, sampling_mismatch, token_stats
from r1kit.grpo.lm_head import chunkable_head
from r1kit.grpo.loss import policy_loss, sampling_is_weights
from r1kit.types import Group, Sample

# Two sequences, three token slots; the last slot of row 1 is padding (mask 0) with a wild value.
OLD = torch.tensor([[-1.0, -2.0, -0.3], [-0.5, -0.7, -9.0]])
SAMP = torch.tensor([[-1.5, -1.0, -0.3], [-0.9, -0.6, -1.0]])
MASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
# old - sampling on real tokens: row0 = 0.5, -1.0, 0.0 ; row1 = 0.4, -0.1
# per sequence: row0 sum = -0.5, row1 sum = 0.3 (the padded -8.0 must not count)
E = math.exp


def _close(t, expected, atol=1e-6):
    assert t.shape == torch.Size([len(expected), len(expected[0])]), t.shape
    assert torch.allclose(t.double(), torch.tensor(expected, dtype=torch.float64), atol=atol), t.tolist()


def test_token_weights_by_hand():
    w = sampling_is_weights(OLD, SAMP, MASK, "token_truncate", float("inf"))
    _close(w[:, :2], [[E(0.5), E(-1.0)], [E(0.4), E(-0.1)]])
    assert w[0, 2] == pytest.approx(1.0)  # equal log-probs: weight 1


def test_simple_pair():
    w = sampling_is_weights(torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]]), torch.ones(1, 2), "token_truncate", 10.0)
    _close(w, [[E(0.5), E(-1.0)]])
    w = sampling_is_weights(torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]]), torch.ones(1, 2), "token_truncate", 1.5)
    _close(w, [[1.5, E(-1.0)]])  # e^0.5 = 1.6487 truncated to the cap
    w = sampling_is_weights(torch.tensor([[-1.0, -2.0]]), torch.tensor([[-1.5, -1.0]]), torch.ones(1, 2), "token_mask", 1.5)
    _close(w, [[0.0, E(-1.0)]])  # above the cap: dropped


def test_token_truncate_and_mask():
    t = sampling_is_weights(OLD, SAMP, MASK, "token_truncate", 1.5)
    _close(t[:, :2], [[1.5, E(-1.0)], [E(0.4), E(-0.1)]])  # e^0.4 = 1.4918 stays under 1.5
    m = sampling_is_weights(OLD, SAMP, MASK, "token_mask", 1.5)
    _close(m[:, :2], [[0.0, E(-1.0)], [E(0.4), E(-0.1)]])
    # the padded slot (old - sampling = -8.0 there) gets weight 1: neutral, never capped or zeroed
    assert t[1, 2] == pytest.approx(1.0) and m[1, 2] == pytest.approx(1.0)


def test_sequence_modes_sum_masked_tokens():
    w = sampling_is_weights(OLD, SAMP, MASK, "sequence_truncate", float("inf"))
    _close(w, [[E(-0.5)], [E(0.3)]])  # [B, 1]; with the padded -8 row 1 would be e^-7.7
    t = sampling_is_weights(OLD, SAMP, MASK, "sequence_truncate", 1.2)
    _close(t, [[E(-0.5)], [1.2]])  # e^0.3 = 1.3499 > 1.2
    m = sampling_is_weights(OLD, SAMP, MASK, "sequence_mask", 1.2)
    _close(m, [[E(-0.5)], [0.0]])
    # a large masked difference in the other direction must not zero the sequence either
    samp = SAMP.clone()
    samp[1, 2] = -50.0
    _close(sampling_is_weights(OLD, samp, MASK, "sequence_mask", 1.4), [[E(-0.5)], [E(0.3)]])


def test_none_is_ones_and_bad_mode():
    w = sampling_is_weights(OLD, SAMP, MASK, "none", 1.5)
    assert w.shape == OLD.shape and torch.equal(w, torch.ones_like(OLD))
    with pytest.raises(ValueError, match="is_correction"):
        sampling_is_weights(OLD, SAMP, MASK, "token_clip", 1.5)


def test_weights_are_detached():
    old = OLD.clone().requires_grad_(True)
    for mode in ("token_truncate", "sequence_mask"):
        assert not sampling_is_weights(old, SAMP, MASK, mode, 2.0).requires_grad


def test_sampling_mismatch_by_hand():
    m = sampling_mismatch(OLD, SAMP, MASK, "token_truncate", 1.5)
    assert m["sampling/logp_diff/mean"] == pytest.approx((0.5 + 1.0 + 0.0 + 0.4 + 0.1) / 5, abs=1e-6)
    assert m["sampling/logp_diff/max"] == pytest.approx(1.0, abs=1e-6)  # padded |-8| ignored
    assert m["sampling/is_weight/mean"] == pytest.approx((1.5 + E(-1) + 1 + E(0.4) + E(-0.1)) / 5, abs=1e-6)
    assert m["sampling/is_capped_frac"] == pytest.approx(1 / 5)
    s = sampling_mismatch(OLD, SAMP, MASK, "sequence_truncate", 1.2)
    assert s["sampling/is_weight/mean"] == pytest.approx((3 * E(-0.5) + 2 * 1.2) / 5, abs=1e-6)
    assert s["sampling/is_capped_frac"] == pytest.approx(2 / 5)  # row 1's two tokens
    n = sampling_mismatch(OLD, SAMP, MASK, "none", 1.5)
    assert n["sampling/is_weight/mean"] == pytest.approx(1.0)
    assert n["sampling/logp_diff/max"] == pytest.approx(1.0, abs=1e-6)
    assert sampling_mismatch(OLD, SAMP, torch.zeros_like(MASK), "token_truncate", 1.5) == {}


# -- policy_loss with is_weight (same numbers as test_loss.py) -----------------------------------
LOGP = torch.tensor([[-1.0, -2.0, -0.5], [-0.3, -1.2, 0.0]], dtype=torch.float64)
LOLD = torch.tensor([[-1.1, -1.5, -0.5], [-0.3, -0.8, 0.0]], dtype=torch.float64)
REF = torch.tensor([[-1.0, -1.8, -0.7], [-0.5, -1.2, 0.0]], dtype=torch.float64)
LMASK = torch.tensor([[1, 1, 1], [1, 1, 0]])
ADV = torch.tensor([1.0, -2.0], dtype=torch.float64)
ROW0 = [E(0.1), E(-0.5), 1.0]  # clipped objective per token, see test_loss.py
ROW1 = [-2.0, -1.6]
W = torch.tensor([[0.5, 2.0, 1.0], [1.5, 0.25, 7.0]])  # the 7.0 sits on padding


def test_policy_loss_token_weight_grpo():
    loss, m = policy_loss(LOGP, LOLD, ADV, LMASK, loss_type="grpo", is_weight=W)
    a = 0.5 * ROW0[0] + 2.0 * ROW0[1] + 1.0 * ROW0[2]
    b = 1.5 * ROW1[0] + 0.25 * ROW1[1]
    assert loss.item() == pytest.approx(-((a / 3 + b / 2) / 2), abs=1e-6)
    assert loss.item() == pytest.approx(0.389058870, abs=1e-6)
    _, m0 = policy_loss(LOGP, LOLD, ADV, LMASK, loss_type="grpo")
    assert m == m0  # diagnostics describe the policy ratio, not the correction


def test_policy_loss_token_weight_dr_grpo():
    loss, _ = policy_loss(LOGP, LOLD, ADV, LMASK, loss_type="dr_grpo", max_completion_length=4, is_weight=W)
    a = 0.5 * ROW0[0] + 2.0 * ROW0[1] + 1.0 * ROW0[2]
    b = 1.5 * ROW1[0] + 0.25 * ROW1[1]
    assert loss.item() == pytest.approx(-(a + b) / (2 * 4), abs=1e-6)
    assert loss.item() == pytest.approx(0.079294153, abs=1e-6)


def test_policy_loss_sequence_weight_and_ones():
    loss, _ = policy_loss(LOGP, LOLD, ADV, LMASK, loss_type="grpo", is_weight=torch.tensor([[0.5], [2.0]]))
    assert loss.item() == pytest.approx(-((0.5 * sum(ROW0) / 3 + 2.0 * sum(ROW1) / 2) / 2), abs=1e-6)
    assert loss.item() == pytest.approx(1.574024869, abs=1e-6)
    plain, _ = policy_loss(LOGP, LOLD, ADV, LMASK, loss_type="grpo")
    ones, _ = policy_loss(LOGP, LOLD, ADV, LMASK, loss_type="grpo", is_weight=torch.ones(2, 3))
    assert ones.item() == plain.item()


def test_policy_loss_weight_multiplies_kl_term():
    beta = 0.1
    kl0 = [0.0, E(0.2) - 1.2, E(-0.2) + 0.2 - 1]  # k3 with delta = ref - logp = 0, 0.2, -0.2
    kl1 = [E(-0.2) + 0.2 - 1, 0.0]
    loss, m = policy_loss(LOGP, LOLD, ADV, LMASK, REF, loss_type="grpo", beta=beta, is_weight=W)
    a = sum(w * (o - beta * k) for w, o, k in zip([0.5, 2.0, 1.0], ROW0, kl0))
    b = sum(w * (o - beta * k) for w, o, k in zip([1.5, 0.25], ROW1, kl1))
    assert loss.item() == pytest.approx(-((a / 3 + b / 2) / 2), abs=1e-6)
    assert m["kl"] == pytest.approx((sum(kl0) + sum(kl1)) / 5, abs=1e-6)  # unweighted


def test_policy_loss_weight_scales_gradient():
    logp = LOGP.clone().requires_grad_(True)
    loss, _ = policy_loss(logp, LOLD, ADV, LMASK, loss_type="bnpo", is_weight=W)
    loss.backward()
    g = logp.grad.clone()
    logp.grad = None
    plain, _ = policy_loss(logp, LOLD, ADV, LMASK, loss_type="bnpo")
    plain.backward()
    expected = logp.grad * W.double() * LMASK
    assert torch.allclose(g, expected, atol=1e-9)


# -- make_batch and Learner.step -------------------------------------------------------------
# per-token offsets: sampling log-prob = the learner's own - offset, so old - sampling = offset.
# Row lengths 3, 4, 2, 4; the largest |offset| (0.9) is in row 2, i.e. the third micro-batch of
# size 1 (an average of per-micro-batch maxima would give (0.2 + 0.3 + 0.9 + 0.6) / 4 = 0.5).
OFFSETS = [[0.1, -0.2, 0.05], [0.3, 0.0, -0.1, 0.2], [-0.9, 0.4], [0.2, 0.1, -0.3, 0.6]]
FLAT = [o for row in OFFSETS for o in row]
ADVS = torch.tensor([1.0, -1.0, 0.5, -0.5])


def _groups(tok, logps=None):
    p1 = tok("What is 3 + 4? <think>")["input_ids"]
    p2 = tok("Hi <think>")["input_ids"]
    eos = tok.eos_token_id
    lp = logps or [None, None]
    return [
        Group(Sample("a"), p1, [[5, 6, eos], [7, 8, 9, 10]], ["", ""], [False, True], lp[0]),
        Group(Sample("b"), p2, [[11, eos], [12, 13, 14, eos]], ["", ""], [False, False], lp[1]),
    ]


def test_make_batch_fills_sampling_logps(tok):
    lps = [[[-0.1, -0.2, -0.3], [-1.0, -2.0, -3.0, -4.0]], [[-0.5, -0.6], [-0.7, -0.8, -0.9, -1.1]]]
    b = make_batch(_groups(tok, lps), ADVS, tok.pad_token_id)
    expected = [[-0.1, -0.2, -0.3, 0.0], [-1.0, -2.0, -3.0, -4.0], [-0.5, -0.6, 0.0, 0.0], [-0.7, -0.8, -0.9, -1.1]]
    assert b.sampling_logp_NT.dtype == torch.float32
    assert torch.allclose(b.sampling_logp_NT, torch.tensor(expected))
    sub = b.select(torch.tensor([2]))  # trimmed with the completion columns
    assert torch.allclose(sub.sampling_logp_NT, torch.tensor([[-0.5, -0.6]]))
    assert make_batch(_groups(tok), ADVS, tok.pad_token_id).sampling_logp_NT is None
    partial = _groups(tok, [lps[0], None])  # one group without engine log-probs: none at all
    assert make_batch(partial, ADVS, tok.pad_token_id).sampling_logp_NT is None


def _own_logps(model, tok, micro):
    """The learner's own log-probs, computed exactly as Learner.step computes them (same
    micro-batches, train mode), so a zero offset gives bitwise-equal values."""
    m = copy.deepcopy(model).train()
    chunk = TrainSection().logit_chunk
    b = make_batch(_groups(tok), ADVS, tok.pad_token_id)
    out = torch.zeros(b.completion_ids_NT.shape)
    with torch.no_grad():
        for lo in range(0, len(b), micro):
            idx = torch.arange(lo, min(lo + micro, len(b)))
            mb = b.select(idx)  # the learner's chunked head, as it computes them
            out[idx, : mb.completion_ids_NT.shape[1]] = token_stats(m, mb, chunk, head=chunkable_head(m))[0]
    return out


def _batch(model, tok, micro, offsets=None):
    """A batch whose groups carry sampling log-probs = own - offsets (None: no sampling log-probs)."""
    if offsets is None:
        return make_batch(_groups(tok), ADVS, tok.pad_token_id)
    own = _own_logps(model, tok, micro)
    rows = [[float(own[i, t]) - o for t, o in enumerate(off)] for i, off in enumerate(offsets)]
    return make_batch(_groups(tok, [rows[:2], rows[2:]]), ADVS, tok.pad_token_id)


def _step(model, batch, mode, micro, cap=1.5):
    m = copy.deepcopy(model)
    learner = Learner(m, None, GRPOSection(is_correction=mode, is_cap=cap), TrainSection(micro_batch_size=micro, lr=1e-2), 8)
    before = {n: p.detach().clone() for n, p in m.named_parameters()}
    stats = learner.step(batch)
    return {n: p.detach() - before[n] for n, p in m.named_parameters()}, stats


def _same(a, b):
    return all(torch.equal(a[n], b[n]) for n in a)


@pytest.mark.parametrize("micro", [1, 2])
def test_step_reports_mismatch_metrics(tok, model, micro):
    batch = _batch(model, tok, micro, OFFSETS)
    assert batch.sampling_logp_NT is not None
    _, stats = _step(model, batch, "token_truncate", micro)
    mags = [abs(o) for o in FLAT]
    assert stats["sampling/logp_diff/mean"] == pytest.approx(sum(mags) / len(mags), abs=1e-4)
    assert stats["sampling/logp_diff/max"] == pytest.approx(0.9, abs=1e-4)  # a max over micro-batches
    assert stats["sampling/is_weight/mean"] == pytest.approx(sum(min(E(o), 1.5) for o in FLAT) / len(FLAT), abs=1e-4)
    assert stats["sampling/is_capped_frac"] == pytest.approx(1 / 13, abs=1e-6)  # e^0.6 > 1.5 only


def test_step_max_is_not_an_average_over_micro_batches(tok, model):
    # one large offset in the last micro-batch, all others small
    offsets = [[0.01] * 3, [0.01] * 4, [0.01] * 2, [0.01, 0.01, 0.01, 0.8]]
    _, stats = _step(model, _batch(model, tok, 1, offsets), "token_truncate", 1)
    assert stats["sampling/logp_diff/max"] == pytest.approx(0.8, abs=1e-4)


def test_correction_changes_update_only_when_engines_disagree(tok, model):
    micro = 2
    none_upd, none_stats = _step(model, _batch(model, tok, micro, OFFSETS), "none", micro)
    tis_upd, _ = _step(model, _batch(model, tok, micro, OFFSETS), "token_truncate", micro)
    assert not _same(none_upd, tis_upd)
    assert none_stats["sampling/is_weight/mean"] == pytest.approx(1.0)  # "none": reported, not applied

    plain_upd, plain_stats = _step(model, _batch(model, tok, micro), "token_truncate", micro)
    assert _same(none_upd, plain_upd)  # "none" with sampling log-probs = no sampling log-probs
    assert not any(k.startswith("sampling/") for k in plain_stats)
    assert any(v.abs().max() > 0 for v in plain_upd.values())

    zero = [[0.0] * len(r) for r in OFFSETS]
    exact_batch = _batch(model, tok, micro, zero)
    assert exact_batch.sampling_logp_NT is not None
    exact_upd, exact_stats = _step(model, exact_batch, "token_truncate", micro)
    assert exact_stats["sampling/logp_diff/max"] == 0.0
    assert exact_stats["sampling/is_weight/mean"] == 1.0
    assert _same(exact_upd, plain_upd)
    seq_upd, _ = _step(model, _batch(model, tok, micro, zero), "sequence_mask", micro)
    assert _same(seq_upd, plain_upd)


def test_no_sampling_logps_same_update_for_every_mode(tok, model):
    ref, ref_stats = _step(model, _batch(model, tok, 2), "none", 2)
    for mode in ("token_truncate", "sequence_mask"):
        upd, stats = _step(model, _batch(model, tok, 2), mode, 2)
        assert _same(ref, upd), mode
        assert not any(k.startswith("sampling/") for k in stats)
    assert set(ref_stats) >= {"loss", "grad_norm", "entropy", "ratio", "lr"}
