"""The SFT stage's config (``r1kit sft CONFIG``): its data section (rows of chat messages,
prompt + completion, or reasoning traces), its training loop, and its root ``SFTRun``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from r1kit.config.eval import TrainEvalSection
from r1kit.config.grpo import OptimSection
from r1kit.config.parse import ConfigError, Section, at_least, choice
from r1kit.config.sections import ModelSection


@dataclass
class SFTDataSection(Section):
    # Local .jsonl/.json/.parquet/.csv file or directory, or a hub id (needs network).
    path: str | None = None
    split: str = "train"
    name: str | None = None  # hub dataset config name
    limit: int | None = None  # first N rows
    # Row layout: "messages" (a list of {role, content}), "question_completion" (what `r1kit
    # generate` writes: the question is rendered with the template below, this model's own),
    # "prompt_completion" (TRL's: strings, or lists of messages), "trace" (problem, reasoning,
    # answer: rendered as <think>reasoning</think> <answer>answer</answer> after the template
    # below), or "auto" (by the columns present, in that order).
    format: str = choice("auto", "r1kit.sft.data:FORMATS")
    messages_column: str = "messages"
    question_column: str = "question"
    prompt_column: str = "prompt"
    completion_column: str = "completion"
    problem_column: str = "problem"
    reasoning_column: str = "reasoning"
    answer_column: str = "answer"
    # How a trace's problem becomes a prompt: the same templates as the RL stage (r1kit.data.templates).
    template: str = choice("chat", "r1kit.data.templates:TEMPLATES")
    prefill: str = "<think>"
    system_prompt: str | None = None
    # Tokens per example (prompt + completion). Longer ones are counted and warned about, then
    # dropped ("drop") or cut at max_length ("truncate", which loses their end: answer and EOS).
    max_length: int = 1024
    overlong: str = choice("drop", "r1kit.sft.data:OVERLONG")
    # Loss on the completion / assistant tokens only (prompt and system tokens labelled -100).
    completion_only_loss: bool = True

    def check(self) -> None:
        at_least(self, 1, "max_length")
        if self.limit is not None:
            at_least(self, 1, "limit")


@dataclass
class TrainerSection(OptimSection):
    """``train:`` of the stages a TRL trainer runs (SFT, DPO, distillation)."""

    lr: float = 2e-5
    adam_beta2: float = 0.999
    # Passes over the data; max_steps > 0 stops earlier (optimizer steps).
    num_epochs: float = 1.0
    max_steps: int = 0
    batch_size: int = 8  # sequences (DPO: pairs) per forward/backward
    gradient_accumulation_steps: int = 1
    shuffle: bool = True
    logging_steps: int = 1

    def check(self) -> None:
        super().check()
        at_least(self, 1, "batch_size", "gradient_accumulation_steps", "logging_steps")
        at_least(self, 0, "max_steps")
        if self.max_steps == 0 and not self.num_epochs > 0:
            raise ConfigError(f"num_epochs: must be > 0 when max_steps is 0, got {self.num_epochs}")


@dataclass
class SFTTrainSection(TrainerSection):
    # Pack examples into max_length blocks (TRL's best-fit decreasing); attention is kept within
    # each example through position ids, which needs a FlashAttention kernel to be exact.
    packing: bool = False


@dataclass
class StageEvalSection(TrainEvalSection):
    """Evaluation of the model before training and after it (and every ``every`` optimizer
    steps), through ``r1kit eval``'s runner; nothing runs when ``datasets`` is empty."""

    before: bool = True


@dataclass
class SFTRun(Section):
    """The root of ``r1kit sft CONFIG``."""

    stage: str = "sft"
    name: str | None = None
    output_dir: str = "runs/sft"
    seed: int = 0
    model: ModelSection = field(default_factory=ModelSection)
    data: SFTDataSection = field(default_factory=SFTDataSection)
    train: SFTTrainSection = field(default_factory=SFTTrainSection)
    eval: StageEvalSection = field(default_factory=StageEvalSection)
    reference: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.stage != type(self).stage:
            raise ConfigError(f"stage: this is the {self.stage_title} config, got stage '{self.stage}'")
        if not self.data.path:
            raise ConfigError("data.path: the SFT data (a .jsonl/.json/.parquet file, a directory or a hub id)")

    stage_title = "SFT"


@dataclass
class LogitDistillSection(Section):
    """Optional logit distillation (``r1kit.distill.logits``): the student matches the teacher's
    next-token distributions on the traces' completion tokens. Needs one tokenizer for both."""

    teacher: str | None = None  # None: SFT on the traces' tokens only
    divergence: str = choice("forward_kl", "r1kit.distill.logits:DIVERGENCES")
    beta: float = 0.5  # jsd: the teacher's weight in the mixture
    temperature: float = 1.0
    nll_weight: float = 0.0  # loss = divergence + nll_weight x the SFT loss on the trace tokens

    def check(self) -> None:
        if self.divergence == "jsd" and not 0 < self.beta < 1:
            raise ConfigError(f"beta: must be in (0, 1) for jsd, got {self.beta}")
        if not self.temperature > 0:
            raise ConfigError(f"temperature: must be > 0, got {self.temperature}")
        at_least(self, 0, "nll_weight")


@dataclass
class DistillRun(SFTRun):
    """The root of ``r1kit distill CONFIG``: a student (Qwen2, Llama, ...) fine-tuned on a
    teacher's filtered traces (``r1kit generate`` then ``r1kit distill filter``: rows with
    ``prompt`` and ``completion``), as the DeepSeek-R1 distilled models were; the SFT stage's keys."""

    stage: str = "distill"
    output_dir: str = "runs/distill"
    logits: LogitDistillSection = field(default_factory=LogitDistillSection)
    stage_title = "distill"
