"""Rollout backends turn prompts into groups of completions.

A backend implements :class:`RolloutBackend`; the training loop only calls ``generate`` and
``sync_weights``, so a vLLM backend drops in without touching rewards or the learner.
"""

from __future__ import annotations

from typing import Protocol

from r1kit.config import RolloutSection
from r1kit.types import Group, Sample


# rollout.backend: the backends build_rollout knows
BACKENDS = ("hf", "vllm", "vllm-server")
# rollout.seeding (see RolloutSection)
SEEDING = ("auto", "stream", "per_prompt")


class RolloutBackend(Protocol):
    # What the loop needs to know about a backend, declared by the backend (never its name):
    shares_weights: bool  # generates with the learner's own model: nothing to sync, no sync time
    needs_initial_sync: bool  # may hold other weights than the policy's at start (a server)
    has_sampling_logps: bool  # its Groups carry the engine's per-token log-probs
    shared_by_processes: bool  # one generator for all training processes (a server): process 0 syncs it

    def generate(self, samples_P: list[Sample], seeds_P: list[int] | None = None) -> list[Group]:
        """G = rollout.group_size completions for each sample, in order. ``seeds_P``: one seed
        per sample that alone decides its completions' randomness (``rollout.seeding``), else
        the backend's own stream."""
        ...

    def sync_weights(self, model) -> None:
        """Make the generator use the learner's current weights (no-op when they are shared)."""
        ...


def make_group(sample: Sample, prompt_ids: list[int], completion_ids: list[list[int]], tokenizer, eos_ids,
               sampling_logps: list[list[float]] | None = None) -> Group:
    """One prompt's G completions as every backend returns them: token ids, decoded text (special
    tokens dropped), truncated = did not end in an EOS token, and the engine's log-probs if any."""
    return Group(
        sample=sample,
        prompt_ids=prompt_ids,
        completion_ids=completion_ids,
        completions=tokenizer.batch_decode(completion_ids, skip_special_tokens=True),
        truncated=[not c or c[-1] not in eos_ids for c in completion_ids],
        sampling_logps=sampling_logps,
    )


def build_rollout(
    cfg: RolloutSection, model, tokenizer, amp=None, model_path: str | None = None, seed: int = 0
) -> RolloutBackend:
    """``amp``: autocast dtype for forward passes (None = the weights' dtype). ``model_path``:
    the HF directory (or hub id) the policy was loaded from, which a vLLM engine loads too."""
    if cfg.backend == "hf":
        from r1kit.rollout.hf import HFRollout

        return HFRollout(model, tokenizer, cfg, amp)
    if cfg.backend == "vllm":
        from r1kit.rollout.vllm import VLLMRollout

        if model_path is None:
            raise ValueError("rollout.backend=vllm needs the model's path (model_path)")
        return VLLMRollout(model, tokenizer, cfg, model_path, amp, seed)
    if cfg.backend == "vllm-server":
        from r1kit.rollout.vllm import VLLMServerRollout

        return VLLMServerRollout(model, tokenizer, cfg)
    raise ValueError(f"rollout.backend: unknown backend {cfg.backend!r} (available: {', '.join(BACKENDS)})")
