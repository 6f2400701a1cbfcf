"""The learner: per-token log-probs, micro-batched gradient accumulation, AdamW, LR schedule.

Shapes (``r1kit.types``): N completion rows, L prompt width, T completion width, V vocab, U
distinct prompts in a micro-batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import time

import torch

from r1kit.attention import gqa_attention
from r1kit.config import GRPOSection, TrainSection
from r1kit.distributed import (
    World, gather_objects, is_sharded, load_full_optimizer_state, prepare_deepspeed, reduce_metrics, shard_bounds,
    shard_fsdp2, sync_from_rank0, unwrap,
)
from r1kit.grpo import micro
from r1kit.grpo.lm_head import chunkable_head, head_logprobs
from r1kit.grpo.loss import entropy_threshold, high_entropy_mask, policy_loss, sampling_is_weights
from r1kit.models import autocast, reference_context
from r1kit.schedules import build_scheduler
from r1kit.tensors import left_pad, positions
from r1kit.types import Batch, Group


def selective_log_softmax(logits_NTV: torch.Tensor, index_NT: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """log softmax(logits)[index] in float32, ``chunk`` rows at a time.

    Only a [chunk, V] float32 buffer exists at once: logp = logit[index] - logsumexp(logits).
    """
    flat_NV = logits_NTV.reshape(-1, logits_NTV.shape[-1])
    flat_idx = index_NT.reshape(-1)
    out = []
    for lo in range(0, flat_NV.shape[0], chunk):
        rows = flat_NV[lo : lo + chunk].float()
        picked = rows.gather(-1, flat_idx[lo : lo + chunk, None]).squeeze(-1)
        out.append(picked - torch.logsumexp(rows, dim=-1))
    return torch.cat(out).view(index_NT.shape)


@torch.no_grad()
def token_entropies(logits_NTV: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """[N, T] float32 entropy of each position's next-token distribution, ``chunk`` rows at a time
    (no graph kept)."""
    flat_NV = logits_NTV.detach().reshape(-1, logits_NTV.shape[-1])
    out = []
    for lo in range(0, flat_NV.shape[0], chunk):
        logp = torch.log_softmax(flat_NV[lo : lo + chunk].float(), dim=-1)
        out.append(-(logp.exp() * logp).sum(-1))
    return torch.cat(out).view(logits_NTV.shape[:-1])


def _run(model, hidden: bool, keep: int, **inputs) -> tuple[torch.Tensor, object]:
    """One forward pass: the last ``keep`` positions' logits, or (``hidden``) every position's
    final hidden state, the head's input, with the logits of the last position only."""
    if hidden:
        out = model(**inputs, output_hidden_states=True, logits_to_keep=1)
        return out.hidden_states[-1], out
    out = model(**inputs, logits_to_keep=keep)
    return out.logits, out


def _plain_logits(model, batch: Batch, hidden: bool = False) -> torch.Tensor:
    input_ids = torch.cat([batch.prompt_ids_NL, batch.completion_ids_NT], dim=1)
    T = batch.completion_ids_NT.shape[1]
    attn = torch.cat([batch.prompt_mask_NL, torch.ones_like(batch.completion_ids_NT)], dim=1)
    x, _ = _run(model, hidden, T + 1, input_ids=input_ids, attention_mask=attn, position_ids=positions(attn), use_cache=False)
    return x[:, -(T + 1) : -1]


def _repeat_rows(x: torch.Tensor, inverse_N: torch.Tensor, U: int) -> torch.Tensor:
    """``x[inverse_N]`` along dim 0, with a backward pass that sums the same way every time.

    ``x[idx]`` with repeated indices backpropagates through an accumulating ``index_put_``, whose
    sum order on CPU depends on thread scheduling (the last bits of the gradient change from run to
    run). ``expand`` (one distinct row: a view, no copy; backward is a plain reduction) and
    ``index_select`` (backward: ``index_add_``, in index order) give the same values and the same
    gradient bits on every pass.
    """
    if U == 1:
        return x.expand(inverse_N.shape[0], *x.shape[1:])
    return x.index_select(0, inverse_N)


