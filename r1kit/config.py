"""Configuration: one dataclass per section, loaded from YAML, overridden with ``section.key=value``.

Every key is validated before any work starts; an unknown key is reported with the closest valid one.
The resolved config is written to ``<output_dir>/config.yaml`` so a run directory records itself.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the key."""


@dataclass
class LoraConfig:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"


@dataclass
class ModelConfig:
    # A builtin name (see r1kit.models.BUILTIN_MODELS), a local HF directory, or a hub id.
    name_or_path: str = "smollm2-135m-instruct"
    # "auto": fp32 weights; forward passes in bf16 (autocast) on GPU, fp32 on CPU.
    # "bfloat16": bf16 weights (half the memory; small updates can round away).
    dtype: str = "auto"
    gradient_checkpointing: bool = False
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class ArithmeticConfig:
    min_value: int = 0
    max_value: int = 9
    num_operands: int = 2
    ops: str = "+-"


@dataclass
class CountdownConfig:
    num_numbers: int = 3
    min_number: int = 1
    max_number: int = 20
    ops: str = "+-*/"


@dataclass
class DatasetConfig:
    # Local .jsonl/.json/.parquet/.csv file or directory, or a hub id (needs network).
    path: str | None = None
    # "gsm8k": answer ends with "#### N";  "math": solution holds \boxed{...}.
    format: str = "gsm8k"
    split: str = "train"
    # Column mapping: which column holds the question and which the reference answer/solution.
    question_column: str | None = None
    answer_column: str | None = None
    # Hub dataset config name, if any.
    name: str | None = None
    limit: int | None = None


@dataclass
class DataConfig:
    # "arithmetic" | "countdown" | "dataset"
    source: str = "arithmetic"
    # "r1zero": the plain-text R1-Zero base-model template; "chat": the tokenizer's chat template.
    template: str = "chat"
    # Text appended to the prompt that the model continues from; rewards judge prefill + completion.
    prefill: str = "<think>"
    system_prompt: str | None = None
    arithmetic: ArithmeticConfig = field(default_factory=ArithmeticConfig)
    countdown: CountdownConfig = field(default_factory=CountdownConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)


@dataclass
class VLLMConfig:
    """Engine settings for ``rollout.backend: vllm`` (colocated) and the ``vllm-server`` client."""

    # GPU: share of GPU memory the colocated engine may take (weights + KV cache); training
    # needs the rest.
    gpu_memory_utilization: float = 0.3
    # KV-cache size in GiB; 0 = from gpu_memory_utilization on a GPU, 1 GiB on a CPU.
    kv_cache_gb: float = 0.0
    # Longest prompt + completion the engine accepts; 0 = the model's own limit.
    max_model_len: int = 0
    # No CUDA graphs / torch.compile: starts in seconds (compiling takes ~100 s on a CPU).
    enforce_eager: bool = True
    # GPU only: free vLLM's memory while the learner runs (vLLM sleep mode, level 1).
    sleep: bool = False
    # vllm-server: seconds to wait for the server at startup (it may still be loading).
    connect_timeout_s: float = 120.0
    # vllm-server: seconds allowed per request; a failed request is retried `retries` times.
    request_timeout_s: float = 600.0
    retries: int = 2
    # vllm-server: folder on the server's machine where the trainer writes the weights for the
    # server to load after each step (shared memory by default).
    sync_dir: str = "/dev/shm"


@dataclass
class RolloutConfig:
    # "hf": the policy generates itself; "vllm": a vLLM engine in the trainer's process;
    # "vllm-server": a server started with `r1kit vllm-serve MODEL`, at `url`.
    backend: str = "hf"
    url: str = "http://127.0.0.1:8000"
    group_size: int = 8
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    # Sequences per generate() call; 0 = all prompts x group at once.
    batch_size: int = 0
    vllm: VLLMConfig = field(default_factory=VLLMConfig)


@dataclass
class RewardRuntimeConfig:
    # Wall-clock deadline for one completion's score (math verification, user rewards).
    timeout_s: float = 5.0
    # Deadline for one reward over the whole batch.
    batch_timeout_s: float = 60.0
    # Worker processes that run rewards under deadlines; 0 = min(2, CPU count).
    workers: int = 0


@dataclass
class GRPOConfig:
    # One of r1kit.grpo.loss.LOSS_TYPES: "grpo", "bnpo", "dapo", "dr_grpo".
    loss_type: str = "grpo"
    # Advantage scale: "group" (GRPO), "batch", "none" (Dr. GRPO).
    scale: str = "group"
    epsilon_low: float = 0.2
    epsilon_high: float | None = None
    beta: float = 0.0
    # mu: optimisation passes over each generated batch.
    num_iterations: int = 1
    mask_truncated: bool = False
    # DAPO dynamic sampling: drop groups with all-equal rewards and refill.
    dynamic_sampling: bool = False
    max_resample_rounds: int = 2
    # Correction for the gap between the rollout engine's log-probs and the learner's (vLLM
    # backends; the HF backend samples from the learner's own model): weight each token's loss by
    # w = exp(learner old log-prob - sampler log-prob), per token or per sequence, truncated to
    # at most is_cap ("*_truncate") or zeroed above it ("*_mask"); "none" turns it off.
    is_correction: str = "token_truncate"
    is_cap: float = 2.0


