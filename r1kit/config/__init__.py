"""Configuration: shared sections (``sections``), one root per stage (``grpo``, ``eval``; SFT,
generate, distill, DPO and the pipeline add theirs to ``STAGES``), and the machinery that loads
them from YAML with ``section.key=value`` overrides (``parse``).

A YAML file says which stage it is for with a top-level ``stage:`` key (default ``grpo``), so
``r1kit config FILE`` resolves any of them. Every key is validated before any work starts; an
unknown key is reported with the closest valid one. The resolved config is written to
``<output_dir>/config.yaml`` so a run directory records itself.

Section classes are named ``...Section`` and roots ``...Run``: TRL's ``GRPOConfig`` and
``SFTConfig`` are different things that the next stages import.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from r1kit.config.eval import EvalDatasetSpec, EvalRun, EvalSection, TrainEvalSection
from r1kit.config.grpo import GRPORun, GRPOSection, TrainSection
from r1kit.config.dpo import DPORun
from r1kit.config.generate import GenerateRun, SamplingSection, TeacherSection
from r1kit.config.pipeline import PipelineRun, PipelineStage
from r1kit.config.sft import DistillRun, SFTDataSection, SFTRun, SFTTrainSection
from r1kit.config.parse import ConfigError, build, merge, parse_overrides, read_yaml, to_dict
from r1kit.config.sections import (
    ArithmeticSection,
    CountdownSection,
    DatasetSection,
    DataSection,
    LoraSection,
    ModelSection,
    RewardRuntimeSection,
    RewardSpec,
    RolloutSection,
    VLLMSection,
)

logger = logging.getLogger(__name__)

# stage name (the YAML's `stage:` key) -> its root config class
STAGES: dict[str, type] = {"grpo": GRPORun, "eval": EvalRun, "sft": SFTRun, "generate": GenerateRun, "dpo": DPORun,
                         "distill": DistillRun, "pipeline": PipelineRun}

__all__ = [
    "STAGES", "ArithmeticSection", "ConfigError", "CountdownSection", "DataSection", "DatasetSection",
    "DPORun", "DistillRun", "EvalDatasetSpec", "PipelineRun", "PipelineStage", "EvalRun", "GenerateRun", "SamplingSection", "TeacherSection", "EvalSection", "GRPORun", "GRPOSection", "LoraSection", "ModelSection", "RewardRuntimeSection", "RewardSpec",
    "RolloutSection", "SFTDataSection", "SFTRun", "SFTTrainSection", "TrainEvalSection", "TrainSection", "VLLMSection", "config_from_dict", "load_config", "parse_overrides",
    "save_config", "to_dict",
]


def _fold_reward_options(tree: dict[str, Any]) -> dict[str, Any]:
    """Configs written before rewards carried their options had a separate ``reward_options``
    mapping (old run directories still do): fold it into ``rewards``."""
    if "reward_options" not in tree:
        return tree
    tree = dict(tree)
    options = tree.pop("reward_options") or {}
    if not isinstance(options, dict):
        raise ConfigError(f"reward_options: expected a mapping, got {options!r}")
    rewards = {k: _spec_tree(v) for k, v in (tree.get("rewards") or {}).items()}
    for name, opts in options.items():
        if name not in rewards:
            raise ConfigError(f"reward_options.{name}: there is no reward '{name}' in rewards")
        rewards[name] = {**rewards[name], **(opts or {})}
    logger.warning("config: 'reward_options' is folded into 'rewards' (write rewards: {name: {weight: w, option: v}})")
    return {**tree, "rewards": rewards}


def _spec_tree(value: Any) -> Any:
    """A reward's YAML value as a mapping (``0.5`` -> ``{weight: 0.5}``), so overrides of its
    weight and of its options merge with it."""
    return dict(value) if isinstance(value, dict) else {"weight": value}


def _merge_rewards(tree: dict[str, Any], extra: dict[str, Any], root: type, replace: bool = False) -> dict[str, Any]:
    """``rewards.accuracy=2`` changes one weight of the file's (or the defaults') rewards, and
    ``rewards.overlong.max_len=48`` one option; the others stay. ``replace`` (an override of the
    whole mapping, ``rewards={format: 1.0}``): those rewards and no others."""
    if not isinstance(extra.get("rewards"), dict):
        return merge(tree, extra)
    base = {} if replace else tree.get("rewards")
    if base is None:
        base = to_dict(root().rewards)
    rewards = {k: _spec_tree(v) for k, v in base.items()}
    for name, value in extra["rewards"].items():
        rewards[name] = merge(rewards.get(name, {}), _spec_tree(value))
    return merge({**tree, "rewards": rewards}, {k: v for k, v in extra.items() if k != "rewards"})


def stage_of(tree: dict[str, Any]) -> type:
    """The root config class the tree's ``stage:`` names (``grpo`` when it names none)."""
    stage = tree.get("stage", "grpo")
    if stage not in STAGES:
        raise ConfigError(f"stage: '{stage}' is not one of {sorted(STAGES)}")
    return STAGES[stage]


def load_config(path: str | Path | None = None, overrides: list[str] | None = None, stage: str | None = None,
                options: dict[str, Any] | None = None):
    """YAML file (optional) + command-line options (a tree, e.g. ``r1kit eval --k 4``) + dotted
    overrides -> the validated root config of its stage.

    ``stage``: the stage the caller runs (``r1kit grpo`` passes ``"grpo"``); a file written for
    another stage is an error naming both."""
    tree = read_yaml(str(path)) if path is not None else {}
    if options:
        tree = merge(tree, options)
    extra = parse_overrides(overrides or [])
    if stage is not None:
        written = extra.get("stage", tree.get("stage", stage))
        if written != stage:
            raise ConfigError(f"stage: the config is for stage '{written}', not '{stage}'")
        tree.setdefault("stage", stage)
    root = stage_of({**tree, **extra})
    replace = any(item.split("=", 1)[0].strip() == "rewards" for item in overrides or [])
    tree = _merge_rewards(_fold_reward_options(tree), _fold_reward_options(extra), root, replace)
    return build(root, tree)


def config_from_dict(tree: dict[str, Any]):
    """A validated root config from a plain mapping (what ``load_config`` reads from YAML)."""
    tree = _fold_reward_options(tree)
    return build(stage_of(tree), tree)


def save_config(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))

