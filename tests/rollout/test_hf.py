import pytest
import torch

from r1kit.config import RolloutSection
from r1kit.rollout import build_rollout
from r1kit.rollout.hf import draw, encode_prompt, generate_groups, row_generators, sample_next
from r1kit.testing import tiny_model
from r1kit.types import Sample


def _prompts(tok):
    texts = ["What is 3 + 4?", "Using the numbers [3, 5, 7], create an equation that equals 15."]
    return [tok.apply_chat_template([{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True) + "<think>" for t in texts]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_greedy_matches_hf_generate(tok, arch):
    """Shared-prefix KV cache + dropping finished rows must not change what is generated."""
    model = tiny_model(tok, arch, seed=3).eval()
    ids = [encode_prompt(tok, p) for p in _prompts(tok)]
    assert len(ids[0]) != len(ids[1])  # left padding is exercised
    tokens, lengths = generate_groups(model, ids, 3, 12, [tok.eos_token_id], tok.pad_token_id, temperature=0)
    assert tokens.shape == (6, 12)
    for i, p in enumerate(ids):
        ref = model.generate(torch.tensor([p]), attention_mask=torch.ones(1, len(p), dtype=torch.long), max_new_tokens=12, do_sample=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)[0, len(p):]
        for r in range(3):
            n = int(lengths[3 * i + r])
            assert tokens[3 * i + r, :n].tolist() == ref[:n].tolist()


def test_rows_stop_at_eos_and_pad_after(tok):
    model = tiny_model(tok, "llama", seed=1)
    # make EOS overwhelmingly likely after the first sampled token: bias the LM head
    with torch.no_grad():
        model.lm_head.weight[tok.eos_token_id] += 5.0
    ids = [encode_prompt(tok, p) for p in _prompts(tok)]
    torch.manual_seed(0)
    tokens, lengths = generate_groups(model, ids, 4, 10, [tok.eos_token_id], tok.pad_token_id, temperature=1.0)
    for row, n in zip(tokens.tolist(), lengths.tolist()):
        if n < 10:
            assert row[n - 1] == tok.eos_token_id
            assert all(t == tok.pad_token_id for t in row[n:])
            assert tok.eos_token_id not in row[: n - 1]


def test_sample_next_top_k_top_p():
    torch.manual_seed(0)
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    k2 = sample_next(logits, 1.0, 1.0, 2)
    assert set(k2.tolist()) == {0, 1}
    # top_p=0.6: 0.5 alone is below 0.6, so {0, 1} are kept and 2, 3 dropped
    p = sample_next(logits, 1.0, 0.6, 0)
    assert set(p.tolist()) == {0, 1}
    frac0 = (p == 0).float().mean().item()
    assert abs(frac0 - 0.5 / 0.8) < 0.05  # renormalised over the kept tokens
    assert set(sample_next(logits, 0.0, 1.0, 0).tolist()) == {0}
    full = sample_next(logits, 1.0, 1.0, 0)
    assert set(full.tolist()) == {0, 1, 2, 3}


def test_draw_matches_the_distribution_and_skips_zero_mass():
    torch.manual_seed(0)
    probs = torch.tensor([[0.0, 0.5, 0.0, 0.3, 0.2, 0.0], [0.0, 0.0, 0.0, 0.0, 0.0, 1.0]])
    toks = draw(probs.repeat(10000, 1)).view(10000, 2)
    counts = torch.bincount(toks[:, 0], minlength=6).float() / 10000
    assert counts[[0, 2, 5]].sum() == 0  # zero mass: never drawn, also at the ends of the row
    assert torch.allclose(counts[[1, 3, 4]], torch.tensor([0.5, 0.3, 0.2]), atol=0.02)  # 4+ sigma
    assert set(toks[:, 1].tolist()) == {5}
    # unnormalised rows (masses summing to 2) give the same distribution
    again = draw(2 * probs[:1].repeat(10000, 1))
    assert torch.allclose(torch.bincount(again, minlength=6).float()[[1, 3, 4]] / 10000, torch.tensor([0.5, 0.3, 0.2]), atol=0.02)


def test_draw_with_row_generators_ignores_the_other_rows():
    probs = torch.full((4, 50), 1 / 50)
    alone = draw(probs[:1], row_generators([7], 1, "cpu"))
    torch.manual_seed(123)  # the global RNG does not matter
    batched = draw(probs[:2], row_generators([7, 8], 1, "cpu"))
    assert batched[0] == alone[0]
    a = [draw(probs[:1], [g]).item() for g in row_generators([7, 7], 1, "cpu")]
    assert a[0] == a[1]


def test_backend_returns_groups(tok, model):
    cfg = RolloutSection(group_size=4, max_new_tokens=6, batch_size=4)
    rollout = build_rollout(cfg, model, tok)
    samples = [Sample(prompt=p, prefill="<think>", columns={"answer": "7"}) for p in _prompts(tok)] * 2
    torch.manual_seed(0)
    groups = rollout.generate(samples)
    assert len(groups) == 4 and all(len(g.completions) == 4 for g in groups)
    for g, s in zip(groups, samples):
        assert g.sample is s and g.prompt_ids == encode_prompt(tok, s.prompt)
        for ids, text, trunc in zip(g.completion_ids, g.completions, g.truncated):
            assert 1 <= len(ids) <= 6
            assert trunc == (ids[-1] != tok.eos_token_id)
            assert text == tok.decode(ids, skip_special_tokens=True)
        assert g.responses[0].startswith("<think>")
    assert model.training  # generate() restores the mode it found
    with pytest.raises(ValueError, match="backend"):
        build_rollout(RolloutSection(backend="nope"), model, tok)


def test_backends_declare_what_the_loop_needs_to_know():
    from r1kit.rollout.hf import HFRollout
    from r1kit.rollout.vllm import VLLMRollout, VLLMServerRollout

    caps = lambda c: (c.shares_weights, c.needs_initial_sync, c.has_sampling_logps)  # noqa: E731
    assert caps(HFRollout) == (True, False, False)  # generates with the policy itself
    assert caps(VLLMRollout) == (False, False, True)  # loads the policy's directory at start
    assert caps(VLLMServerRollout) == (False, True, True)  # holds whatever it last received
