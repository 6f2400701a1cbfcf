"""The GRPO family of clipped policy-gradient losses (pure tensor math: no model, no config).

Shapes (``r1kit.types``): N completion rows, T completion tokens. ``logp_NT``, ``old_logp_NT``,
``ref_logp_NT`` hold the log-probability of each sampled token, ``mask_NT`` is 1 on completion
tokens that count, ``adv_N`` one advantage per completion.

Per token:  ratio = exp(logp - old_logp)                          (IS_LEVELS: or one per sequence)
            obj   = surrogate(ratio, A) - beta * KL                  (SURROGATES, by loss_type)
            clip:  min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A)   [max with c * A if A < 0]
            cispo: sg(min(ratio, 1 + eps_high)) * A * logp
            sapo:  (4 / tau) * sigmoid(tau * (ratio - 1)) * A,  tau = tau_pos if A > 0 else tau_neg
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

# The GRPO variants, as presets over the aggregation modes (and SURROGATES for the objective).
LOSS_TYPES: dict[str, str] = {
    "grpo": "seq-mean-token-mean",
    "bnpo": "token-mean",
    "dapo": "token-mean",
    "dr_grpo": "seq-mean-token-sum-norm",
    "cispo": "token-mean",  # MiniMax-M1: every token keeps its gradient, averaged over tokens
    "sapo": "seq-mean-token-mean",  # SAPO: aggregated as GRPO
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


# ---- the importance ratio: per token, or one per sequence (GSPO) -------------------------------
IS_LEVELS = ("token", "sequence", "sequence_token")


def importance_ratio(logp_NT: torch.Tensor, old_logp_NT: torch.Tensor, mask_NT: torch.Tensor, level: str) -> torch.Tensor:
    """The ratio the surrogate uses. ``token``: exp(logp - old) per token [N, T]. ``sequence``
    (GSPO): s_i = exp(sum_t mask * (logp - old) / sum_t mask), one per sequence [N, 1], its
    gradient through every token of the sequence. ``sequence_token`` (GSPO-token): sg(s_i) *
    exp(logp - sg(logp)) per token [N, T], the value s_i, the gradient of each token's own log-prob
    (the stop-gradient on s_i as in the GSPO paper). Log-ratios are clamped (``LOG_RATIO_CLAMP``)."""
    if level not in IS_LEVELS:
        raise ValueError(f"importance_sampling_level must be one of {IS_LEVELS}, got {level!r}")
    log_ratio_NT = (logp_NT - old_logp_NT).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP)
    if level == "token":
        return torch.exp(log_ratio_NT)
    seq_N1 = (log_ratio_NT * mask_NT).sum(-1, keepdim=True) / mask_NT.sum(-1, keepdim=True).clamp(min=1)
    if level == "sequence":
        return torch.exp(seq_N1)
    return torch.exp(seq_N1.detach() + logp_NT - logp_NT.detach())


# ---- surrogates: the per-token objective, from the ratio and the advantage --------------------


def clipped_surrogate(
    ratio: torch.Tensor, adv_N1: torch.Tensor, logp_NT: torch.Tensor, *,
    epsilon_low: float, epsilon_high: float, dual_clip_c: float | None = None, **_,
) -> torch.Tensor:
    """PPO's min(ratio * A, clip(ratio, 1 - eps_low, 1 + eps_high) * A); with ``dual_clip_c`` = c
    (dual-clip PPO), for A < 0 also at least c * A, so a very large ratio cannot push a negative
    advantage's update without bound."""
    obj = torch.min(ratio * adv_N1, torch.clamp(ratio, 1 - epsilon_low, 1 + epsilon_high) * adv_N1)
    if dual_clip_c is not None:
        obj = torch.where(adv_N1 < 0, torch.max(obj, dual_clip_c * adv_N1), obj)
    return obj


def cispo_surrogate(
    ratio: torch.Tensor, adv_N1: torch.Tensor, logp_NT: torch.Tensor, *, epsilon_high: float, **_,
) -> torch.Tensor:
    """CISPO (MiniMax-M1): sg(min(ratio, 1 + eps_high)) * A * logp. The weight is clipped, not
    the token: every token keeps a gradient, w * A * grad logp."""
    return torch.clamp(ratio, max=1 + epsilon_high).detach() * adv_N1 * logp_NT


