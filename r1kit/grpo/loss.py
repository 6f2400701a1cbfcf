"""The GRPO family of clipped policy-gradient losses (pure tensor math: no model, no config).

Shapes (``r1kit.types``): N completion rows, T completion tokens. ``logp_NT``, ``old_logp_NT``,
``ref_logp_NT`` hold the log-probability of each sampled token, ``mask_NT`` is 1 on completion
tokens that count, ``adv_N`` one advantage per completion.

Per token:  ratio = exp(logp - old_logp)
            obj   = min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A) - beta * KL
            KL    = k1 | k2 | k3 estimate of KL(pi || pi_ref)   (KL_ESTIMATORS)
The loss is the negative objective, aggregated by the mode its ``loss_type`` names
(``LOSS_TYPES`` -> ``AGG_MODES``) over the denominators of the whole optimizer step.
"""

from __future__ import annotations

from typing import Callable

import torch


# Log-ratios are clamped to this before exp(), as verl does: one outlier token cannot overflow
# the ratio or the KL estimate to inf (exp(20) ~ 4.9e8).
LOG_RATIO_CLAMP = 20.0


def token_mean(x_NT: torch.Tensor, mask_NT: torch.Tensor, *, num_tokens: float, num_seqs: float, max_len: int) -> torch.Tensor:
    """sum over all counted tokens / ``num_tokens`` (BNPO, DAPO)."""
    return (x_NT * mask_NT).sum() / max(num_tokens, 1.0)


def seq_mean_token_mean(
    x_NT: torch.Tensor, mask_NT: torch.Tensor, *, num_tokens: float, num_seqs: float, max_len: int
) -> torch.Tensor:
    """sum over sequences of (mean over the sequence's own tokens) / ``num_seqs`` (GRPO)."""
    return ((x_NT * mask_NT).sum(-1) / mask_NT.sum(-1).clamp(min=1)).sum() / max(num_seqs, 1.0)


def seq_mean_token_sum_norm(
    x_NT: torch.Tensor, mask_NT: torch.Tensor, *, num_tokens: float, num_seqs: float, max_len: int
) -> torch.Tensor:
    """sum over all counted tokens / (``num_seqs`` * ``max_len``): no length bias (Dr. GRPO)."""
    return (x_NT * mask_NT).sum() / (max(num_seqs, 1.0) * max_len)


# Aggregation modes, named by their formula (verl's names). Each takes the denominators of the
# whole optimizer step -- every micro-batch of it, and later every process -- so the losses of
# the parts add up to the loss of the whole: gradient accumulation needs no rescaling.
AGG_MODES: dict[str, Callable[..., torch.Tensor]] = {
    "token-mean": token_mean,
    "seq-mean-token-mean": seq_mean_token_mean,
    "seq-mean-token-sum-norm": seq_mean_token_sum_norm,
}

# The GRPO variants, as presets over the aggregation modes.
LOSS_TYPES: dict[str, str] = {
    "grpo": "seq-mean-token-mean",
    "bnpo": "token-mean",
    "dapo": "token-mean",
    "dr_grpo": "seq-mean-token-sum-norm",
}


def aggregate(
    x_NT: torch.Tensor, mask_NT: torch.Tensor, mode: str, *,
    num_tokens: float | None = None, num_seqs: float | None = None, max_len: int | None = None,
) -> torch.Tensor:
    """Per-token values -> one number, by ``mode`` (``AGG_MODES``), with the step's denominators
    (default: this batch's own token count, sequence count and width)."""
    mask_NT = mask_NT.to(x_NT.dtype)
    return AGG_MODES[mode](
        x_NT, mask_NT,
        num_tokens=float(mask_NT.sum()) if num_tokens is None else float(num_tokens),
        num_seqs=float(mask_NT.shape[0]) if num_seqs is None else float(num_seqs),
        max_len=max_len or x_NT.shape[-1],
    )


def kl_k1(log_ratio_NT: torch.Tensor) -> torch.Tensor:
    """k1 = logp - ref: unbiased, can be negative."""
    return log_ratio_NT


def kl_k2(log_ratio_NT: torch.Tensor) -> torch.Tensor:
    """k2 = (logp - ref)^2 / 2: biased, low variance, >= 0."""
    return 0.5 * log_ratio_NT.square()


