import pytest
import torch
from transformers import DynamicCache

from r1kit.attention import ATTENTION, gqa_attention, gqa_sdpa_attention
from r1kit.rollout.decode import decode_cache
from r1kit.tensors import left_pad, positions
from r1kit.testing import tiny_model


def _step_logits(model, cache, prompts, group_size, steps, keep_at):
    """Pre-fill, repeat each prompt's cache ``group_size`` times, then decode ``steps`` fixed tokens,
    keeping only rows ``keep_at[t]`` before step t where given; the last-position logits of every step."""
    ids, attn = left_pad(prompts, 0)
    pos = positions(attn)
    out = model(input_ids=ids, attention_mask=attn, position_ids=pos, past_key_values=cache, use_cache=True)
    cache = out.past_key_values
    cache.batch_repeat_interleave(group_size)
    attn = attn.repeat_interleave(group_size, 0)
    nxt = pos[:, -1].repeat_interleave(group_size) + 1
    logits = [out.logits[:, -1].repeat_interleave(group_size, 0)]
    for t in range(steps):
        if t in keep_at:
            keep = torch.tensor(keep_at[t])
            cache.batch_select_indices(keep)
            attn, nxt = attn[keep], nxt[keep]
        tok = (torch.arange(attn.shape[0]) * 7 + t * 3) % 50 + 5  # fixed tokens, different per row
        attn = torch.cat([attn, attn.new_ones(attn.shape[0], 1)], 1)
        out = model(input_ids=tok[:, None], attention_mask=attn, position_ids=nxt[:, None], past_key_values=cache, use_cache=True)
        logits.append(out.logits[:, -1])
        nxt = nxt + 1
    return logits


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
@pytest.mark.parametrize("capacity", [40, 9])  # 9: shorter than prompt + steps, so the buffer grows mid-run
def test_buffer_cache_and_gqa_attention_match_transformers(tok, arch, capacity):
    """The in-place cache under GQA attention gives the logits of transformers' DynamicCache under
    its sdpa (repeat_kv) attention: through pre-fill, repeat, rows leaving and a buffer outgrown."""
    model = tiny_model(tok, arch, seed=2).eval()
    assert model.config.num_key_value_heads < model.config.num_attention_heads  # grouped K/V heads
    prompts = [[5, 6, 7, 8, 9], [11, 12, 13]]  # different lengths: left padding in the mask
    keep_at = {2: [0, 1, 3, 4, 5], 5: [1, 3]}
    with torch.no_grad():
        ref = _step_logits(model, DynamicCache(config=model.config), prompts, 3, 8, keep_at)
        with gqa_attention(model):
            assert model.config._attn_implementation == ATTENTION
            got = _step_logits(model, decode_cache(model.config, capacity), prompts, 3, 8, keep_at)
    assert model.config._attn_implementation == "sdpa"  # restored
    assert [g.shape for g in got] == [r.shape for r in ref]
    for g, r in zip(got, ref):
        torch.testing.assert_close(g, r, rtol=0, atol=1e-5)


def test_gqa_sdpa_attention_equals_repeated_heads_with_a_padding_mask():
    """Query heads 2h and 2h+1 read K/V head h: the same as repeating each K/V head twice."""
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 4, 1, 8), torch.randn(3, 2, 6, 8), torch.randn(3, 2, 6, 8)
    mask = torch.ones(3, 1, 1, 6, dtype=torch.bool)
    mask[0, ..., :2] = False  # row 0: two left-padding positions
    module = torch.nn.Module()
    out, weights = gqa_sdpa_attention(module, q, k, v, mask, scaling=0.5)
    assert weights is None and out.shape == (3, 1, 4, 8)
    # by hand: softmax(q k^T * scale, masked) v, per query head against its K/V head
    for h in range(4):
        s = (q[:, h] @ k[:, h // 2].transpose(-1, -2)) * 0.5
        s = s.masked_fill(~mask[:, 0], float("-inf"))
        torch.testing.assert_close(out[:, :, h], s.softmax(-1) @ v[:, h // 2], rtol=0, atol=1e-6)


def test_gqa_attention_leaves_other_implementations_alone(tok):
    model = tiny_model(tok, "llama")
    model.config._attn_implementation = "eager"
    other = tiny_model(tok, "qwen2")
    with gqa_attention(model, None, other.config):
        assert model.config._attn_implementation == "eager"
        assert other.config._attn_implementation == ATTENTION
    assert other.config._attn_implementation == "sdpa"
    with pytest.raises(RuntimeError):  # restored on the way out of an error too
        model.config._attn_implementation = "sdpa"
        with gqa_attention(model):
            raise RuntimeError
    assert model.config._attn_implementation == "sdpa"


def test_a_position_bias_goes_to_transformers_sdpa():
    """T5-style position biases are transformers' to add: the result is its sdpa function's."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    torch.manual_seed(1)
    q, k, v = torch.randn(2, 4, 3, 8), torch.randn(2, 2, 3, 8), torch.randn(2, 2, 3, 8)
    bias = torch.randn(1, 4, 3, 3)
    module = torch.nn.Module()
    module.num_key_value_groups, module.is_causal = 2, False
    got, _ = gqa_sdpa_attention(module, q, k, v, None, position_bias=bias)
    ref, _ = sdpa_attention_forward(module, q, k, v, None, position_bias=bias)
    torch.testing.assert_close(got, ref, rtol=0, atol=0)
    plain, _ = gqa_sdpa_attention(module, q, k, v, None)
    assert (plain - got).abs().max() > 1e-3  # the bias was applied