def sapo_surrogate(
    ratio: torch.Tensor, adv_N1: torch.Tensor, logp_NT: torch.Tensor, *, sapo_tau_pos: float, sapo_tau_neg: float, **_,
) -> torch.Tensor:
    """SAPO (soft adaptive policy optimisation): (4 / tau) * sigmoid(tau * (ratio - 1)) * A, a
    smooth gate in place of the hard clip; its slope in the ratio is 1 at ratio = 1 (as PPO's) and
    fades away from it, faster for the larger tau (``sapo_tau_neg`` for A < 0, ``sapo_tau_pos`` for A > 0)."""
    tau = torch.where(adv_N1 > 0, sapo_tau_pos, sapo_tau_neg).to(ratio.dtype)
    return (4.0 / tau) * torch.sigmoid(tau * (ratio - 1)) * adv_N1


SURROGATES: dict[str, Callable[..., torch.Tensor]] = {
    "grpo": clipped_surrogate,
    "bnpo": clipped_surrogate,
    "dapo": clipped_surrogate,
    "dr_grpo": clipped_surrogate,
    "cispo": cispo_surrogate,
    "sapo": sapo_surrogate,
}


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
    importance_sampling_level: str = "token",
    sapo_tau_pos: float = 1.0,
    sapo_tau_neg: float = 1.05,
    dual_clip_c: float | None = None,
    pg_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Policy-gradient surrogate loss with an optional KL penalty. Returns ``(loss, metrics)``.

    Shapes: ``logp``, ``old_logp``, ``ref_logp``, ``mask`` are [N, T], ``advantages`` [N].
    ``loss_type`` picks the aggregation (``LOSS_TYPES``); ``num_tokens`` / ``num_seqs`` are the
    counted tokens and sequences of the whole optimizer step (default: this batch's), so the
    micro-batch losses of one step sum to the full-batch loss. ``max_completion_length`` is
    Dr. GRPO's constant normaliser (default: the batch width). ``is_weight`` ([N, T] or [N, 1],
    see :func:`sampling_is_weights`) multiplies each token's objective (KL term included).
    ``importance_sampling_level``: see :func:`importance_ratio`; ``sapo_tau_pos`` / ``sapo_tau_neg``:
    :func:`sapo_surrogate`; ``dual_clip_c``: :func:`clipped_surrogate` (the clip objectives only).
    ``pg_mask`` ([N, T], 0/1): tokens whose policy-gradient term counts (e.g. the high-entropy
    ones); the KL term counts on every masked token, and denominators stay the step's.

    metrics: ``clip_frac_low`` (share of tokens with ratio < 1 - eps_low and A < 0, i.e. the
    clipped side of a negative advantage), ``clip_frac_high`` (ratio > 1 + eps_high and A > 0),
    ``kl`` (masked mean KL estimate, 0 without ref), ``ratio`` (masked mean ratio); means over
    this batch's tokens.
    """
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {sorted(LOSS_TYPES)}, got {loss_type!r}")
    check_objective(loss_type, importance_sampling_level, dual_clip_c, sapo_tau_pos, sapo_tau_neg)
    eps_high = epsilon_low if epsilon_high is None else epsilon_high
    mask = mask.to(logp.dtype)
    adv_N1 = advantages.to(logp.dtype).unsqueeze(-1)
    ratio = importance_ratio(logp, old_logp, mask, importance_sampling_level)  # [N, T] or [N, 1]
    obj_NT = SURROGATES[loss_type](
        ratio, adv_N1, logp, epsilon_low=epsilon_low, epsilon_high=eps_high, dual_clip_c=dual_clip_c,
        sapo_tau_pos=sapo_tau_pos, sapo_tau_neg=sapo_tau_neg,
    ).expand_as(logp)
    if pg_mask is not None:
        obj_NT = obj_NT * pg_mask.to(obj_NT.dtype)
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

    return loss, step_metrics(ratio, adv_N1, mask, kl_NT, loss_type, epsilon_low, eps_high, dual_clip_c)


@torch.no_grad()
def step_metrics(
    ratio: torch.Tensor, adv_N1: torch.Tensor, mask_NT: torch.Tensor, kl_NT: torch.Tensor | None, loss_type: str,
    epsilon_low: float, epsilon_high: float, dual_clip_c: float | None,
) -> dict[str, float]:
    """:func:`policy_loss`'s metrics, means over the counted tokens (``ratio`` [N, T] or [N, 1])."""
    n = mask_NT.sum().clamp(min=1)
    ratio_NT = ratio.detach().expand_as(mask_NT)
    low = ((ratio_NT < 1 - epsilon_low) & (adv_N1 < 0)).to(mask_NT.dtype)
    high = ((ratio_NT > 1 + epsilon_high) & (adv_N1 > 0)).to(mask_NT.dtype)
    if loss_type == "cispo":  # only the weight's upper cap acts
        low = torch.zeros_like(low)
    metrics = {
        "clip_frac_low": float((low * mask_NT).sum() / n),
        "clip_frac_high": float((high * mask_NT).sum() / n),
        "kl": float((kl_NT.detach() * mask_NT).sum() / n) if kl_NT is not None else 0.0,
        "ratio": float((ratio_NT * mask_NT).sum() / n),
    }
    if dual_clip_c is not None:  # where c * A bounds a negative advantage's objective
        dual = ((ratio_NT > dual_clip_c) & (adv_N1 < 0)).to(mask_NT.dtype)
        metrics["clip_frac_dual"] = float((dual * mask_NT).sum() / n)
    return metrics