def kl_k3(log_ratio_NT: torch.Tensor) -> torch.Tensor:
    """k3 = exp(ref - logp) - (ref - logp) - 1: unbiased, >= 0 (DeepSeekMath's GRPO)."""
    delta_NT = -log_ratio_NT
    return torch.exp(delta_NT) - delta_NT - 1


# Estimators of KL(pi || pi_ref) per token, from the clamped log-ratio logp - ref (Schulman's k1-k3).
KL_ESTIMATORS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"k1": kl_k1, "k2": kl_k2, "k3": kl_k3}


def kl_penalty(logp_NT: torch.Tensor, ref_logp_NT: torch.Tensor, estimator: str = "k3") -> torch.Tensor:
    """Per-token KL estimate; the log-ratio is clamped to +-``LOG_RATIO_CLAMP`` first."""
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"kl_estimator must be one of {sorted(KL_ESTIMATORS)}, got {estimator!r}")
    log_ratio_NT = (logp_NT - ref_logp_NT).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    return KL_ESTIMATORS[estimator](log_ratio_NT)


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
    w = torch.exp(diff_BT.clamp(max=LOG_RATIO_CLAMP))
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
    kl_estimator: str = "k3",
    max_completion_length: int | None = None,
    is_weight: torch.Tensor | None = None,
    num_tokens: float | None = None,
    num_seqs: float | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Clipped surrogate loss with an optional KL penalty. Returns ``(loss, metrics)``.

    Shapes: ``logp``, ``old_logp``, ``ref_logp``, ``mask`` are [N, T], ``advantages`` [N].
    ``loss_type`` picks the aggregation (``LOSS_TYPES``); ``num_tokens`` / ``num_seqs`` are the
    counted tokens and sequences of the whole optimizer step (default: this batch's), so the
    micro-batch losses of one step sum to the full-batch loss. ``max_completion_length`` is
    Dr. GRPO's constant normaliser (default: the batch width). ``is_weight`` ([N, T] or [N, 1],
    see :func:`sampling_is_weights`) multiplies each token's objective (KL term included).

    metrics: ``clip_frac_low`` (share of tokens with ratio < 1 - eps_low and A < 0, i.e. the
    clipped side of a negative advantage), ``clip_frac_high`` (ratio > 1 + eps_high and A > 0),
    ``kl`` (masked mean KL estimate, 0 without ref), ``ratio`` (masked mean ratio); means over
    this batch's tokens.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {sorted(LOSS_TYPES)}, got {loss_type!r}")
    eps_high = epsilon_low if epsilon_high is None else epsilon_high
    mask = mask.to(logp.dtype)
    adv_N1 = advantages.to(logp.dtype).unsqueeze(-1)
    ratio_NT = torch.exp((logp - old_logp).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP))
    unclipped = ratio_NT * adv_N1
    clipped = torch.clamp(ratio_NT, 1 - epsilon_low, 1 + eps_high) * adv_N1
    obj_NT = torch.min(unclipped, clipped)
    kl_NT = None
    if ref_logp is not None and beta != 0.0:
        kl_NT = kl_penalty(logp, ref_logp, kl_estimator)
        obj_NT = obj_NT - beta * kl_NT
    if is_weight is not None:
        obj_NT = obj_NT * is_weight.to(obj_NT.dtype)
    loss = -aggregate(
        obj_NT, mask, LOSS_TYPES[loss_type], num_tokens=num_tokens, num_seqs=num_seqs,
        max_len=max_completion_length or logp.shape[-1],
    )

    with torch.no_grad():
        n = mask.sum().clamp(min=1)
        low = ((ratio_NT < 1 - epsilon_low) & (adv_N1 < 0)).to(mask.dtype)
        high = ((ratio_NT > 1 + eps_high) & (adv_N1 > 0)).to(mask.dtype)
        metrics = {
            "clip_frac_low": float((low * mask).sum() / n),
            "clip_frac_high": float((high * mask).sum() / n),
            "kl": float((kl_NT * mask).sum() / n) if kl_NT is not None else 0.0,
            "ratio": float((ratio_NT * mask).sum() / n),
        }
    return loss, metrics