@dataclass
class TrainConfig:
    max_steps: int = 100
    # Prompts per step; each gets rollout.group_size completions.
    prompts_per_step: int = 4
    # Sequences per forward/backward; gradients accumulate over the batch.
    micro_batch_size: int = 8
    lr: float = 1e-6
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    # "constant" | "linear" | "cosine", each after warmup_steps of linear warmup.
    lr_schedule: str = "constant"
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    save_every: int = 0
    keep_last: int = 2
    samples_every: int = 1
    # samples.jsonl gets the highest- and lowest-reward completion of each logged step, or all.
    log_all_samples: bool = False
    tensorboard: bool = False
    # Tokens per chunk when computing log-probs (bounds the [chunk, V] float32 buffer).
    logit_chunk: int = 1024
    progress: bool = True


@dataclass
class Config:
    output_dir: str = "runs/grpo"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    # Reward name -> weight; the total reward is the weighted sum (c1*r1 + c2*r2 + ...).
    rewards: dict[str, float] = field(default_factory=lambda: {"accuracy": 1.0, "format": 0.2})
    # Reward name -> keyword arguments passed to that reward, e.g. {cosine_length: {max_len: 512}}.
    reward_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    reward_runtime: RewardRuntimeConfig = field(default_factory=RewardRuntimeConfig)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


_CHOICES = {
    "model.dtype": {"auto", "float32", "bfloat16"},
    "data.source": {"arithmetic", "countdown", "dataset"},
    "data.template": {"r1zero", "chat"},
    "data.dataset.format": {"gsm8k", "math"},
    "rollout.backend": {"hf", "vllm", "vllm-server"},
    "grpo.is_correction": {"none", "token_truncate", "token_mask", "sequence_truncate", "sequence_mask"},
    "train.lr_schedule": {"constant", "linear", "cosine"},
}


def _closest(key: str, valid: list[str], prefix: str = "") -> str:
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.4)
    if near:
        return f" (did you mean '{prefix}{near[0]}'?)"
    return f" (valid keys: {', '.join(prefix + v for v in sorted(valid))})"


