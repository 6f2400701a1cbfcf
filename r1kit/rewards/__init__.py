"""Rewards: plain functions with TRL's contract ``fn(prompts, completions, **columns)``.

Registered names: ``accuracy`` (per-task answer check), ``format`` (strict R1-Zero layout),
``soft_format`` and ``tag_count`` (partial format credit). ``resolve_reward`` also accepts
``"package.module:function"`` for a user's own reward; ``score`` combines them by weight.
"""

from r1kit.rewards.registry import REWARDS, completion_text, register, resolve_reward
from r1kit.rewards import accuracy, format, math  # noqa: E402,F401 - import registers the rewards
from r1kit.rewards.scoring import Scores, score

__all__ = ["REWARDS", "Scores", "completion_text", "register", "resolve_reward", "score"]