def _repeat_cache_rows(cache, inverse_N: torch.Tensor, U: int) -> None:
    """Row b of the cache becomes row ``inverse_N[b]``, in every layer (deterministic backward).

    Replaces ``DynamicCache.batch_select_indices``, which indexes with ``[indices]``. Attention
    layers of transformers' dynamic caches (full, sliding-window, indexed) keep ``keys``/``values``
    (and ``indexer_keys``) as [batch, ...] tensors; any other kind of layer (linear-attention
    states) is left to its own ``reorder_cache``, which transformers implements with ``index_select``.
    """
    from transformers import cache_utils

    recurrent = getattr(cache_utils, "LinearAttentionCacheLayerMixin", ())
    for layer in cache.layers:
        if recurrent and isinstance(layer, recurrent):  # hybrids' reorder_cache covers their keys too
            layer.reorder_cache(inverse_N)
            continue
        for name in ("keys", "values", "indexer_keys"):
            t = getattr(layer, name, None)
            if isinstance(t, torch.Tensor) and t.dim() > 0 and t.numel() > 0:
                setattr(layer, name, _repeat_rows(t, inverse_N, U))


def _shared_prompt_logits(
    model, batch: Batch, uniq_U2L: torch.Tensor, inverse_N: torch.Tensor, hidden: bool = False,
) -> torch.Tensor:
    """Run each distinct prompt once, then all completions against its (repeated) KV cache.

    Exact: the same attention as the plain path, but the G copies of a prompt are computed once
    in the forward pass and their gradients summed in the backward pass (G x less prompt work).
    The repeat is an ``expand``/``index_select``, never ``x[inverse_N]``: see :func:`_repeat_rows`.
    """
    from transformers import DynamicCache

    L = batch.prompt_ids_NL.shape[1]
    U = uniq_U2L.shape[0]
    ids_UL, mask_UL = uniq_U2L[:, :L], uniq_U2L[:, L:]
    cache = DynamicCache(config=getattr(unwrap(model), "config", None))
    x, out = _run(
        model, hidden, 1, input_ids=ids_UL, attention_mask=mask_UL, position_ids=positions(mask_UL),
        past_key_values=cache, use_cache=True,
    )
    cache = out.past_key_values
    _repeat_cache_rows(cache, inverse_N, U)
    first_N1X = _repeat_rows(x[:, -1:], inverse_N, U)
    N, T = batch.completion_ids_NT.shape
    if T == 1:
        return first_N1X
    attn = torch.cat([batch.prompt_mask_NL, batch.prompt_mask_NL.new_ones((N, T - 1))], dim=1)
    pos = batch.prompt_mask_NL.sum(-1, keepdim=True) + torch.arange(T - 1, device=attn.device)
    rest, _ = _run(
        model, hidden, 0, input_ids=batch.completion_ids_NT[:, :-1], attention_mask=attn, position_ids=pos,
        past_key_values=cache, use_cache=True,
    )
    return torch.cat([first_N1X, rest], dim=1)


def completion_logits(model, batch: Batch, temperature: float = 1.0) -> torch.Tensor:
    """Logits [N, T, V] predicting each completion token; only completion positions are projected
    to the vocabulary, and prompts shared by several rows (a GRPO group) are run once.

    Divided by the sampling ``temperature`` (when > 0), so log-probs are those of the
    distribution the completions were drawn from."""
    logits = _completion_logits(model, batch)
    return logits / temperature if temperature > 0 and temperature != 1.0 else logits


def _completion_logits(model, batch: Batch, hidden: bool = False) -> torch.Tensor:
    inner = unwrap(model)  # attributes live on the module, not on an engine's wrapper
    checkpointing = getattr(inner, "is_gradient_checkpointing", False) and inner.training
    if not checkpointing:  # HF turns the KV cache off under gradient checkpointing
        uniq_U2L, inverse_N = distinct_prompts(batch)
        if uniq_U2L.shape[0] < len(batch):
            return _shared_prompt_logits(model, batch, uniq_U2L, inverse_N, hidden)
    return _plain_logits(model, batch, hidden)


