"""Learning-rate schedules, by name (``train.lr_schedule``), for every stage that trains.

Every schedule starts with ``warmup`` steps of linear warmup, multiplier ``(s + 1) / warmup`` at
optimizer step ``s`` (so the first step already learns; transformers' warmup gives step 0 a
learning rate of 0), then:

- ``constant``: 1;
- ``linear``, ``cosine``: transformers' ``get_linear_schedule_with_warmup`` /
  ``get_cosine_schedule_with_warmup`` decay from 1 towards 0 at ``total`` steps;
- ``multistep`` (DeepSeek LLM): 1, then ``factors[i]`` from ``milestones[i] * total`` steps on
  (by default 31.6% of the maximum after 80% of training and 10% after 90%).

``build_scheduler`` returns a ``torch.optim.lr_scheduler.LambdaLR`` whose ``state_dict`` holds
only its step count, so a resumed run continues the schedule exactly.
"""

from __future__ import annotations

from typing import Callable

import torch

# DeepSeek LLM's multi-step schedule: fractions of training and the LR multiplier from there on.
DEFAULT_MILESTONES = (0.8, 0.9)
DEFAULT_FACTORS = (0.316, 0.1)


def _transformers_decay(name: str, warmup: int, total: int) -> Callable[[int], float]:
    """transformers' multiplier for ``name`` (linear/cosine), taken from its public scheduler."""
    from transformers import get_scheduler

    dummy = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    return get_scheduler(name, dummy, num_warmup_steps=warmup, num_training_steps=total).lr_lambdas[0]


def _multistep(total: int, milestones: tuple[float, ...], factors: tuple[float, ...]) -> Callable[[int], float]:
    steps = [int(m * total) for m in milestones]

    def f(step: int) -> float:
        factor = 1.0
        for at, value in zip(steps, factors):
            if step >= at:
                factor = value
        return factor

    return f


SCHEDULES: dict[str, Callable[..., Callable[[int], float]]] = {
    "constant": lambda warmup, total, milestones, factors: (lambda step: 1.0),
    "linear": lambda warmup, total, milestones, factors: _transformers_decay("linear", warmup, total),
    "cosine": lambda warmup, total, milestones, factors: _transformers_decay("cosine", warmup, total),
    "multistep": lambda warmup, total, milestones, factors: _multistep(total, milestones, factors),
}


def lr_multiplier(
    name: str, warmup: int, total: int,
    milestones: tuple[float, ...] = DEFAULT_MILESTONES, factors: tuple[float, ...] = DEFAULT_FACTORS,
) -> Callable[[int], float]:
    """Multiplier on the base LR at optimizer step ``s`` (0-based). ValueError for an unknown
    ``name``, naming the valid ones."""
    if name not in SCHEDULES:
        raise ValueError(f"lr_schedule: '{name}' is not one of {sorted(SCHEDULES)}")
    after = SCHEDULES[name](warmup, total, tuple(milestones), tuple(factors))

    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        return after(min(step, total))  # past the end the schedule stays where it ended

    return f


def build_scheduler(
    optimizer: torch.optim.Optimizer, name: str, warmup: int, total: int,
    milestones: tuple[float, ...] = DEFAULT_MILESTONES, factors: tuple[float, ...] = DEFAULT_FACTORS,
    last_epoch: int = -1,
) -> torch.optim.lr_scheduler.LambdaLR:
    """``last_epoch``: to continue a schedule, the number of steps already taken minus one (the
    param groups then need ``initial_lr``, the base learning rate)."""
    multiplier = lr_multiplier(name, warmup, total, milestones, factors)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier, last_epoch=last_epoch)