def entropy_threshold(entropies: torch.Tensor, top_fraction: float) -> float:
    """The entropy at the (1 - ``top_fraction``) quantile of ``entropies`` (1-D, the counted tokens
    of the whole step), linearly interpolated as ``torch.quantile`` (whose size limit it does not
    share): tokens at or above it are the top fraction ("Beyond the 80/20 rule": 0.2)."""
    if entropies.numel() == 0:
        return float("inf")
    x = entropies.double().sort().values
    pos = (1.0 - top_fraction) * (x.numel() - 1)
    lo = int(pos)
    hi = min(lo + 1, x.numel() - 1)
    return float(x[lo] + (x[hi] - x[lo]) * (pos - lo))


def high_entropy_mask(entropy_NT: torch.Tensor, mask_NT: torch.Tensor, threshold: float) -> torch.Tensor:
    """1 on counted tokens whose entropy is at least ``threshold`` (see :func:`entropy_threshold`)."""
    return ((entropy_NT >= threshold) & mask_NT.bool()).to(mask_NT.dtype)


CLIP_LOSS_TYPES = tuple(k for k, f in SURROGATES.items() if f is clipped_surrogate)
TOKEN_SUM_LOSS_TYPES = tuple(k for k, mode in LOSS_TYPES.items() if mode != "seq-mean-token-mean")


def check_objective(
    loss_type: str, importance_sampling_level: str = "token", dual_clip_c: float | None = None,
    sapo_tau_pos: float = 1.0, sapo_tau_neg: float = 1.05, prefix: str = "",
) -> None:
    """Refuse the combinations that do not make sense, naming both keys (``ValueError``), each
    after ``prefix`` (a config section: ``"grpo."``)."""
    k = {name: prefix + name for name in ("loss_type", "importance_sampling_level", "dual_clip_c", "sapo_tau_pos", "sapo_tau_neg")}
    if importance_sampling_level not in IS_LEVELS:
        raise ValueError(f"{k['importance_sampling_level']} must be one of {IS_LEVELS}, got {importance_sampling_level!r}")
    if loss_type == "cispo" and importance_sampling_level != "token":
        raise ValueError(
            f"{k['loss_type']}='cispo' with {k['importance_sampling_level']}={importance_sampling_level!r}: CISPO's weight is a "
            f"detached per-token ratio; use {k['importance_sampling_level']}='token'"
        )
    if importance_sampling_level == "sequence" and loss_type in TOKEN_SUM_LOSS_TYPES:
        raise ValueError(
            f"{k['importance_sampling_level']}='sequence' with {k['loss_type']}={loss_type!r}: GSPO's one ratio per sequence is "
            "averaged over sequences (loss_type 'grpo' or 'sapo'), not summed over tokens; "
            f"use {k['importance_sampling_level']}='sequence_token' for a token-level aggregation"
        )
    if dual_clip_c is not None:
        if loss_type not in CLIP_LOSS_TYPES:
            raise ValueError(
                f"{k['dual_clip_c']}={dual_clip_c} with {k['loss_type']}={loss_type!r}: dual clip bounds the clipped objective "
                f"of {CLIP_LOSS_TYPES}; {loss_type} has no such clip"
            )
        if not dual_clip_c > 1.0:
            raise ValueError(f"{k['dual_clip_c']} must be > 1 (c * A bounds ratio * A for A < 0), got {dual_clip_c}")
    if loss_type == "sapo" and not (sapo_tau_pos > 0 and sapo_tau_neg > 0):
        raise ValueError(f"{k['sapo_tau_pos']} and {k['sapo_tau_neg']} must be > 0, got {sapo_tau_pos} and {sapo_tau_neg}")