def distinct_prompts(batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
    """``(uniq_U2L, inverse_N)``: the batch's distinct (prompt ids, prompt mask) rows, and which
    of them each row has (rows of one GRPO group share one)."""
    key_N2L = torch.cat([batch.prompt_ids_NL, batch.prompt_mask_NL], dim=1)
    return torch.unique(key_N2L, dim=0, return_inverse=True)


def completion_hidden(model, batch: Batch) -> torch.Tensor:
    """[N, T, H] final hidden states at the positions predicting each completion token (what
    the head projects): the same passes as :func:`completion_logits`, no vocabulary projection."""
    return _completion_logits(model, batch, hidden=True)


def token_stats(
    model, batch: Batch, chunk: int = 1024, temperature: float = 1.0, head: torch.nn.Linear | None = None,
    entropy: bool = True,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(logp_NT, entropy_NT)`` float32 of the completion tokens (the entropy without gradient;
    without ``entropy`` the whole-logits path leaves it out, None, the chunked one computes it anyway).
    With ``head`` (:func:`r1kit.grpo.lm_head.chunkable_head`) the vocabulary projection runs
    ``chunk`` tokens at a time, forward and backward, and no [N, T, V] logits exist; without it the
    model's own logits are projected whole, then reduced ``chunk`` rows at a time."""
    if head is not None:
        return head_logprobs(completion_hidden(model, batch), head, batch.completion_ids_NT, chunk, temperature)
    logits_NTV = completion_logits(model, batch, temperature)
    logp_NT = selective_log_softmax(logits_NTV, batch.completion_ids_NT, chunk)
    return logp_NT, token_entropies(logits_NTV, chunk) if entropy else None


def token_logprobs(model, batch: Batch, chunk: int = 1024, temperature: float = 1.0) -> torch.Tensor:
    return selective_log_softmax(completion_logits(model, batch, temperature), batch.completion_ids_NT, chunk)


def make_batch(groups: list[Group], adv_N: torch.Tensor, pad_id: int, mask_truncated: bool = False) -> Batch:
    """Groups + advantages -> left-padded prompts, right-padded completions (one row per completion)."""
    rows = [(g.prompt_ids, ids, trunc) for g in groups for ids, trunc in zip(g.completion_ids, g.truncated)]
    N = len(rows)
    T = max(1, max(len(c) for _, c, _ in rows))
    prompt_ids_NL, prompt_mask_NL = left_pad([p for p, _, _ in rows], pad_id)
    comp_ids_NT = torch.full((N, T), pad_id, dtype=torch.long)
    lengths_N = torch.zeros(N, dtype=torch.long)
    keep_N = torch.ones(N, dtype=torch.bool)
    for i, (_, c, trunc) in enumerate(rows):
        comp_ids_NT[i, : len(c)] = torch.tensor(c, dtype=torch.long)
        lengths_N[i] = len(c)
        keep_N[i] = not (mask_truncated and trunc)
    mask_NT = (torch.arange(T)[None, :] < lengths_N[:, None]) & keep_N[:, None]
    sampling_NT = None
    if groups and all(g.sampling_logps is not None for g in groups):
        sampling_NT = torch.zeros((N, T))
        for i, lp in enumerate(lp for g in groups for lp in g.sampling_logps):
            sampling_NT[i, : len(lp)] = torch.tensor(lp, dtype=torch.float32)
    return Batch(
        prompt_ids_NL, prompt_mask_NL, comp_ids_NT, lengths_N, mask_NT.long(), adv_N.float(), sampling_logp_NT=sampling_NT
    )


def sampling_mismatch(
    old_logp_NT: torch.Tensor, sampling_logp_NT: torch.Tensor, mask_NT: torch.Tensor, mode: str, cap: float,
    is_weight: torch.Tensor | None = None,
) -> dict[str, float]:
    """How far the rollout engine's log-probs are from the learner's, over completion tokens:
    mean and max |old_logp - sampling_logp|, the mean importance weight the correction applies
    (1 with ``none``), and the share of tokens whose raw ratio exceeds ``is_cap`` (per token, or
    per sequence for ``sequence_*`` modes), i.e. where truncation or masking acts.
    ``is_weight``: the weights already computed for this ``mode`` and ``cap``, if at hand."""
    m = mask_NT.bool()
    if not m.any():
        return {}
    diff_NT = old_logp_NT.detach().float() - sampling_logp_NT.float()
    level = "sequence" if mode.startswith("sequence") else "token"
    raw = sampling_is_weights(old_logp_NT, sampling_logp_NT, mask_NT, f"{level}_truncate", float("inf"))
    w = sampling_is_weights(old_logp_NT, sampling_logp_NT, mask_NT, mode, cap) if is_weight is None else is_weight
    return {
        "sampling/logp_diff/mean": float(diff_NT.abs()[m].mean()),
        "sampling/logp_diff/max": float(diff_NT.abs()[m].max()),
        "sampling/is_weight/mean": float(w.expand_as(mask_NT)[m].mean()),
        "sampling/is_capped_frac": float((raw > cap).expand_as(mask_NT)[m].float().mean()),
    }


class Learner:
    """Owns the optimizer and scheduler; ``step(batch)`` runs mu passes of micro-batched updates.

    Under several processes (``world``) the model and optimizer are prepared by accelerate (DDP,
    DeepSpeed ZeRO) or sharded by r1kit (FSDP2), as the ``accelerate launch`` config asks: ``step`` is given the whole
    step's batch on every process, trains on this process's contiguous share of its rows with the
    whole batch's token and sequence counts as denominators, and the engine averages gradients.
    """

    def __init__(
        self, policy, ref, grpo: GRPOSection, train: TrainSection, max_completion_length: int, temperature: float = 1.0,
        amp: torch.dtype | None = None, world: World | None = None,
    ):
        self.amp = amp  # autocast dtype for forward passes (None: the weights' dtype)
        self.policy, self.ref, self.grpo, self.train_cfg = policy, ref, grpo, train
        self.world = world or World()
        self.temperature = temperature  # the rollout's: log-probs of the sampling distribution
        self.max_completion_length = max_completion_length  # the Dr. GRPO normaliser
        # the module forward and backward passes run through: the engine's wrapper, or the policy
        self.model = policy
        self.last_allreduce_s = 0.0  # seconds in DDP's gradient all-reduce during the last step
        engine = self.world.engine
        if engine == "fsdp":  # sharded in place, before the optimizer sees the (now sharded) parameters
            device = next(policy.parameters()).device
            for m in (policy, ref):
                if m is not None:
                    sync_from_rank0(m, device)
            shard_fsdp2(policy)
        params = [p for p in policy.parameters() if p.requires_grad]
        # the schedule sets the torch optimizer's learning rates, also inside an engine's wrapper
        self.torch_optimizer = self.optimizer = torch.optim.AdamW(
            params, lr=train.lr, betas=(train.adam_beta1, train.adam_beta2), weight_decay=train.weight_decay
        )
        self.scheduler = self._schedule()
        if engine == "ddp":
            self.model, self.optimizer = self.world.accelerator.prepare(policy, self.optimizer)
            self.model.register_comm_hook(None, self._timed_allreduce)
        elif engine == "deepspeed":
            self.model, self.optimizer = prepare_deepspeed(
                self.world, policy, self.optimizer, train.micro_batch_size, train.max_grad_norm,
            )
        # the vocabulary projection in chunks (r1kit.grpo.lm_head) where the head is a plain
        # linear layer in reach: not under FSDP2 / ZeRO-3, whose head weights live in shards
        chunked = train.chunked_head and not is_sharded(policy)
        self.head = chunkable_head(policy) if chunked else None
        self.ref_head = chunkable_head(ref) if chunked and ref is not None else None
        self.device = next(policy.parameters()).device

    def _schedule(self, last_epoch: int = -1) -> torch.optim.lr_scheduler.LambdaLR:
        t = self.train_cfg
        total = max(1, t.max_steps * self.grpo.num_iterations)  # optimizer steps
        return build_scheduler(
            self.torch_optimizer, t.lr_schedule, t.warmup_steps, total, tuple(t.lr_milestones), tuple(t.lr_factors),
            last_epoch=last_epoch,
        )

    def load_state(self, optimizer_state: dict, scheduler_state: dict) -> None:
        """Resume: the checkpoint's moments and step count with this config's hyper-parameters
        (lr, betas, weight decay, schedule), so what config.yaml records is what trains."""
        parts = optimizer_state.get("zero_partitions")  # saved under DeepSpeed: one per process
        deepspeed = self.world.engine == "deepspeed"
        if (parts is not None) != deepspeed or (deepspeed and len(parts) != self.world.size):
            saved = f"{len(parts)} processes under DeepSpeed" if parts is not None else "a run not under DeepSpeed"
            raise ValueError(
                f"its optimizer state was saved by {saved}; this run has {self.world.size} process(es), engine "
                f"{self.world.engine}: DeepSpeed's ZeRO partitions resume only under DeepSpeed with as many processes"
            )
        if deepspeed:  # this process takes its own partition
            self.model.optimizer.load_state_dict(parts, load_optimizer_states=True, load_from_fp32_weights=True)
        elif is_sharded(self.model):  # FSDP2, a full state dict (keyed by parameter name): each process takes its shard
            load_full_optimizer_state(self.model, self.optimizer, optimizer_state)
        else:
            self.optimizer.load_state_dict(optimizer_state)
        t = self.train_cfg
        for group in self.torch_optimizer.param_groups:
            group.update(initial_lr=t.lr, weight_decay=t.weight_decay, betas=(t.adam_beta1, t.adam_beta2))
        self.scheduler = self._schedule(last_epoch=int(scheduler_state["last_epoch"]) - 1)

    def _micro_batches(self, batch: Batch) -> list[torch.Tensor]:
        """Row indices of each micro-batch (:mod:`r1kit.grpo.micro`)."""
        budget = self.train_cfg.micro_batch_tokens
        if not budget:
            return micro.contiguous(len(batch), self.train_cfg.micro_batch_size)
        prompt_id_N = distinct_prompts(batch)[1]
        return micro.by_length(
            batch.completion_lengths_N.tolist(), batch.prompt_mask_NL.sum(-1).tolist(), prompt_id_N.tolist(), budget,
        )

    @torch.no_grad()
    def _logprobs(
        self, batch: Batch, blank: Batch | None = None, slots: int = 0, idxs: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor | None, ...]:
        """``(old_logp_NT, ref_logp_NT, entropy_NT)``, computed once per batch before any update:
        old log-probs only when mu > 1, reference log-probs only when beta > 0, the policy's token
        entropies only for high-entropy selection (each None otherwise; old log-probs and
        entropies from the same chunked logits). Under FSDP2 and ZeRO-3 a forward pass of the
        policy is a collective: a process with fewer micro-batches than ``slots`` runs ``blank``.
        ``idxs``: the batch's micro-batches, when the caller has them already."""
        need_old = self.grpo.num_iterations > 1
        need_ref = self.grpo.beta != 0.0
        need_ent = self.grpo.top_entropy_quantile < 1.0
        if not (need_old or need_ref or need_ent):
            return None, None, None
        old_NT = torch.zeros(batch.completion_ids_NT.shape) if need_old else None
        ref_NT = torch.zeros(batch.completion_ids_NT.shape) if need_ref else None
        ent_NT = torch.zeros(batch.completion_ids_NT.shape) if need_ent else None
        was_training = self.policy.training
        self.policy.eval()  # no dropout: old log-probs must match the sampling policy
        chunk, temp = self.train_cfg.logit_chunk, self.temperature
        if idxs is None:
            idxs = self._micro_batches(batch) if len(batch) else []
        # a separate reference is not sharded
        lockstep = is_sharded(self.model) and (need_old or need_ent or self.ref is None)
        for idx in idxs + [None] * ((slots - len(idxs)) if lockstep else 0):
            mb = self._to_device(blank if idx is None else batch.select(idx))
            w = mb.completion_ids_NT.shape[1]
            with autocast(self.device, self.amp):
                if need_old or need_ent:
                    lp, ent = token_stats(self.policy, mb, chunk, temp, self.head, entropy=need_ent)
                    if idx is not None and need_old:
                        old_NT[idx, :w] = lp.cpu()
                    if idx is not None and need_ent:
                        ent_NT[idx, :w] = ent.cpu()
                if need_ref:
                    with reference_context(self.policy, self.ref) as ref_model:
                        head = self.head if ref_model is self.policy else self.ref_head
                        lp = token_stats(ref_model, mb, chunk, temp, head, entropy=False)[0].cpu()
                    if idx is not None:
                        ref_NT[idx, :w] = lp
        self.policy.train(was_training)
        return old_NT, ref_NT, ent_NT

    def _high_entropy_tokens(self, mine: Batch, ent_NT: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The policy-gradient mask of this process's rows: the top ``top_entropy_quantile`` of the
        whole step's counted tokens by entropy (the threshold from every process's tokens)."""
        counted = ent_NT[mine.completion_mask_NT.bool()]
        every = torch.cat(gather_objects(counted, self.world)) if self.world.distributed else counted
        threshold = entropy_threshold(every, self.grpo.top_entropy_quantile)
        selected = float((every >= threshold).sum()) / max(1, every.numel())
        return high_entropy_mask(ent_NT, mine.completion_mask_NT, threshold), {
            "entropy/threshold": threshold, "entropy/selected_frac": selected,
        }

    def _to_device(self, b: Batch) -> Batch:
        return Batch(**{f.name: None if (t := getattr(b, f.name)) is None else t.to(self.device)
                        for f in dataclasses.fields(b)})

    def _micro_step(self, mb: Batch, num_tokens: float, num_seqs: float) -> tuple[float, float, dict[str, float]]:
        """Forward and backward of one micro-batch, its loss taken over the whole optimizer
        step's ``num_tokens`` / ``num_seqs`` (so the micro-batches' gradients add up to the
        full batch's). Returns (loss, entropy sum, metrics)."""
        g, cfg = self.grpo, self.train_cfg
        with autocast(self.device, self.amp):
            logp_NT, ent_NT = token_stats(self.model, mb, cfg.logit_chunk, self.temperature, self.head)
        entropy = float((ent_NT * mb.completion_mask_NT).sum())
        old_NT = logp_NT.detach() if mb.old_logp_NT is None else mb.old_logp_NT
        is_w = None
        if mb.sampling_logp_NT is not None:
            is_w = sampling_is_weights(old_NT, mb.sampling_logp_NT, mb.completion_mask_NT, g.is_correction, g.is_cap)
        loss, m = policy_loss(
            logp_NT, old_NT, mb.adv_N, mb.completion_mask_NT, mb.ref_logp_NT,
            loss_type=g.loss_type, epsilon_low=g.epsilon_low, epsilon_high=g.epsilon_high,
            beta=g.beta, kl_estimator=g.kl_estimator, max_completion_length=self.max_completion_length,
            is_weight=None if g.is_correction == "none" else is_w, num_tokens=num_tokens, num_seqs=num_seqs,
            importance_sampling_level=g.importance_sampling_level, sapo_tau_pos=g.sapo_tau_pos,
            sapo_tau_neg=g.sapo_tau_neg, dual_clip_c=g.dual_clip_c, pg_mask=mb.pg_mask_NT,
        )
        if is_w is not None:
            m.update(sampling_mismatch(
                old_NT, mb.sampling_logp_NT, mb.completion_mask_NT, g.is_correction, g.is_cap, is_weight=is_w,
            ))
        # the engine averages gradients over processes; each loss is a share of the global sum
        if self.world.engine == "deepspeed":
            self.model.backward(loss * self.world.size)
        else:
            (loss * self.world.size).backward()
        return float(loss.detach()), entropy, m

    def _own_rows(self, batch: Batch) -> Batch:
        """This process's contiguous share of the step's rows (all of them on one process)."""
        if not self.world.distributed:
            return batch
        lo, hi = shard_bounds(len(batch), self.world)
        return batch.select(torch.arange(lo, hi))

    def _micro_batch_slots(self, n: int) -> int:
        """Micro-batches per optimizer step on every process (this one has ``n``): the most any
        process has."""
        if not self.world.distributed:
            return n
        return int(reduce_metrics({"micro_batches/max": float(n)}, self.world)["micro_batches/max"])

    @staticmethod
    def _blank(mine: Batch, batch: Batch) -> Batch:
        """A micro-batch with nothing counted (:meth:`Batch.without_signal`: a zero gradient), run
        by a process with fewer micro-batches than the others: under DDP and FSDP2 every backward
        pass (and under FSDP2 every forward pass) is a collective."""
        return (mine if len(mine) else batch).select(torch.arange(0, 1)).without_signal()

    def step(self, batch: Batch) -> dict[str, float]:
        """mu optimizer steps on one generated batch (the whole step's, on every process);
        returns averaged metrics, the same on every process. Attention reads grouped K/V heads
        without copying them (:mod:`r1kit.attention`: the same math, 1.17x faster forward and
        backward on the bundled model, session 12)."""
        with gqa_attention(self.policy, self.ref):
            return self._step(batch)

    def _step(self, batch: Batch) -> dict[str, float]:
        g, cfg = self.grpo, self.train_cfg
        n_tokens = float(batch.completion_mask_NT.sum())
        n_seqs = float(len(batch))
        mine = self._own_rows(batch)
        idxs = self._micro_batches(mine) if len(mine) else []  # the split, once per step
        slots, blank = self._micro_batch_slots(len(idxs)), self._blank(mine, batch)
        old_NT, ref_NT, ent_NT = self._logprobs(mine, blank, slots, idxs)
        pg_mask_NT, selection = self._high_entropy_tokens(mine, ent_NT) if ent_NT is not None else (None, {})
        mine = dataclasses.replace(mine, old_logp_NT=old_NT, ref_logp_NT=ref_NT, pg_mask_NT=pg_mask_NT)
        micro = [mine.select(idx) for idx in idxs]
        micro += [blank] * (slots - len(micro))
        self.policy.train()
        self.last_allreduce_s = 0.0
        sums: dict[str, float] = {}
        for _ in range(g.num_iterations):
            self.optimizer.zero_grad(set_to_none=True)
            part: dict[str, float] = {"loss": 0.0, "entropy": 0.0}
            for i, mb in enumerate(micro):
                mb = self._to_device(mb)
                with self._sync(last=i == len(micro) - 1):
                    loss, entropy, m = self._micro_step(mb, n_tokens, n_seqs)
                part["loss"] += loss
                part["entropy"] += entropy  # a sum: divided by the step's tokens once reduced
                tok_share = float(mb.completion_mask_NT.sum()) / max(1.0, n_tokens)
                for k, v in m.items():  # token-weighted means over micro-batches; maxima stay maxima
                    part[k] = max(part.get(k, 0.0), v) if k.endswith("/max") else part.get(k, 0.0) + v * tok_share
            part = reduce_metrics(part, self.world)  # each process held its share of the sums
            part["entropy"] /= max(1.0, n_tokens)
            if not math.isfinite(part["loss"]):
                raise FloatingPointError(f"non-finite loss {part['loss']}")
            lr = self.scheduler.get_last_lr()[0]
            grad_norm = self._clip_and_step(cfg.max_grad_norm or float("inf"))
            self.scheduler.step()
            for k, v in part.items():
                sums[k] = max(sums.get(k, 0.0), v) if k.endswith("/max") else sums.get(k, 0.0) + v / g.num_iterations
            sums["grad_norm"] = sums.get("grad_norm", 0.0) + grad_norm / g.num_iterations
            sums["lr"] = lr
        return {**sums, **selection}

    def _timed_allreduce(self, state, bucket):
        """DDP's default all-reduce of one gradient bucket (the mean), timed until its result is in."""
        import torch.distributed as dist

        t0 = time.perf_counter()
        buf = bucket.buffer().div_(self.world.size)
        fut = dist.all_reduce(buf, async_op=True).get_future()

        def done(f):
            self.last_allreduce_s += time.perf_counter() - t0
            return f.value()[0]

        return fut.then(done)

    @contextlib.contextmanager
    def _sync(self, last: bool):
        """Gradients are reduced across processes only on an optimizer step's last micro-batch."""
        if self.world.engine == "deepspeed":  # ZeRO reduces (ZeRO-2: into its shards) at the boundary
            self.model.set_gradient_accumulation_boundary(last)
            yield
        elif not self.world.distributed or last:
            yield
        elif self.world.engine == "fsdp":
            self.model.set_requires_gradient_sync(False)
            try:
                yield
            finally:
                self.model.set_requires_gradient_sync(True)
        else:
            with self.world.accelerator.no_sync(self.model):
                yield

    def _clip_and_step(self, max_norm: float) -> float:
        """Clip the gradients to ``max_norm`` and take the optimizer step; the norm before clipping.
        A non-finite norm raises before the step (under DeepSpeed, whose step clips: after it)."""
        if self.world.engine == "deepspeed":
            self.model.step()
            norm = float(self.model.get_global_grad_norm())
        else:
            params = [p for p in self.model.parameters() if p.requires_grad]
            if self.world.engine == "ddp":
                t = self.world.accelerator.clip_grad_norm_(params, max_norm)
            else:  # FSDP2: torch's norm over the sharded (DTensor) gradients is the global one
                t = torch.nn.utils.clip_grad_norm_(params, max_norm)
            norm = float(t.full_tensor() if hasattr(t, "full_tensor") else t)
        if not math.isfinite(norm):
            raise FloatingPointError(f"non-finite gradient norm {norm}")
        if self.world.engine != "deepspeed":
            self.optimizer.step()
        return norm
