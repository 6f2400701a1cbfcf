"""The few records that flow between stages.

Shape suffixes used across r1kit: B batch (sequences), G group size, T tokens, V vocab.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Sample:
    """One prompt, ready for the model.

    ``prompt`` is the full templated text fed to the tokenizer, ending with ``prefill``
    (e.g. ``"<think>"``); rewards judge ``prefill + completion``. ``columns`` are passed to reward
    functions as keyword arguments (TRL convention), e.g. ``answer``, ``task``, ``numbers``.
    """

    prompt: str
    prefill: str = ""
    columns: dict[str, Any] = field(default_factory=dict)


@dataclass
class Group:
    """G completions of one prompt."""

    sample: Sample
    prompt_ids: list[int]
    completion_ids: list[list[int]]
    completions: list[str]
    truncated: list[bool]
    # The rollout engine's log-prob of each generated token (vLLM backends), else None.
    sampling_logps: list[list[float]] | None = None

    @property
    def responses(self) -> list[str]:
        """What rewards judge: the pre-filled prefix followed by each completion."""
        return [self.sample.prefill + c for c in self.completions]


@dataclass
class Batch:
    """Tokens for the learner, one row per completion.

    Prompts are left-padded to a common width P and completions right-padded to C, so every
    completion starts at column P and the learner only computes logits for the last C positions.
    ``completion_mask_BC`` is 1 on tokens that count in the loss: 0 on padding, and on whole rows
    masked out (e.g. truncated completions with ``grpo.mask_truncated``).
    """

    prompt_ids_BP: torch.Tensor
    prompt_mask_BP: torch.Tensor
    completion_ids_BC: torch.Tensor
    completion_lengths_B: torch.Tensor
    completion_mask_BC: torch.Tensor
    adv_B: torch.Tensor
    old_logp_BC: torch.Tensor | None = None
    ref_logp_BC: torch.Tensor | None = None
    sampling_logp_BC: torch.Tensor | None = None  # the rollout engine's own log-probs (vLLM)

    def __len__(self) -> int:
        return self.prompt_ids_BP.shape[0]

    def select(self, idx: torch.Tensor) -> "Batch":
        """Rows ``idx``, with prompt columns that are padding in every row and completion
        columns past the longest completion trimmed away (less work per micro-batch)."""
        pm = self.prompt_mask_BP[idx]
        used = (pm.sum(0) > 0).nonzero()
        p_lo = int(used.min()) if used.numel() else 0
        c_hi = max(1, int(self.completion_lengths_B[idx].max()))

        def cut(t: torch.Tensor | None) -> torch.Tensor | None:
            return None if t is None else t[idx][:, :c_hi]

        return Batch(
            self.prompt_ids_BP[idx][:, p_lo:],
            pm[:, p_lo:],
            self.completion_ids_BC[idx][:, :c_hi],
            self.completion_lengths_B[idx],
            self.completion_mask_BC[idx][:, :c_hi],
            self.adv_B[idx],
            cut(self.old_logp_BC),
            cut(self.ref_logp_BC),
            cut(self.sampling_logp_BC),
        )
