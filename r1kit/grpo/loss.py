"""The GRPO family of clipped policy-gradient losses (pure tensor math: no model, no config).

Shapes: B sequences, T completion tokens. ``logp_BT``, ``old_logp_BT``, ``ref_logp_BT`` hold the
log-probability of each sampled token, ``mask_BT`` is 1 on completion tokens that count, ``adv_B``
one advantage per sequence.

Per token:  ratio = exp(logp - old_logp)
            obj   = min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A) - beta * KL
            KL    = exp(ref - logp) - (ref - logp) - 1          (k3 estimator, >= 0)
The loss is the negative objective, aggregated by ``loss_type`` (see LOSS_TYPES).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


def _seq_mean(x_BT: torch.Tensor, mask_BT: torch.Tensor, max_len: int) -> torch.Tensor:
    """GRPO: mean over each sequence's own tokens, then mean over sequences."""
    return ((x_BT * mask_BT).sum(-1) / mask_BT.sum(-1).clamp(min=1)).mean()


def _token_mean(x_BT: torch.Tensor, mask_BT: torch.Tensor, max_len: int) -> torch.Tensor:
    """BNPO / DAPO: sum over all tokens / number of completion tokens in the batch."""
    return (x_BT * mask_BT).sum() / mask_BT.sum().clamp(min=1)


def _constant_norm(x_BT: torch.Tensor, mask_BT: torch.Tensor, max_len: int) -> torch.Tensor:
    """Dr. GRPO: sum over all tokens / (B * max_completion_length), no length bias."""
    return (x_BT * mask_BT).sum() / (x_BT.shape[0] * max_len)


@dataclass(frozen=True)
class LossType:
    """How a variant aggregates per-token losses, and the unit its normaliser counts
    ("sequence" or "token"): a micro-batch carries that share of the full-batch loss, so gradient
    accumulation over micro-batches equals one big batch."""

    aggregate: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]
    per: str


LOSS_TYPES: dict[str, LossType] = {
    "grpo": LossType(_seq_mean, "sequence"),
    "bnpo": LossType(_token_mean, "token"),
    "dapo": LossType(_token_mean, "token"),
    "dr_grpo": LossType(_constant_norm, "sequence"),
}


def micro_batch_weight(loss_type: str, mask_mb: torch.Tensor, mask_full: torch.Tensor) -> float:
    """Factor that turns a micro-batch loss into its share of the full-batch loss."""
    if LOSS_TYPES[loss_type].per == "token":
        return max(1, int(mask_mb.sum())) / max(1, int(mask_full.sum()))
    return mask_mb.shape[0] / mask_full.shape[0]


IS_MODES = ("none", "token_truncate", "token_mask", "sequence_truncate", "sequence_mask")


def sampling_is_weights(
    old_logp_BT: torch.Tensor, sampling_logp_BT: torch.Tensor, mask_BT: torch.Tensor, mode: str, cap: float
) -> torch.Tensor:
    """Importance weights that correct for sampling with a different engine (e.g. vLLM).

    The completions were drawn from the rollout engine's distribution q, not from the learner's
    pi_old; per token w = pi_old / q = exp(old_logp - sampling_logp). ``sequence_*`` modes use
    one weight per sequence, exp(sum over its tokens). ``*_truncate``: w = min(w, cap) (TIS);
    ``*_mask``: w = 0 where w > cap. Returns [B, T] (token modes) or [B, 1] (sequence modes),
    detached; all ones for ``"none"``.
    """
    if mode not in IS_MODES:
        raise ValueError(f"is_correction must be one of {IS_MODES}, got {mode!r}")
    diff_BT = ((old_logp_BT - sampling_logp_BT) * mask_BT).detach().float()
    if mode == "none":
        return torch.ones_like(diff_BT)
    if mode.startswith("sequence"):
        diff_BT = diff_BT.sum(-1, keepdim=True)
    w = torch.exp(diff_BT)
    if mode.endswith("truncate"):
        return w.clamp(max=cap)
    return w.masked_fill(w > cap, 0.0)


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    ref_logp: torch.Tensor | None = None,
    *,
    loss_type: str = "grpo",
    epsilon_low: float = 0.2,
    epsilon_high: float | None = None,
    beta: float = 0.0,
    max_completion_length: int | None = None,
    is_weight: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate loss with an optional k3 KL penalty. Returns ``(loss, metrics)``.

    ``is_weight`` ([B, T] or [B, 1], see :func:`sampling_is_weights`) multiplies each token's
    objective (KL term included) before aggregation.

    metrics: ``clip_frac_low`` (share of tokens with ratio < 1 - eps_low and A < 0, i.e. the
    clipped side of a negative advantage), ``clip_frac_high`` (ratio > 1 + eps_high and A > 0),
    ``kl`` (masked mean k3 KL, 0 without ref), ``ratio`` (masked mean ratio).
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {sorted(LOSS_TYPES)}, got {loss_type!r}")
    eps_high = epsilon_low if epsilon_high is None else epsilon_high
    mask = mask.to(logp.dtype)
    adv_B1 = advantages.to(logp.dtype).unsqueeze(-1)
    ratio_BT = torch.exp(logp - old_logp)
    unclipped = ratio_BT * adv_B1
    clipped = torch.clamp(ratio_BT, 1 - epsilon_low, 1 + eps_high) * adv_B1
    obj_BT = torch.min(unclipped, clipped)
    kl_BT = None
    if ref_logp is not None and beta != 0.0:
        delta = ref_logp - logp
        kl_BT = torch.exp(delta) - delta - 1
        obj_BT = obj_BT - beta * kl_BT
    if is_weight is not None:
        obj_BT = obj_BT * is_weight.to(obj_BT.dtype)
    max_len = max_completion_length or logp.shape[-1]
    loss = -LOSS_TYPES[loss_type].aggregate(obj_BT, mask, max_len)

    with torch.no_grad():
        n = mask.sum().clamp(min=1)
        low = ((ratio_BT < 1 - epsilon_low) & (adv_B1 < 0)).to(mask.dtype)
        high = ((ratio_BT > 1 + eps_high) & (adv_B1 > 0)).to(mask.dtype)
        metrics = {
            "clip_frac_low": float((low * mask).sum() / n),
            "clip_frac_high": float((high * mask).sum() / n),
            "kl": float((kl_BT * mask).sum() / n) if kl_BT is not None else 0.0,
            "ratio": float((ratio_BT * mask).sum() / n),
        }
    return loss, metrics
