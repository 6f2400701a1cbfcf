"""Token tensors shared by the rollout backends and the learner: left padding and position ids.

Prompts are left-padded, so every prompt ends at the same column and generation (or the
completion) continues right after it; positions count real tokens only, as during generation.
"""

from __future__ import annotations

import torch


def left_pad(rows: list[list[int]], pad_id: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` of token ids -> ``ids_NL`` (pad on the left) and ``mask_NL`` (1 on real tokens),
    L the longest row."""
    L = max(len(r) for r in rows)
    ids_NL = torch.full((len(rows), L), pad_id, dtype=torch.long, device=device)
    mask_NL = torch.zeros((len(rows), L), dtype=torch.long, device=device)
    for i, r in enumerate(rows):
        if r:
            ids_NL[i, L - len(r) :] = torch.tensor(r, dtype=torch.long, device=device)
            mask_NL[i, L - len(r) :] = 1
    return ids_NL, mask_NL


def positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids that count only real tokens (0 on left padding): ``cumsum(mask) - 1``."""
    return (mask.cumsum(-1) - 1).clamp(min=0)
