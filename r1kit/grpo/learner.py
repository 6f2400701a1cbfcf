"""The learner: per-token log-probs, micro-batched gradient accumulation, AdamW, LR schedule.

Shapes: B rows (completions), P prompt width, C completion width, V vocab.
"""

from __future__ import annotations

import math

import torch

from r1kit.config import GRPOConfig, TrainConfig
from r1kit.grpo.loss import micro_batch_weight, policy_loss, sampling_is_weights
from r1kit.models import autocast, reference_context
from r1kit.types import Batch, Group


def selective_log_softmax(logits_BCV: torch.Tensor, index_BC: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """log softmax(logits)[index] in float32, ``chunk`` rows at a time.

    Only a [chunk, V] float32 buffer exists at once: logp = logit[index] - logsumexp(logits).
    """
    flat_NV = logits_BCV.reshape(-1, logits_BCV.shape[-1])
    flat_idx = index_BC.reshape(-1)
    out = []
    for lo in range(0, flat_NV.shape[0], chunk):
        rows = flat_NV[lo : lo + chunk].float()
        picked = rows.gather(-1, flat_idx[lo : lo + chunk, None]).squeeze(-1)
        out.append(picked - torch.logsumexp(rows, dim=-1))
    return torch.cat(out).view(index_BC.shape)


@torch.no_grad()
def entropy_sum(logits_BCV: torch.Tensor, mask_BC: torch.Tensor, chunk: int = 1024) -> float:
    """Sum over masked tokens of the entropy of the next-token distribution (no graph kept)."""
    flat_NV = logits_BCV.detach().reshape(-1, logits_BCV.shape[-1])
    flat_m = mask_BC.reshape(-1)
    total = 0.0
    for lo in range(0, flat_NV.shape[0], chunk):
        m = flat_m[lo : lo + chunk]
        if not m.any():
            continue
        logp = torch.log_softmax(flat_NV[lo : lo + chunk][m.bool()].float(), dim=-1)
        total += float(-(logp.exp() * logp).sum())
    return total


def _plain_logits(model, batch: Batch) -> torch.Tensor:
    input_ids = torch.cat([batch.prompt_ids_BP, batch.completion_ids_BC], dim=1)
    C = batch.completion_ids_BC.shape[1]
    attn = torch.cat([batch.prompt_mask_BP, torch.ones_like(batch.completion_ids_BC)], dim=1)
    # positions count real tokens, as during generation with left padding
    pos = (attn.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=input_ids, attention_mask=attn, position_ids=pos, use_cache=False, logits_to_keep=C + 1)
    return out.logits[:, :-1]


def _repeat_rows(x: torch.Tensor, inverse_B: torch.Tensor, U: int) -> torch.Tensor:
    """``x[inverse_B]`` along dim 0, with a backward pass that sums the same way every time.

    ``x[idx]`` with repeated indices backpropagates through an accumulating ``index_put_``, whose
    sum order on CPU depends on thread scheduling (the last bits of the gradient change from run to
    run). ``expand`` (one distinct row: a view, no copy; backward is a plain reduction) and
    ``index_select`` (backward: ``index_add_``, in index order) give the same values and the same
    gradient bits on every pass.
    """
    if U == 1:
        return x.expand(inverse_B.shape[0], *x.shape[1:])
    return x.index_select(0, inverse_B)


def _repeat_cache_rows(cache, inverse_B: torch.Tensor, U: int) -> None:
    """Row b of the cache becomes row ``inverse_B[b]``, in every layer (deterministic backward).

    Replaces ``DynamicCache.batch_select_indices``, which indexes with ``[indices]``. Attention
    layers of transformers' dynamic caches (full, sliding-window, indexed) keep ``keys``/``values``
    (and ``indexer_keys``) as [batch, ...] tensors; any other kind of layer (linear-attention
    states) is left to its own ``reorder_cache``, which transformers implements with ``index_select``.
    """
    from transformers import cache_utils

    recurrent = getattr(cache_utils, "LinearAttentionCacheLayerMixin", ())
    for layer in cache.layers:
        if recurrent and isinstance(layer, recurrent):  # hybrids' reorder_cache covers their keys too
            layer.reorder_cache(inverse_B)
            continue
        for name in ("keys", "values", "indexer_keys"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor) and t.dim() > 0 and t.numel() > 0:
                setattr(layer, name, _repeat_rows(t, inverse_B, U))


def _shared_prompt_logits(model, batch: Batch, uniq_UP: torch.Tensor, inverse_B: torch.Tensor) -> torch.Tensor:
    """Run each distinct prompt once, then all completions against its (repeated) KV cache.

    Exact: the same attention as the plain path, but the G copies of a prompt are computed once
    in the forward pass and their gradients summed in the backward pass (G x less prompt work).
    The repeat is an ``expand``/``index_select``, never ``x[inverse_B]``: see :func:`_repeat_rows`.
    """
    from transformers import DynamicCache

    P = batch.prompt_ids_BP.shape[1]
    U = uniq_UP.shape[0]
    ids_UP, mask_UP = uniq_UP[:, :P], uniq_UP[:, P:]
    cache = DynamicCache(config=getattr(model, "config", None))
    out = model(
        input_ids=ids_UP, attention_mask=mask_UP, position_ids=(mask_UP.cumsum(-1) - 1).clamp(min=0),
        past_key_values=cache, use_cache=True, logits_to_keep=1,
    )
    cache = out.past_key_values
    _repeat_cache_rows(cache, inverse_B, U)
    first_B1V = _repeat_rows(out.logits[:, -1:], inverse_B, U)
    C = batch.completion_ids_BC.shape[1]
    if C == 1:
        return first_B1V
    B = batch.completion_ids_BC.shape[0]
    attn = torch.cat([batch.prompt_mask_BP, batch.prompt_mask_BP.new_ones((B, C - 1))], dim=1)
    pos = batch.prompt_mask_BP.sum(-1, keepdim=True) + torch.arange(C - 1, device=attn.device)
    rest = model(
        input_ids=batch.completion_ids_BC[:, :-1], attention_mask=attn, position_ids=pos,
        past_key_values=cache, use_cache=True,
    ).logits
    return torch.cat([first_B1V, rest], dim=1)


def completion_logits(model, batch: Batch, temperature: float = 1.0) -> torch.Tensor:
    """Logits [B, C, V] predicting each completion token; only completion positions are projected
    to the vocabulary, and prompts shared by several rows (a GRPO group) are run once.

    Divided by the sampling ``temperature`` (when > 0), so log-probs are those of the
    distribution the completions were drawn from."""
    logits = _completion_logits(model, batch)
    return logits / temperature if temperature > 0 and temperature != 1.0 else logits


def _completion_logits(model, batch: Batch) -> torch.Tensor:
    checkpointing = getattr(model, "is_gradient_checkpointing", False) and model.training
    if not checkpointing:  # HF turns the KV cache off under gradient checkpointing
        key_BK = torch.cat([batch.prompt_ids_BP, batch.prompt_mask_BP], dim=1)
        uniq_UK, inverse_B = torch.unique(key_BK, dim=0, return_inverse=True)
        if uniq_UK.shape[0] < key_BK.shape[0]:
            return _shared_prompt_logits(model, batch, uniq_UK, inverse_B)
    return _plain_logits(model, batch)


def token_logprobs(model, batch: Batch, chunk: int = 1024, temperature: float = 1.0) -> torch.Tensor:
    return selective_log_softmax(completion_logits(model, batch, temperature), batch.completion_ids_BC, chunk)


def make_batch(groups: list[Group], adv_B: torch.Tensor, pad_id: int, mask_truncated: bool = False) -> Batch:
    """Groups + advantages -> left-padded prompts, right-padded completions (one row per completion)."""
    rows = [(g.prompt_ids, ids, trunc) for g in groups for ids, trunc in zip(g.completion_ids, g.truncated)]
    B = len(rows)
    P = max(len(p) for p, _, _ in rows)
    C = max(1, max(len(c) for _, c, _ in rows))
    prompt_ids = torch.full((B, P), pad_id, dtype=torch.long)
    prompt_mask = torch.zeros((B, P), dtype=torch.long)
    comp_ids = torch.full((B, C), pad_id, dtype=torch.long)
    lengths = torch.zeros(B, dtype=torch.long)
    keep = torch.ones(B, dtype=torch.bool)
    for i, (p, c, trunc) in enumerate(rows):
        prompt_ids[i, P - len(p) :] = torch.tensor(p)
        prompt_mask[i, P - len(p) :] = 1
        comp_ids[i, : len(c)] = torch.tensor(c, dtype=torch.long)
        lengths[i] = len(c)
        keep[i] = not (mask_truncated and trunc)
    mask = (torch.arange(C)[None, :] < lengths[:, None]) & keep[:, None]
    sampling = None
    if groups and all(g.sampling_logps is not None for g in groups):
        sampling = torch.zeros((B, C))
        for i, lp in enumerate(lp for g in groups for lp in g.sampling_logps):
            sampling[i, : len(lp)] = torch.tensor(lp, dtype=torch.float32)
    return Batch(prompt_ids, prompt_mask, comp_ids, lengths, mask.long(), adv_B.float(), sampling_logp_BC=sampling)


def sampling_mismatch(
    old_logp_BT: torch.Tensor, sampling_logp_BT: torch.Tensor, mask_BT: torch.Tensor, mode: str, cap: float,
    is_weight: torch.Tensor | None = None,
) -> dict[str, float]:
    """How far the rollout engine's log-probs are from the learner's, over completion tokens:
    mean and max |old_logp - sampling_logp|, the mean importance weight the correction applies
    (1 with ``none``), and the share of tokens whose raw ratio exceeds ``is_cap`` (per token, or
    per sequence for ``sequence_*`` modes), i.e. where truncation or masking acts.
    ``is_weight``: the weights already computed for this ``mode`` and ``cap``, if at hand."""
    m = mask_BT.bool()
    if not m.any():
        return {}
    diff_BT = old_logp_BT.detach().float() - sampling_logp_BT.float()
    level = "sequence" if mode.startswith("sequence") else "token"
    raw = sampling_is_weights(old_logp_BT, sampling_logp_BT, mask_BT, f"{level}_truncate", float("inf"))
    w = sampling_is_weights(old_logp_BT, sampling_logp_BT, mask_BT, mode, cap) if is_weight is None else is_weight
    return {
        "sampling/logp_diff/mean": float(diff_BT.abs()[m].mean()),
        "sampling/logp_diff/max": float(diff_BT.abs()[m].max()),
        "sampling/is_weight/mean": float(w.expand_as(mask_BT)[m].mean()),
        "sampling/is_capped_frac": float((raw > cap).expand_as(mask_BT)[m].float().mean()),
    }


def lr_lambda(schedule: str, warmup: int, total: int):
    """Multiplier on the base LR at optimizer step s: linear warmup, then constant/linear/cosine to 0."""

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "linear":
            return 1.0 - progress
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return f


class Learner:
    """Owns the optimizer and scheduler; ``step(batch)`` runs mu passes of micro-batched updates."""

    def __init__(
        self, policy, ref, grpo: GRPOConfig, train: TrainConfig, max_completion_length: int, temperature: float = 1.0,
        amp: torch.dtype | None = None,
    ):
        self.amp = amp  # autocast dtype for forward passes (None: the weights' dtype)
        self.policy, self.ref, self.grpo, self.train_cfg = policy, ref, grpo, train
        self.temperature = temperature  # the rollout's: log-probs of the sampling distribution
        self.max_completion_length = max_completion_length  # the Dr. GRPO normaliser
        params = [p for p in policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=train.lr, betas=(train.adam_beta1, train.adam_beta2), weight_decay=train.weight_decay
        )
        total = max(1, train.max_steps * grpo.num_iterations)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(train.lr_schedule, train.warmup_steps, total)
        )
        self.device = next(policy.parameters()).device

    def _micro_batches(self, batch: Batch) -> list[torch.Tensor]:
        # Contiguous rows: a group's completions stay together, so its prompt is run once.
        mb = self.train_cfg.micro_batch_size
        return [torch.arange(i, min(i + mb, len(batch))) for i in range(0, len(batch), mb)]

    @torch.no_grad()
    def _fill_logprobs(self, batch: Batch) -> None:
        """old log-probs (only when mu > 1) and reference log-probs (only when beta > 0), once per batch."""
        need_old = self.grpo.num_iterations > 1
        need_ref = self.grpo.beta != 0.0
        if not (need_old or need_ref):
            return
        C = batch.completion_ids_BC.shape[1]
        old = torch.zeros(batch.completion_ids_BC.shape) if need_old else None
        ref = torch.zeros(batch.completion_ids_BC.shape) if need_ref else None
        was_training = self.policy.training
        self.policy.eval()  # no dropout: old log-probs must match the sampling policy
        for idx in self._micro_batches(batch):
            mb = self._to_device(batch.select(idx))
            w = mb.completion_ids_BC.shape[1]
            with autocast(self.device, self.amp):
                if need_old:
                    old[idx, :w] = token_logprobs(self.policy, mb, self.train_cfg.logit_chunk, self.temperature).float().cpu()
                if need_ref:
                    with reference_context(self.policy, self.ref) as ref_model:
                        ref[idx, :w] = token_logprobs(ref_model, mb, self.train_cfg.logit_chunk, self.temperature).float().cpu()
        self.policy.train(was_training)
        batch.old_logp_BC = old[:, :C] if need_old else None
        batch.ref_logp_BC = ref[:, :C] if need_ref else None

    def _to_device(self, b: Batch) -> Batch:
        def mv(t):
            return None if t is None else t.to(self.device)

        return Batch(*(mv(getattr(b, f)) for f in b.__dataclass_fields__))

    def step(self, batch: Batch) -> dict[str, float]:
        """mu optimizer steps on one generated batch; returns averaged metrics."""
        g, cfg = self.grpo, self.train_cfg
        self._fill_logprobs(batch)
        self.policy.train()
        mask_full = batch.completion_mask_BC
        sums: dict[str, float] = {}
        n_tokens = float(mask_full.sum())
        for _ in range(g.num_iterations):
            self.optimizer.zero_grad(set_to_none=True)
            loss_total, ent_total = 0.0, 0.0
            for idx in self._micro_batches(batch):
                mb = self._to_device(batch.select(idx))
                with autocast(self.device, self.amp):
                    logits = completion_logits(self.policy, mb, self.temperature)
                logp = selective_log_softmax(logits, mb.completion_ids_BC, cfg.logit_chunk)
                ent_total += entropy_sum(logits, mb.completion_mask_BC, cfg.logit_chunk)
                del logits
                old = logp.detach() if mb.old_logp_BC is None else mb.old_logp_BC
                is_w = None
                if mb.sampling_logp_BC is not None:
                    is_w = sampling_is_weights(old, mb.sampling_logp_BC, mb.completion_mask_BC, g.is_correction, g.is_cap)
                loss, m = policy_loss(
                    logp, old, mb.adv_B, mb.completion_mask_BC, mb.ref_logp_BC,
                    loss_type=g.loss_type, epsilon_low=g.epsilon_low, epsilon_high=g.epsilon_high,
                    beta=g.beta, max_completion_length=self.max_completion_length,
                    is_weight=None if g.is_correction == "none" else is_w,
                )
                if is_w is not None:
                    m.update(sampling_mismatch(
                        old, mb.sampling_logp_BC, mb.completion_mask_BC, g.is_correction, g.is_cap, is_weight=is_w,
                    ))
                w = micro_batch_weight(g.loss_type, mb.completion_mask_BC, mask_full)
                (loss * w).backward()
                loss_total += float(loss.detach()) * w
                tok_share = float(mb.completion_mask_BC.sum()) / max(1.0, n_tokens)
                for k, v in m.items():  # token-weighted means over micro-batches; maxima stay maxima
                    if k.endswith("/max"):
                        sums[k] = max(sums.get(k, 0.0), v)
                    else:
                        sums[k] = sums.get(k, 0.0) + v * tok_share / g.num_iterations
            if not math.isfinite(loss_total):
                raise FloatingPointError(f"non-finite loss {loss_total}")
            params = [p for p in self.policy.parameters() if p.requires_grad]
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm or float("inf"))
            if not torch.isfinite(grad_norm):
                raise FloatingPointError(f"non-finite gradient norm {float(grad_norm)}")
            lr = self.scheduler.get_last_lr()[0]
            self.optimizer.step()
            self.scheduler.step()
            sums["loss"] = sums.get("loss", 0.0) + loss_total / g.num_iterations
            sums["grad_norm"] = sums.get("grad_norm", 0.0) + float(grad_norm) / g.num_iterations
            sums["entropy"] = sums.get("entropy", 0.0) + ent_total / max(1.0, n_tokens) / g.num_iterations
            sums["lr"] = lr
        return sums
