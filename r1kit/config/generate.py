"""The teacher-generation stage's config (``r1kit generate CONFIG``): which prompts (a dataset
spec, as ``r1kit eval`` reads them), which teacher (a local model, or an OpenAI-compatible
endpoint), how to sample, and where the traces go."""

from __future__ import annotations

from dataclasses import dataclass, field

from r1kit.config.eval import EvalDatasetSpec
from r1kit.config.parse import ConfigError, Section, at_least, choice, positive
from r1kit.config.sections import ModelSection, VLLMSection


@dataclass
class PromptDataSpec(EvalDatasetSpec):
    """The prompts: a dataset spec as ``r1kit eval`` reads them (a named layout and its path, a
    custom file with a column mapping, or a procedural task); the procedural arithmetic task by default."""

    name: str = "arithmetic"
    split: str = "train"


@dataclass
class TeacherSection(Section):
    # "hf": the model in this process (transformers generate); "vllm": a vLLM engine in this
    # process; "openai": any OpenAI-compatible HTTP endpoint (`r1kit vllm-serve`, a vLLM server
    # elsewhere, a hosted reasoning model).
    backend: str = choice("hf", "r1kit.distill.generate:TEACHERS")
    # hf / vllm: the model to load (builtin name, HF directory, hub id).
    model: ModelSection = field(default_factory=ModelSection)
    vllm: VLLMSection = field(default_factory=VLLMSection)
    batch_size: int = 64  # hf / vllm: sequences per generate call (prompts x k)
    # openai: the endpoint's base URL (".../v1") and the model name it serves (None: the first
    # one its /models lists).
    url: str | None = None
    served_model: str | None = None
    # "completions": the rendered prompt text (template, prefill) is sent as is; "chat": the
    # question is sent as chat messages and the server applies its own template.
    api: str = choice("completions", "r1kit.distill.generate:APIS")
    # Name of the environment variable holding the API key (never the key: it is not written anywhere).
    api_key_env: str | None = None
    concurrency: int = 8  # requests in flight
    timeout_s: float = 600.0  # per request
    retries: int = 3  # a failed request (connection error, timeout, HTTP 429 or 5xx) is retried this often
    backoff_s: float = 1.0  # wait before retry r: backoff_s * 2**r

    def check(self) -> None:
        at_least(self, 1, "batch_size", "concurrency")
        at_least(self, 0, "retries", "backoff_s")
        positive(self, "timeout_s")
        if self.backend == "openai":
            if not self.url:
                raise ConfigError("url: the openai teacher needs the endpoint's base URL, e.g. http://127.0.0.1:8000/v1")


@dataclass
class SamplingSection(Section):
    k: int = 4  # traces per prompt
    temperature: float = 0.6
    top_p: float = 0.95
    top_k: int = 0
    max_new_tokens: int = 1024

    def check(self) -> None:
        at_least(self, 1, "k", "max_new_tokens")
        at_least(self, 0, "temperature", "top_k")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p: must be in (0, 1], got {self.top_p}")


@dataclass
class GenerateRun(Section):
    """The root of ``r1kit generate CONFIG``."""

    stage: str = "generate"
    # The traces (JSONL, appended as prompts finish); its config is written beside it.
    output: str = "runs/generate/traces.jsonl"
    seed: int = 0
    data: PromptDataSpec = field(default_factory=PromptDataSpec)
    teacher: TeacherSection = field(default_factory=TeacherSection)
    sampling: SamplingSection = field(default_factory=SamplingSection)
    # The prompt: a template of r1kit.data.templates (None: the chat template when the teacher's
    # tokenizer has one, else r1zero), the text pre-filled after it, and a system prompt.
    template: str | None = None
    prefill: str = "<think>"
    system_prompt: str | None = None
    overwrite: bool = False  # start over when the output holds traces of another config
    progress: bool = True

    def check(self) -> None:
        if self.stage != "generate":
            raise ConfigError(f"stage: this is the generate config, got stage '{self.stage}'")
        if not self.output.endswith(".jsonl"):
            raise ConfigError(f"output: a .jsonl file, got '{self.output}'")
        if self.template is not None:
            from r1kit.data.templates import TEMPLATES

            if self.template not in TEMPLATES:
                raise ConfigError(f"template: '{self.template}' is not one of {list(TEMPLATES)}")
