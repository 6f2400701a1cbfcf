"""A user reward in TRL's signature, used from a config as `examples.custom_reward:brevity`.

    r1kit grpo configs/r1zero_cpu.yaml "rewards={accuracy: 0.5, soft_format: 0.3, examples.custom_reward:brevity: 0.2}"

(run from the repository root so `examples` is importable, or put the module on PYTHONPATH).
"""

from __future__ import annotations


def brevity(prompts, completions, **columns) -> list[float]:
    """1.0 for answers of at most 200 characters, falling linearly to 0.0 at 1,000 characters."""
    out = []
    for c in completions:
        text = c if isinstance(c, str) else c[-1]["content"]  # TRL's conversational form too
        out.append(min(1.0, max(0.0, (1000 - len(text)) / 800)))
    return out
