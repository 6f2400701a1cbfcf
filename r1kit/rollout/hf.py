"""Rollout with the policy itself (transformers forward passes, KV cache), no second engine.

Two things make this faster than ``model.generate(num_return_sequences=G)`` for GRPO:
- each prompt is pre-filled once and its KV cache repeated G times (the G completions share it);
- rows that emitted EOS leave the batch, so late steps only pay for sequences still running.
"""

from __future__ import annotations

import torch

from r1kit.config import RolloutSection
from r1kit.models import autocast
from r1kit.types import Group, Sample


def sample_next(logits_BV: torch.Tensor, temperature: float, top_p: float, top_k: int) -> torch.Tensor:
    """Sample one token per row: temperature, then top-k (0 = off), then nucleus top-p (1 = off)."""
    if temperature == 0:
        return logits_BV.argmax(-1)
    logits_BV = logits_BV.float() / temperature
    if top_k and top_k < logits_BV.shape[-1]:
        kth = torch.topk(logits_BV, top_k, dim=-1).values[:, -1:]
        logits_BV = logits_BV.masked_fill(logits_BV < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits_BV, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        # drop a token when the mass strictly before it already reaches top_p (the first always stays)
        drop_sorted = probs.cumsum(-1) - probs >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits_BV = logits_BV.masked_fill(drop, float("-inf"))
    return torch.multinomial(logits_BV.softmax(-1), 1).squeeze(-1)


@torch.no_grad()
def generate_groups(
    model,
    prompt_ids: list[list[int]],
    group_size: int,
    max_new_tokens: int,
    eos_ids: list[int],
    pad_id: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    top_k: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample ``group_size`` continuations of each prompt.

    Returns ``tokens_BT`` [len(prompt_ids) * G, max_new_tokens] (pad after EOS, groups contiguous)
    and ``lengths_B`` (tokens generated, EOS included).
    """
    from transformers import DynamicCache

    device = next(model.parameters()).device
    P = len(prompt_ids)
    width = max(len(p) for p in prompt_ids)
    ids_PT = torch.full((P, width), pad_id, dtype=torch.long, device=device)
    attn_PT = torch.zeros((P, width), dtype=torch.long, device=device)
    for i, p in enumerate(prompt_ids):  # left padding: the next token is always at column `width`
        ids_PT[i, width - len(p) :] = torch.tensor(p, device=device)
        attn_PT[i, width - len(p) :] = 1
    pos_PT = (attn_PT.cumsum(-1) - 1).clamp(min=0)

    cache = DynamicCache(config=model.config)
    out = model(input_ids=ids_PT, attention_mask=attn_PT, position_ids=pos_PT, past_key_values=cache, use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    cache.batch_repeat_interleave(group_size)
    logits_BV = out.logits[:, -1].repeat_interleave(group_size, dim=0)
    attn_BT = attn_PT.repeat_interleave(group_size, dim=0)
    next_pos_B = pos_PT[:, -1].repeat_interleave(group_size) + 1

    B = P * group_size
    tokens_BT = torch.full((B, max_new_tokens), pad_id, dtype=torch.long, device=device)
    lengths_B = torch.full((B,), max_new_tokens, dtype=torch.long, device=device)
    rows_b = torch.arange(B, device=device)  # original row of each still-running sequence
    eos_t = torch.tensor(eos_ids, device=device)
    for t in range(max_new_tokens):
        tok_b = sample_next(logits_BV, temperature, top_p, top_k)
        tokens_BT[rows_b, t] = tok_b
        done_b = torch.isin(tok_b, eos_t)
        lengths_B[rows_b[done_b]] = t + 1
        if t == max_new_tokens - 1:
            break
        if done_b.any():
            keep = (~done_b).nonzero().squeeze(1)
            if keep.numel() == 0:
                break
            cache.batch_select_indices(keep)
            attn_BT, rows_b, tok_b, next_pos_B = attn_BT[keep], rows_b[keep], tok_b[keep], next_pos_B[keep]
        attn_BT = torch.cat([attn_BT, attn_BT.new_ones((attn_BT.shape[0], 1))], dim=1)
        out = model(
            input_ids=tok_b[:, None],
            attention_mask=attn_BT,
            position_ids=next_pos_B[:, None],
            past_key_values=cache,
            use_cache=True,
        )
        logits_BV = out.logits[:, -1]
        next_pos_B = next_pos_B + 1
    return tokens_BT, lengths_B


def eos_token_ids(model, tokenizer) -> list[int]:
    ids = {tokenizer.eos_token_id}
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        ids.add(gen_eos)
    elif gen_eos:
        ids.update(gen_eos)
    return sorted(i for i in ids if i is not None)


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Token ids of a rendered prompt; templates already hold their special tokens."""
    starts_special = bool(tokenizer.bos_token) and prompt.startswith(tokenizer.bos_token)
    return tokenizer(prompt, add_special_tokens=not starts_special)["input_ids"]


class HFRollout:
    """Generation with the training model itself; ``sync_weights`` is a no-op (shared weights)."""

    def __init__(self, model, tokenizer, cfg: RolloutSection, amp=None):
        self.model, self.tokenizer, self.cfg, self.amp = model, tokenizer, cfg, amp
        self.eos_ids = eos_token_ids(model, tokenizer)

    def generate(self, samples: list[Sample]) -> list[Group]:
        cfg, tok = self.cfg, self.tokenizer
        prompt_ids = [encode_prompt(tok, s.prompt) for s in samples]
        # prompts per forward chunk; rollout.batch_size counts sequences (prompts x group)
        step = max(1, cfg.batch_size // cfg.group_size) if cfg.batch_size else len(samples)
        was_training = self.model.training
        self.model.eval()
        groups: list[Group] = []
        try:
            for lo in range(0, len(samples), step):
                chunk = prompt_ids[lo : lo + step]
                with autocast(next(self.model.parameters()).device, self.amp):
                    tokens_BT, lengths_B = generate_groups(
                        self.model, chunk, cfg.group_size, cfg.max_new_tokens, self.eos_ids, tok.pad_token_id,
                        cfg.temperature, cfg.top_p, cfg.top_k,
                    )
                tokens, lengths = tokens_BT.tolist(), lengths_B.tolist()
                for i, ids in enumerate(chunk):
                    rows = range(i * cfg.group_size, (i + 1) * cfg.group_size)
                    comp = [tokens[r][: lengths[r]] for r in rows]
                    groups.append(
                        Group(
                            sample=samples[lo + i],
                            prompt_ids=ids,
                            completion_ids=comp,
                            completions=tok.batch_decode(comp, skip_special_tokens=True),
                            truncated=[not c or c[-1] not in self.eos_ids for c in comp],
                        )
                    )
        finally:
            self.model.train(was_training)
        return groups

    def sync_weights(self, model) -> None:
        return None
