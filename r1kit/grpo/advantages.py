"""Group-relative advantages (pure tensor math).

Shapes: rewards and advantages are flat [B*G] tensors whose groups of G are contiguous.
"""

from __future__ import annotations

import torch

SCALES = ("group", "batch", "none")


def group_advantages(rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4) -> torch.Tensor:
    """Advantage of each completion relative to the other completions of its prompt.

    - ``"group"`` (GRPO):   A_i = (r_i - mean(r_group)) / (std(r_group) + eps)
    - ``"batch"``:          A_i = (r_i - mean(r_group)) / (std(r_batch) + eps)
    - ``"none"`` (Dr. GRPO): A_i = r_i - mean(r_group)

    std is the population std (``unbiased=False``, divide by G), so a group of G equal rewards gives
    0 and a group of two different rewards gives +-1 / (1 + eps). Groups whose rewards are all
    equal get zero advantage under every scale.
    """
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be 1-D [B*G], got shape {tuple(rewards.shape)}")
    if group_size < 1 or rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    if scale not in SCALES:
        raise ValueError(f"scale must be one of {SCALES}, got {scale!r}")
    r_PG = rewards.float().view(-1, group_size)
    centred_PG = r_PG - r_PG.mean(dim=1, keepdim=True)
    if scale == "group":
        centred_PG = centred_PG / (r_PG.std(dim=1, unbiased=False, keepdim=True) + eps)
    elif scale == "batch":
        centred_PG = centred_PG / (rewards.float().std(unbiased=False) + eps)
    return centred_PG.reshape(-1)


def zero_variance_groups(rewards: torch.Tensor, group_size: int) -> torch.Tensor:
    """Bool [B]: True where every completion of the prompt got the same reward (no signal)."""
    r_PG = rewards.view(-1, group_size)
    return (r_PG == r_PG[:, :1]).all(dim=1)
