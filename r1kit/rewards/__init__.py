"""Rewards: plain functions with TRL's contract ``fn(prompts, completions, **columns)``.

Registered names: ``accuracy`` (per-task answer check), ``format`` (strict R1-Zero layout),
``soft_format`` and ``tag_count`` (partial format credit), ``length`` (Kimi k1.5 group length
reward), ``cosine_length`` (cosine-scaled length by correctness), ``repetition`` (n-gram penalty),
``overlong`` (DAPO soft overlong punishment), ``language`` (language consistency of the reasoning),
``reward_model`` / ``reward_model_<label>`` (a learned HF sequence-classification reward model).
``resolve_reward`` also accepts ``"package.module:function"`` for a user's own reward; ``score``
combines them by weight; ``check_reward_options`` validates a reward's ``reward_options``.
How a reward runs (``Runs``) is declared with it: ``register(name, runs=...)``, or ``@runs(...)``
on a user's function; ``TrainerState`` is what a reward taking TRL's ``trainer_state`` gets.
"""

from r1kit.rewards.registry import REWARDS, Runs, check_reward_options, completion_text, register, resolve_reward, runs
from r1kit.rewards import accuracy, format, language, math, reward_model, shaping  # noqa: E402,F401 - import registers the rewards
from r1kit.rewards.scoring import Scores, TrainerState, score, score_groups

__all__ = [
    "REWARDS", "Runs", "Scores", "TrainerState", "check_reward_options", "completion_text", "register",
    "resolve_reward", "runs", "score", "score_groups",
]
