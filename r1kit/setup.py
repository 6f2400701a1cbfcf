"""Setup shared by every stage (torchtune's setup / loop / cleanup split): from a root config's
shared sections -- model, data, rollout, reward runtime -- build the device, policy, reference,
tokenizer, prompt source and rollout backend, in the order that fails fastest on bad input.
A stage's loop then only uses them."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from r1kit.data import PromptSource, build_source
from r1kit.models import autocast_dtype, default_device, load_model, resolve_model_path
from r1kit.rewards.pool import configure as configure_reward_pool
from r1kit.rollout import RolloutBackend, build_rollout


@dataclass
class Parts:
    device: torch.device
    policy: Any
    ref: Any  # a frozen copy, or None (no KL term, or LoRA: the policy with adapters off)
    tokenizer: Any
    amp: torch.dtype | None  # autocast dtype of forward passes (None: the weights' dtype)
    source: PromptSource
    rollout: RolloutBackend


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_parts(cfg: Any, need_ref: bool = False) -> Parts:
    """``cfg``: a root config with ``seed``, ``model``, ``data``, ``rollout`` and
    ``reward_runtime`` sections. Seeds everything first, so the same config builds the same
    parts (and the same data stream)."""
    device = default_device()
    seed_everything(cfg.seed)
    policy, ref, tokenizer = load_model(cfg.model, device, need_ref=need_ref)
    source = build_source(cfg.data, tokenizer, cfg.seed)
    if cfg.reward_runtime.workers:
        configure_reward_pool(size=cfg.reward_runtime.workers)
    amp = autocast_dtype(cfg.model.dtype, device)
    rollout = build_rollout(
        cfg.rollout, policy, tokenizer, amp, model_path=resolve_model_path(cfg.model.name_or_path), seed=cfg.seed
    )
    return Parts(device, policy, ref, tokenizer, amp, source, rollout)