def _check_type(path: str, value: Any, tp: Any) -> Any:
    """Coerce/validate a leaf value against its annotation; returns the value to store."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _check_type(path, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{path}: invalid value {value!r}")
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        kt, vt = typing.get_args(tp)
        return {str(k): _check_type(f"{path}.{k}", v, vt) for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (et,) = typing.get_args(tp)
        return [_check_type(path, v, et) for v in value]
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    return value


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            raise ConfigError(f"unknown config key '{prefix}{key}'{_closest(key, names, prefix)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, f"{prefix}{key}.")
        else:
            kwargs[key] = _check_type(f"{prefix}{key}", value, tp)
    return cls(**kwargs)


def _split_key(dotted: str, value: Any) -> list[str]:
    """Split an override key on dots, except inside reward names, which may be dotted module
    paths: ``rewards.pkg.mod:fn`` -> [rewards, pkg.mod:fn];
    ``reward_options.pkg.mod:fn.max_len`` -> [reward_options, pkg.mod:fn, max_len]."""
    head, _, rest = dotted.partition(".")
    if head == "rewards" and rest:
        return [head, rest]
    if head == "reward_options" and rest:
        name, dot, option = rest.rpartition(".")
        if dot and not isinstance(value, dict) and ":" not in option:
            return [head, name, option]
        return [head, rest]
    return dotted.split(".")


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = _split_key(dotted, value)
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{p}' is not a section")
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["train.max_steps=5", "seed=1"]`` -> nested dict; values parsed as YAML scalars."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like section.key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override '{item}' has no key")
        _set_dotted(tree, key, yaml.safe_load(raw) if raw.strip() else "")
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict) and k != "rewards":
            out[k] = _merge(out[k], v)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}  # rewards: override one weight, keep the others
        else:
            out[k] = v
    return out


def validate(cfg: Config) -> Config:
    """Cross-field checks; raises ConfigError naming the key."""
    from r1kit.grpo.advantages import SCALES
    from r1kit.grpo.loss import LOSS_TYPES

    tree = to_dict(cfg)
    choices = {**_CHOICES, "grpo.loss_type": set(LOSS_TYPES), "grpo.scale": set(SCALES)}
    for dotted, allowed in choices.items():
        node: Any = tree
        for p in dotted.split("."):
            node = node[p]
        if node not in allowed:
            raise ConfigError(f"{dotted}: '{node}' is not one of {sorted(allowed)}")
    positive = {
        "rollout.group_size": cfg.rollout.group_size,
        "rollout.max_new_tokens": cfg.rollout.max_new_tokens,
        "train.prompts_per_step": cfg.train.prompts_per_step,
        "train.micro_batch_size": cfg.train.micro_batch_size,
        "grpo.num_iterations": cfg.grpo.num_iterations,
        "train.logit_chunk": cfg.train.logit_chunk,
        "train.keep_last": cfg.train.keep_last,
    }
    for k, v in {"reward_runtime.timeout_s": cfg.reward_runtime.timeout_s,
                 "reward_runtime.batch_timeout_s": cfg.reward_runtime.batch_timeout_s}.items():
        if not v > 0:
            raise ConfigError(f"{k}: must be > 0, got {v}")
    if cfg.reward_runtime.workers < 0:
        raise ConfigError(f"reward_runtime.workers: must be >= 0, got {cfg.reward_runtime.workers}")
    for k, v in positive.items():
        if v < 1:
            raise ConfigError(f"{k}: must be >= 1, got {v}")
    nonneg = {
        "train.max_steps": cfg.train.max_steps,
        "train.save_every": cfg.train.save_every,
        "train.warmup_steps": cfg.train.warmup_steps,
        "grpo.beta": cfg.grpo.beta,
        "grpo.epsilon_low": cfg.grpo.epsilon_low,
        "rollout.temperature": cfg.rollout.temperature,
        "rollout.top_k": cfg.rollout.top_k,
        "rollout.batch_size": cfg.rollout.batch_size,
        "grpo.max_resample_rounds": cfg.grpo.max_resample_rounds,
        "train.samples_every": cfg.train.samples_every,
    }
    for k, v in nonneg.items():
        if v < 0:
            raise ConfigError(f"{k}: must be >= 0, got {v}")
    if cfg.rollout.group_size < 2:
        raise ConfigError("rollout.group_size: GRPO needs at least 2 completions per prompt")
    if not 0 < cfg.rollout.top_p <= 1:
        raise ConfigError(f"rollout.top_p: must be in (0, 1], got {cfg.rollout.top_p}")
    v = cfg.rollout.vllm
    if not 0 < v.gpu_memory_utilization <= 1:
        raise ConfigError(f"rollout.vllm.gpu_memory_utilization: must be in (0, 1], got {v.gpu_memory_utilization}")
    for k in ("kv_cache_gb", "max_model_len", "retries"):
        if getattr(v, k) < 0:
            raise ConfigError(f"rollout.vllm.{k}: must be >= 0, got {getattr(v, k)}")
    for k in ("connect_timeout_s", "request_timeout_s"):
        if not getattr(v, k) > 0:
            raise ConfigError(f"rollout.vllm.{k}: must be > 0, got {getattr(v, k)}")
    if cfg.rollout.backend == "vllm-server" and not cfg.rollout.url.startswith(("http://", "https://")):
        raise ConfigError(f"rollout.url: expected http://HOST:PORT, got {cfg.rollout.url!r}")
    if not cfg.grpo.is_cap > 0:
        raise ConfigError(f"grpo.is_cap: must be > 0, got {cfg.grpo.is_cap}")
    if cfg.train.lr <= 0:
        raise ConfigError(f"train.lr: must be > 0, got {cfg.train.lr}")
    if not cfg.rewards:
        raise ConfigError("rewards: at least one reward with a weight is needed")
    from r1kit.rewards import REWARDS, resolve_reward

    for name in cfg.rewards:
        try:
            resolve_reward(name)
        except KeyError as e:
            if ":" in name:  # a user's module:function; the KeyError says what is wrong with it
                raise ConfigError(f"rewards.{name}: {e.args[0]}") from None
            raise ConfigError(
                f"rewards.{name}: unknown reward{_closest(name, sorted(REWARDS))}"
            ) from None
    from r1kit.rewards.registry import check_reward_options

    for name, opts in cfg.reward_options.items():
        if name not in cfg.rewards:
            raise ConfigError(f"reward_options.{name}: there is no reward '{name}' in rewards{_closest(name, sorted(cfg.rewards))}")
        try:
            check_reward_options(name, opts)
        except ValueError as e:
            raise ConfigError(f"reward_options.{e}") from None
    if cfg.data.source == "dataset" and not cfg.data.dataset.path:
        raise ConfigError("data.dataset.path: required when data.source is 'dataset'")
    return cfg


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """YAML file (optional) + dotted overrides -> validated Config."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            tree = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML: {e}") from None
        if not isinstance(tree, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections")
    extra = parse_overrides(overrides or [])
    if isinstance(extra.get("rewards"), dict) and "rewards" not in tree:
        # `rewards.accuracy=2` changes one weight of the defaults, it does not drop the others
        tree["rewards"] = dict(Config().rewards)
    tree = _merge(tree, extra)
    return validate(_build(Config, tree, ""))


def config_from_dict(tree: dict[str, Any]) -> Config:
    return validate(_build(Config, tree, ""))


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
