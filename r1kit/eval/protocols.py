"""Evaluation protocols: the sampling settings a protocol name stands for, and the resolved
protocol that ``results.json`` records (every setting explicit, so two evaluations compare)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# eval backend -> the rollout backend that generates
BACKENDS = ("hf", "vllm")


@dataclass(frozen=True)
class ProtocolDefaults:
    k: int
    temperature: float
    top_p: float


# DeepSeek-R1 (2025), "Evaluation Setup": temperature 0.6, top-p 0.95, k responses per question
# (4 to 64 depending on the test set's size), pass@1 the mean correctness over them.
PROTOCOLS = {
    "r1": ProtocolDefaults(k=16, temperature=0.6, top_p=0.95),
    "greedy": ProtocolDefaults(k=1, temperature=0.0, top_p=1.0),
}
# Longest completion when neither the config nor a training run says.
DEFAULT_MAX_NEW_TOKENS = 1024


@dataclass(frozen=True)
class Protocol:
    """Everything that decides which completions an evaluation samples and how they are graded."""

    name: str
    k: int
    temperature: float
    top_p: float
    top_k: int
    max_new_tokens: int
    template: str
    prefill: str
    system_prompt: str | None
    template_text: str  # the prompt with "{question}" in the question's place
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_protocol(section, seed: int, template: str, prefill: str, system_prompt: str | None,
                     template_text: str, train_max_new_tokens: int | None = None) -> Protocol:
    """An ``EvalSection``'s protocol with every unset key filled: from the protocol name (k,
    temperature, top-p) and from the training run (max_new_tokens), else the defaults."""
    d = PROTOCOLS[section.protocol]
    max_new = section.max_new_tokens or train_max_new_tokens or DEFAULT_MAX_NEW_TOKENS
    return Protocol(
        name=section.protocol,
        k=section.k if section.k is not None else d.k,
        temperature=section.temperature if section.temperature is not None else d.temperature,
        top_p=section.top_p if section.top_p is not None else d.top_p,
        top_k=section.top_k,
        max_new_tokens=max_new,
        template=template,
        prefill=prefill,
        system_prompt=system_prompt,
        template_text=template_text,
        seed=seed,
    )
