"""Real vLLM checks on the bundled SmolLM2, run as a subprocess by test_vllm_real.py.

vLLM patches process-wide state (torch.set_num_threads, RNG seeding, logging) and must run under
``if __name__ == "__main__"``, so each check is its own process that prints one JSON line.

    python tests/rollout/vllm_probe.py vllm              # colocated engine
    python tests/rollout/vllm_probe.py vllm-server URL   # a running `r1kit vllm-serve`
"""

from __future__ import annotations

import copy
import json
import sys
import time

import torch


def hf_prompt_logprobs(model, ids: list[int]) -> torch.Tensor:
    """log p(ids[t] | ids[:t]) for t >= 1 under an HF model, fp32, temperature 1."""
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0, :-1].float(), -1)
    return logp.gather(-1, torch.tensor(ids[1:])[:, None])[:, 0]


def check(backend: str, url: str | None = None) -> dict:
    from r1kit.config import LoraSection, load_config
    from r1kit.data import build_source
    from r1kit.grpo.learner import make_batch, token_logprobs
    from r1kit.models import _apply_lora, load_model, resolve_model_path
    from r1kit.rollout import build_rollout

    overrides = [f"rollout.backend={backend}", "rollout.temperature=0.7", "rollout.max_new_tokens=24"]
    if url:
        overrides.append(f"rollout.url={url}")
    cfg = load_config("configs/r1zero_cpu.yaml", overrides)
    torch.manual_seed(0)
    policy, _, tok = load_model(cfg.model, torch.device("cpu"))
    policy.eval()
    out: dict = {}
    t0 = time.perf_counter()
    ro = build_rollout(cfg.rollout, policy, tok, None, model_path=resolve_model_path(cfg.model.name_or_path), seed=0)
    out["start_s"] = time.perf_counter() - t0
    if backend == "vllm-server":
        out["logprobs_mode"] = ro.logprobs_mode  # as the server reports it
        ro.sync_weights(policy)  # the server may hold another client's weights
    samples = build_source(cfg.data, tok, 0).next_batch(2)

    torch.manual_seed(1)
    groups = ro.generate(samples)
    torch.manual_seed(1)
    again = ro.generate(samples)
    out["repeatable"] = [g.completion_ids for g in groups] == [g.completion_ids for g in again]
    out["distinct_in_group"] = len({tuple(c) for c in groups[0].completion_ids})
    out["group_sizes"] = [len(g.completion_ids) for g in groups]
    out["eos_marks_not_truncated"] = all(
        (not t) == (bool(c) and c[-1] == tok.eos_token_id) for g in groups for c, t in zip(g.completion_ids, g.truncated)
    )
    out["text_matches_ids"] = all(
        txt == tok.decode(ids, skip_special_tokens=True) for g in groups for ids, txt in zip(g.completion_ids, g.completions)
    )
    # vLLM's sampled-token log-probs (after temperature) against the learner's on the same tokens
    batch = make_batch(groups, torch.zeros(sum(len(g.completion_ids) for g in groups)), tok.pad_token_id)
    with torch.no_grad():
        learner_lp = token_logprobs(policy, batch, temperature=0.7)
    mask = batch.completion_mask_NT.bool()
    out["sampled_lp_max_diff"] = float((learner_lp - batch.sampling_logp_NT)[mask].abs().max())

    # greedy: vLLM (asked for one completion, repeated G times) equals r1kit's HF backend token for token
    from dataclasses import replace

    from r1kit.rollout.hf import HFRollout

    sampling_cfg, ro.cfg = ro.cfg, replace(cfg.rollout, temperature=0.0)
    greedy = ro.generate(samples)
    hf_greedy = HFRollout(policy, tok, ro.cfg).generate(samples)
    ro.cfg = sampling_cfg
    out["greedy_equals_hf"] = [g.completion_ids for g in greedy] == [g.completion_ids for g in hf_greedy]
    out["greedy_group_sizes"] = [len(g.completion_ids) for g in greedy]

    ids = groups[0].prompt_ids + tok(" 3 + 4 = 7. <answer>7</answer>", add_special_tokens=False)["input_ids"]
    before = torch.tensor(ro.prompt_logprobs(ids))
    out["before_vs_hf"] = float((before - hf_prompt_logprobs(policy, ids)).abs().max())

    # an optimizer-sized change to every weight (tied embedding included), then sync
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.01)
    t0 = time.perf_counter()
    ro.sync_weights(policy)
    out["sync_s"] = time.perf_counter() - t0
    after = torch.tensor(ro.prompt_logprobs(ids))
    out["after_vs_hf"] = float((after - hf_prompt_logprobs(policy, ids)).abs().max())
    out["after_vs_before"] = float((after - before).abs().max())

    # LoRA: the engine must receive W + scaling * B @ A under the base model's names
    lora = _apply_lora(copy.deepcopy(policy), LoraSection(enabled=True, r=4, alpha=8))
    with torch.no_grad():
        for n, p in lora.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.02, generator=g)
    ro.sync_weights(lora)
    lora_lp = torch.tensor(ro.prompt_logprobs(ids))
    out["lora_vs_hf"] = float((lora_lp - hf_prompt_logprobs(lora.eval(), ids)).abs().max())
    out["lora_vs_plain"] = float((lora_lp - after).abs().max())
    return out


if __name__ == "__main__":
    result = check(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None)
    print("RESULT " + json.dumps(result), flush=True)
