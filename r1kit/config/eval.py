"""The evaluation config: which datasets (``EvalDatasetSpec``), under which protocol
(``EvalSection``: sampling, k, template), shared by ``r1kit eval`` (root ``EvalRun``) and the GRPO
stage's held-out evaluation during training (``TrainEvalSection``, the ``eval:`` section)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from r1kit.config.parse import ConfigError, Section, at_least, build, choice
from r1kit.config.sections import ArithmeticSection, CountdownSection, ModelSection, RewardRuntimeSection, VLLMSection


@dataclass
class EvalDatasetSpec(Section):
    """One dataset to evaluate on. YAML: a mapping of these keys, or the short form of the CLI's
    ``--data``: ``"gsm8k=data/test.jsonl"`` (a layout by name and its path) or ``"arithmetic"``
    (a procedural task)."""

    # The dataset's name in results.json and its <name>.problems.jsonl; also the layout when
    # `layout` is not given.
    name: str = ""
    # Local .jsonl/.json/.parquet file or directory, or a hub id. None for procedural tasks.
    path: str | None = None
    # gsm8k | math500 | aime24 | amc23 | custom (with the column mapping) | arithmetic | countdown
    layout: str | None = None
    split: str = "test"  # hub ids and directories; a single file is one split
    subset: str | None = None  # hub dataset config name
    # Column mapping (custom layout; overrides a named layout's columns).
    prompt_column: str | None = None
    answer_column: str | None = None
    id_column: str | None = None
    limit: int | None = None  # first N problems (after eval.limit, the smaller wins)
    # Procedural tasks: problems are drawn with this seed (use one the run never trained on),
    # `num_problems` of them, with the task settings below over the training run's (if any).
    seed: int = 12345
    num_problems: int = 100
    arithmetic: dict[str, Any] = field(default_factory=dict)
    countdown: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_yaml(cls, path: str, value: Any) -> EvalDatasetSpec:
        if isinstance(value, EvalDatasetSpec):
            return value
        if isinstance(value, str):
            name, sep, data_path = value.partition("=")
            value = {"name": name.strip(), "path": data_path.strip() or None} if sep else {"name": value.strip()}
        return build(cls, value, f"{path}.")

    @property
    def layout_name(self) -> str:
        return self.layout or self.name

    def check(self) -> None:
        if not self.name:
            raise ConfigError("name: every dataset needs a name")
        if any(c in self.name for c in "/\\") or self.name.startswith("."):
            raise ConfigError(f"name: '{self.name}' names an output file; use letters, digits, - and _")
        at_least(self, 1, "num_problems")
        if self.limit is not None:
            at_least(self, 1, "limit")
        for task, section in (("arithmetic", ArithmeticSection), ("countdown", CountdownSection)):
            try:  # task settings are checked now, not when the problems are drawn
                build(section, getattr(self, task))
            except ConfigError as e:
                raise ConfigError(f"{task}: {e}") from None


@dataclass
class EvalSection(Section):
    """How to evaluate: the datasets and the protocol (sampling, samples per problem, template)."""

    datasets: list[EvalDatasetSpec] = field(default_factory=list)
    # "r1": DeepSeek-R1's protocol (temperature 0.6, top-p 0.95, k samples, pass@1 = their mean);
    # "greedy": one greedy sample per problem. Keys left unset below take the protocol's value.
    protocol: str = choice("r1", "r1kit.eval.protocols:PROTOCOLS")
    k: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int = 0
    # Longest completion; None: the training run's rollout.max_new_tokens, else the protocol's.
    max_new_tokens: int | None = None
    limit: int | None = None  # first N problems of every dataset
    # Prompt: None = the training run's (template, prefill, system prompt), else the chat template
    # when the tokenizer has one (r1zero when not) with "<think>" pre-filled.
    template: str | None = None
    prefill: str | None = None
    system_prompt: str | None = None
    # Sequences per generate call (problems x k); problems are batched across, in fixed chunks.
    batch_size: int = 64

    def check(self) -> None:
        at_least(self, 1, "batch_size")
        at_least(self, 0, "top_k")
        for key in ("k", "max_new_tokens", "limit"):
            if getattr(self, key) is not None:
                at_least(self, 1, key)
        if self.temperature is not None:
            at_least(self, 0, "temperature")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p: must be in (0, 1], got {self.top_p}")
        if self.template is not None:
            from r1kit.data.templates import TEMPLATES

            if self.template not in TEMPLATES:
                raise ConfigError(f"template: '{self.template}' is not one of {list(TEMPLATES)}")
        names = [d.name for d in self.datasets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"datasets: the name '{dup[0]}' is used twice (each names its own output file)")


@dataclass
class TrainEvalSection(EvalSection):
    """GRPO's ``eval:`` section: the protocol above, run on the policy every ``every`` steps and
    after the last step (when ``datasets`` is not empty). Greedy by default: cheap enough to run
    often."""

    protocol: str = choice("greedy", "r1kit.eval.protocols:PROTOCOLS")
    every: int = 0  # 0: only after the last step

    def check(self) -> None:
        super().check()
        at_least(self, 0, "every")


@dataclass
class EvalRun(Section):
    """The root of ``r1kit eval CONFIG``."""

    stage: str = "eval"
    # None: RUN_DIR/eval (or RUN_DIR/eval-step-N) for a run directory, else runs/eval/<model name>.
    output_dir: str | None = None
    seed: int = 0
    # An HF directory, a hub id, a builtin name, or a GRPO/SFT run directory (its final/ model,
    # or `checkpoint`), whose template and task settings are then the defaults.
    model: ModelSection = field(default_factory=ModelSection)
    checkpoint: str | None = None  # "step-N" of a run directory
    # "hf" (transformers, the model itself) or "vllm" (a vLLM engine in this process).
    backend: str = choice("hf", "r1kit.eval.protocols:BACKENDS")
    vllm: VLLMSection = field(default_factory=VLLMSection)
    eval: EvalSection = field(default_factory=EvalSection)
    reward_runtime: RewardRuntimeSection = field(default_factory=RewardRuntimeSection)
    overwrite: bool = False  # start over in an output_dir that holds results
    progress: bool = True
    # Published numbers to compare with (a recipe's `reference:` block): printed as deltas.
    reference: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.stage != "eval":
            raise ConfigError(f"stage: this is the eval config, got stage '{self.stage}'")
        if not self.eval.datasets:
            raise ConfigError("eval.datasets: give at least one dataset (e.g. --data gsm8k=PATH)")
