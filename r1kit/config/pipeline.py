"""The pipeline's config (``r1kit pipeline CONFIG``): the R1 recipe as a list of stages, each
with its own stage config, chained by path (each stage starts from the model and the data of the
stages before it unless it names its own)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from r1kit.config.eval import EvalSection
from r1kit.config.parse import ConfigError, Section, build, choice


@dataclass
class PipelineStage(Section):
    """One stage. ``config`` holds the keys its own YAML would hold (``train:``, ``data:``, ...);
    the pipeline fills in ``output_dir`` and, unless given, the model and data paths."""

    name: str = ""
    # worked_examples | sft | grpo | generate | filter | pairs | dpo | distill
    kind: str = choice("sft", "r1kit.pipeline:KINDS")
    config: dict[str, Any] = field(default_factory=dict)
    skip: bool = False
    # The stage whose model (final/) this one starts from; None: the latest model before it (the
    # pipeline's `model` at first; `student` for distill).
    model_from: str | None = None
    # The stage whose output (traces, kept traces, pairs) is this one's data; None: the latest.
    data_from: str | None = None

    @classmethod
    def from_yaml(cls, path: str, value: Any) -> PipelineStage:
        if isinstance(value, PipelineStage):
            return value
        return build(cls, value, f"{path}.")

    def check(self) -> None:
        if not self.name or any(c in self.name for c in "/\\ ") or self.name.startswith("."):
            raise ConfigError(f"name: '{self.name}' names the stage's directory; use letters, digits, - and _")


@dataclass
class PipelineEvalSection(EvalSection):
    """Evaluation of the starting model and of every stage's model (``r1kit eval``'s runner);
    greedy by default."""

    protocol: str = choice("greedy", "r1kit.eval.protocols:PROTOCOLS")
    start: bool = True  # the starting model too (off when it is only a remote teacher's name)


@dataclass
class PipelineRun(Section):
    """The root of ``r1kit pipeline CONFIG``."""

    stage: str = "pipeline"
    name: str | None = None
    output_dir: str = "runs/pipeline"
    seed: int = 0
    model: str = "smollm2-135m-instruct"  # the starting model: builtin name, HF directory or hub id
    student: str | None = None  # the distill stage's student (None: the starting model)
    stages: list[PipelineStage] = field(default_factory=list)
    eval: PipelineEvalSection = field(default_factory=PipelineEvalSection)
    # Published numbers the recipe should reach (as in GRPO recipes: source, before, after, note).
    reference: dict[str, Any] = field(default_factory=dict)

    def check(self) -> None:
        if self.stage != "pipeline":
            raise ConfigError(f"stage: this is the pipeline config, got stage '{self.stage}'")
        if not self.stages:
            raise ConfigError("stages: list at least one stage")
        names = [s.name for s in self.stages]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ConfigError(f"stages: the name '{dup[0]}' is used twice (each names its own directory)")
        for i, s in enumerate(self.stages):
            for key in ("model_from", "data_from"):
                ref = getattr(s, key)
                if ref is not None and ref not in names[:i]:
                    raise ConfigError(f"stages[{i}].{key}: '{ref}' is not a stage before '{s.name}'")
