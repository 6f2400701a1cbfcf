"""The config sections every stage shares: model, data, rollout, rewards, reward runtime.

Each section checks itself when it is built (``Section.check``); a stage's root config composes
the ones it needs (``r1kit.config.grpo.GRPORun``) and adds only the checks of its own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from r1kit.config.parse import ConfigError, Section, at_least, choice, positive


@dataclass
class LoraSection(Section):
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: str | list[str] = "all-linear"

    def check(self) -> None:
        at_least(self, 1, "r", "alpha")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout: must be in [0, 1), got {self.dropout}")


@dataclass
class ModelSection(Section):
    # A builtin name (see r1kit.models.BUILTIN_MODELS), a local HF directory, or a hub id.
    name_or_path: str = "smollm2-135m-instruct"
    # "auto": fp32 weights; forward passes in bf16 (autocast) on GPU, fp32 on CPU.
    # "bfloat16": bf16 weights (half the memory; small updates can round away).
    dtype: str = choice("auto", "r1kit.models:DTYPES")
    gradient_checkpointing: bool = False
    lora: LoraSection = field(default_factory=LoraSection)


@dataclass
class ArithmeticSection(Section):
    """``data.source: arithmetic``: "a + b = ?" with operands drawn from [min_value, max_value]."""

    min_value: int = 0
    max_value: int = 9
    num_operands: int = 2
    ops: str = "+-"  # operators drawn from these


@dataclass
class CountdownSection(Section):
    """``data.source: countdown``: reach a target from ``num_numbers`` numbers, each used once."""

    num_numbers: int = 3
    min_number: int = 1
    max_number: int = 20
    ops: str = "+-*/"  # operators the target is built with


@dataclass
class DatasetSection(Section):
    # Local .jsonl/.json/.parquet/.csv file or directory, or a hub id (needs network).
    path: str | None = None
    # "gsm8k": answer ends with "#### N";  "math": solution holds \boxed{...};  "answer": the
    # answer column is the final answer itself (a string or a number, e.g. MATH-500's `answer`).
    format: str = choice("gsm8k", "r1kit.data.loaders:DEFAULT_COLUMNS")
    split: str = "train"
    # Column mapping: which column holds the question and which the reference answer/solution.
    question_column: str | None = None
    answer_column: str | None = None
    # Hub dataset config name, if any.
    name: str | None = None
    limit: int | None = None


@dataclass
class DataSection(Section):
    # "arithmetic" | "countdown" | "dataset"
    source: str = choice("arithmetic", "r1kit.data:SOURCES")
    # "r1zero": the plain-text R1-Zero base-model template; "chat": the tokenizer's chat template.
    template: str = choice("chat", "r1kit.data.templates:TEMPLATES")
    # Text appended to the prompt that the model continues from; rewards judge prefill + completion.
    prefill: str = "<think>"
    system_prompt: str | None = None
    arithmetic: ArithmeticSection = field(default_factory=ArithmeticSection)
    countdown: CountdownSection = field(default_factory=CountdownSection)
    dataset: DatasetSection = field(default_factory=DatasetSection)

    def check(self) -> None:
        if self.source == "dataset" and not self.dataset.path:
            raise ConfigError("dataset.path: required when data.source is 'dataset'")


@dataclass
class VLLMSection(Section):
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
    # vllm-server: the shared secret a server started with one needs (`r1kit vllm-serve` bound
    # beyond loopback): read from this environment variable, or from secret_file if set.
    secret_env: str = "R1KIT_SERVER_SECRET"
    secret_file: str = ""

    def check(self) -> None:
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ConfigError(f"gpu_memory_utilization: must be in (0, 1], got {self.gpu_memory_utilization}")
        at_least(self, 0, "kv_cache_gb", "max_model_len", "retries")
        positive(self, "connect_timeout_s", "request_timeout_s")


@dataclass
class RolloutSection(Section):
    # "hf": the policy generates itself; "vllm": a vLLM engine in the trainer's process;
    # "vllm-server": a server started with `r1kit vllm-serve MODEL`, at `url`.
    backend: str = choice("hf", "r1kit.rollout:BACKENDS")
    url: str = "http://127.0.0.1:8000"
    # Completions per prompt (G).
    group_size: int = 8
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    # Sequences per generate() call; 0 = all prompts x group at once.
    batch_size: int = 0
    # Where sampling randomness comes from. "stream": one RNG stream for the run (a completion
    # depends on what else is in the batch); "per_prompt": each prompt's completions from a seed
    # of (seed, step, position in the step), the same whatever the number of processes or
    # batch_size; "auto": per_prompt under several processes, else stream.
    seeding: str = choice("auto", "r1kit.rollout:SEEDING")
    # GRPO: generate the next steps' batches while the learner updates, from weights at most this
    # many updates old (0: synchronous). Needs an engine with its own weights (vllm, vllm-server).
    async_steps: int = 0
    vllm: VLLMSection = field(default_factory=VLLMSection)

    def check(self) -> None:
        at_least(self, 1, "group_size", "max_new_tokens")
        at_least(self, 0, "temperature", "top_k", "batch_size", "async_steps")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p: must be in (0, 1], got {self.top_p}")
        if self.backend == "vllm-server" and not self.url.startswith(("http://", "https://")):
            raise ConfigError(f"url: expected http://HOST:PORT, got {self.url!r}")


@dataclass
class RewardSpec:
    """One reward of the ``rewards`` mapping: its weight in the total and its options.

    YAML: ``accuracy: 0.5`` (a weight), or ``overlong: {weight: 0.2, max_len: 512}`` (a weight
    and keyword arguments for the reward function)."""

    weight: float = 1.0
    options: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str, value: Any) -> RewardSpec:
        if isinstance(value, RewardSpec):
            return value
        if isinstance(value, dict):
            options = dict(value)
            weight = options.pop("weight", 1.0)
        else:
            weight, options = value, {}
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ConfigError(f"{path}: expected a weight (a number) or {{weight: w, option: value}}, got {weight!r}")
        return cls(float(weight), options)

    def to_yaml(self) -> Any:
        return {"weight": self.weight, **self.options} if self.options else self.weight


def check_rewards(rewards: dict[str, RewardSpec]) -> None:
    """Every reward resolves (a registered name or ``module:function``) and takes its options."""
    from r1kit.config.parse import closest
    from r1kit.rewards import REWARDS, check_reward_options, resolve_reward

    for name, spec in rewards.items():
        try:
            resolve_reward(name)
        except KeyError as e:
            if ":" in name:  # a user's module:function; the KeyError says what is wrong with it
                raise ConfigError(f"rewards.{name}: {e.args[0]}") from None
            raise ConfigError(f"rewards.{name}: unknown reward{closest(name, sorted(REWARDS))}") from None
        try:
            check_reward_options(name, spec.options)
        except ValueError as e:
            raise ConfigError(f"rewards.{e}") from None


@dataclass
class RewardRuntimeSection(Section):
    # Wall-clock deadline for one completion's score (math verification, user rewards).
    timeout_s: float = 5.0
    # Deadline for one reward over the whole batch.
    batch_timeout_s: float = 60.0
    # Worker processes that run rewards under deadlines; 0 = min(2, CPU count).
    workers: int = 0

    def check(self) -> None:
        positive(self, "timeout_s", "batch_timeout_s")
        at_least(self, 0, "workers")
