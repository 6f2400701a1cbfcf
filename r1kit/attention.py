"""Attention over grouped K/V heads without copying them.

transformers' ``sdpa`` attention, given a padding mask on a CPU, repeats each K/V head for the
query heads that share it (``repeat_kv``: a copy of K and V, H/H_kv times their size, in every
layer and pass). Within :func:`gqa_attention` a model asks torch's SDPA for grouped-query
attention (``enable_gqa``) instead: the same math, no copy. The rollout's decode loop and the
learner's forward and backward passes run under it.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager

import torch

ATTENTION = "r1kit_sdpa_gqa"  # the name it is registered under with transformers


def gqa_sdpa_attention(module, query, key, value, attention_mask, dropout=0.0, scaling=None, is_causal=None, **kwargs):
    """transformers' attention signature over ``torch.nn.functional.scaled_dot_product_attention``
    with ``enable_gqa`` when K/V have fewer heads than the queries: query [B, H, S, D], key and
    value [B, H_kv, S_kv, D] -> ([B, S, H, D], None). A position bias (T5-style) or a paged cache
    goes to transformers' own ``sdpa`` function, which handles them."""
    if kwargs.get("position_bias") is not None or kwargs.get("cache") is not None:
        from transformers.integrations.sdpa_attention import sdpa_attention_forward

        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, is_causal, **kwargs)
    causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
    causal = query.shape[2] > 1 and attention_mask is None and causal
    out = torch.nn.functional.scaled_dot_product_attention(
        query, key, value, attn_mask=attention_mask, dropout_p=dropout, scale=scaling, is_causal=causal,
        enable_gqa=key.shape[1] != query.shape[1],
    )
    return out.transpose(1, 2).contiguous(), None


def _register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION, gqa_sdpa_attention)
    AttentionMaskInterface.register(ATTENTION, sdpa_mask)


@contextmanager
def _switched(config):
    if getattr(config, "_attn_implementation", None) != "sdpa":
        yield
        return
    _register()
    config._attn_implementation = ATTENTION
    try:
        yield
    finally:
        config._attn_implementation = "sdpa"


@contextmanager
def gqa_attention(*models):
    """Within the block, each of ``models`` (HF models or their configs; None is skipped) whose
    config selects ``sdpa`` attention uses :func:`gqa_sdpa_attention` with the same masks; any
    other implementation (eager, flash) is left alone. Restored on the way out."""
    with ExitStack() as stack:
        for m in models:
            config = getattr(m, "config", m)
            if config is not None:
                stack.enter_context(_switched(config))
        yield
