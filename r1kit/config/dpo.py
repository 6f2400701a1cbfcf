"""The DPO stage's config (``r1kit dpo CONFIG``): preference pairs (``r1kit distill pairs`` or
any chosen/rejected dataset), the DPO loss, and the training loop every TRL stage shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from r1kit.config.parse import ConfigError, Section, at_least, positive
from r1kit.config.sections import ModelSection
from r1kit.config.sft import StageEvalSection, TrainerSection


@dataclass
class DPODataSection(Section):
    # Local .jsonl/.json/.parquet/.csv file or directory, or a hub id (needs network).
    path: str | None = None
    split: str = "train"
    name: str | None = None
    limit: int | None = None
    # Columns: strings (the prompt as the model sees it) or lists of chat messages (TRL's
    # conversational layout, rendered with the chat template).
    prompt_column: str = "prompt"
    chosen_column: str = "chosen"
    rejected_column: str = "rejected"
    max_length: int = 1024  # prompt + completion tokens; longer pairs are truncated by TRL

    def check(self) -> None:
        at_least(self, 1, "max_length")
        if self.limit is not None:
            at_least(self, 1, "limit")


@dataclass
class DPOSection(Section):
    beta: float = 0.1  # strength of the KL(pi || pi_ref) constraint
    # TRL's DPO loss: "sigmoid" (the DPO paper), "ipo", "hinge", "robust", ...
    loss_type: str = "sigmoid"
    label_smoothing: float = 0.0

    def check(self) -> None:
        positive(self, "beta")
        if not 0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"label_smoothing: must be in [0, 0.5), got {self.label_smoothing}")


@dataclass
class DPOTrainSection(TrainerSection):
    lr: float = 1e-6


@dataclass
class DPORun(Section):
    """The root of ``r1kit dpo CONFIG``."""

    stage: str = "dpo"
    name: str | None = None
    output_dir: str = "runs/dpo"
    seed: int = 0
    model: ModelSection = field(default_factory=ModelSection)
    data: DPODataSection = field(default_factory=DPODataSection)
    dpo: DPOSection = field(default_factory=DPOSection)
    train: DPOTrainSection = field(default_factory=DPOTrainSection)
    eval: StageEvalSection = field(default_factory=StageEvalSection)
    reference: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.stage != "dpo":
            raise ConfigError(f"stage: this is the DPO config, got stage '{self.stage}'")
        if not self.data.path:
            raise ConfigError("data.path: the preference pairs (a .jsonl/.json/.parquet file, a directory or a hub id)")
