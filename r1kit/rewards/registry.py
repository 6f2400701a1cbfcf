"""Reward registry and the TRL reward-function contract.

A reward is a plain function ``fn(prompts, completions, **columns) -> list[float | None]``
(TRL's convention): ``completions[i]`` is either the text the model wrote or, in TRL's
conversational form, a list of ``{"role", "content"}`` messages; ``columns`` hold one list per
dataset column (``answer=[...]``, ``task=[...]``) plus whatever else the caller passes, which a
reward must ignore. ``None`` means "not applicable to this sample".
"""

from __future__ import annotations

import importlib
from typing import Any, Callable

RewardFn = Callable[..., list]

REWARDS: dict[str, RewardFn] = {}


def register(name: str) -> Callable[[RewardFn], RewardFn]:
    """Decorator: make ``fn`` resolvable by ``name`` from the config's ``rewards`` mapping."""

    def wrap(fn: RewardFn) -> RewardFn:
        old = REWARDS.get(name)
        # Re-importing the defining module (importlib.reload) registers the same function again.
        if old is not None and (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(
                f"reward '{name}' is already registered by {old.__module__}.{old.__qualname__}"
            )
        REWARDS[name] = fn
        return fn

    return wrap


def resolve_reward(name: str) -> RewardFn:
    """A registered name (``"accuracy"``) or ``"package.module:function"``; KeyError otherwise."""
    if name in REWARDS:
        return REWARDS[name]
    if ":" in name:
        module_name, _, attr = name.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:
            raise KeyError(f"reward '{name}': cannot import module '{module_name}' ({e})") from None
        fn = getattr(module, attr, None)
        if not callable(fn):
            raise KeyError(f"reward '{name}': module '{module_name}' has no function '{attr}'")
        return fn
    raise KeyError(
        f"unknown reward '{name}'; registered: {', '.join(sorted(REWARDS))}, "
        "or give 'package.module:function'"
    )


def completion_text(completion: Any) -> str:
    """The text of one completion: a string as is, or the last message of a conversation."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)):
        if not completion:
            return ""
        content = completion[-1].get("content") if isinstance(completion[-1], dict) else None
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        # Multimodal content: a list of {"type": "text", "text": ...} parts.
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    raise TypeError(f"a completion must be a string or a list of messages, got {type(completion)}")
