"""The few records that flow between stages, and the one shape alphabet of r1kit.

Shape suffixes name a tensor's (or list's) axes, one letter per axis, the same everywhere:

    P  prompts (of a step or a batch)       G  completions per prompt (the group)
    N  completion rows, N = P * G           U  distinct prompts within a micro-batch
    L  prompt width (tokens, left-padded)   T  completion width (tokens, right-padded)
    V  vocabulary

e.g. ``groups_P``, ``rewards_N``, ``adv_N``, ``prompt_ids_NL``, ``logp_NT``, ``logits_NTV``.
Names that are a convention elsewhere keep it: reward functions take TRL's ``prompts`` and
``completions`` (N each), and a ``Group``'s fields hold one prompt's G rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
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
    # Learner updates applied to the generator's weights when these were generated.
    policy_version: int = 0

    @property
    def responses(self) -> list[str]:
        """What rewards judge: the pre-filled prefix followed by each completion."""
        return [self.sample.prefill + c for c in self.completions]


@dataclass
class Batch:
    """Tokens for the learner, one row per completion.

    Prompts are left-padded to a common width L and completions right-padded to T, so every
    completion starts at column L and the learner only computes logits for the last T positions.
    ``completion_mask_NT`` is 1 on tokens that count in the loss: 0 on padding, and on whole rows
    masked out (e.g. truncated completions with ``grpo.mask_truncated``).
    """

    prompt_ids_NL: torch.Tensor
    prompt_mask_NL: torch.Tensor
    completion_ids_NT: torch.Tensor
    completion_lengths_N: torch.Tensor
    completion_mask_NT: torch.Tensor
    adv_N: torch.Tensor
    old_logp_NT: torch.Tensor | None = None
    ref_logp_NT: torch.Tensor | None = None
    sampling_logp_NT: torch.Tensor | None = None  # the rollout engine's own log-probs (vLLM)
    pg_mask_NT: torch.Tensor | None = None  # tokens whose policy-gradient term counts (high-entropy selection)

    def __len__(self) -> int:
        return self.prompt_ids_NL.shape[0]

    def select(self, idx: torch.Tensor) -> "Batch":
        """Rows ``idx``, with prompt columns that are padding in every row and completion
        columns past the longest completion trimmed away (less work per micro-batch). Each field
        is cut by its shape suffix: ``_NL`` prompt columns, ``_NT`` completion columns, ``_N``
        rows only."""
        used = (self.prompt_mask_NL[idx].sum(0) > 0).nonzero()
        l_lo = int(used.min()) if used.numel() else 0
        t_hi = max(1, int(self.completion_lengths_N[idx].max()))

        def cut(name: str, t: torch.Tensor | None) -> torch.Tensor | None:
            if t is None:
                return None
            t = t[idx]
            if name.endswith("_NL"):
                return t[:, l_lo:]
            if name.endswith("_NT"):
                return t[:, :t_hi]
            return t

        return Batch(**{f.name: cut(f.name, getattr(self, f.name)) for f in fields(self)})

    def without_signal(self) -> "Batch":
        """The same rows with no token counted and zero advantages: a forward and backward pass
        of it changes no gradient (what a process with no rows of its own runs)."""
        return replace(self, completion_mask_NT=torch.zeros_like(self.completion_mask_NT), adv_N=torch.zeros_like(self.adv_N))
