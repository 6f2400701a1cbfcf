"""Learned reward models beside the rule rewards.

DeepSeek-V2's second RL stage and DeepSeek-R1's last one score general prompts with reward models
next to the rule rewards: r = c1·RM_helpful + c2·RM_safety + c3·RM_rule. Here any HF
sequence-classification model with one output (a local directory or a hub id) is a reward, named
``reward_model`` or, for several, ``reward_model_<label>`` (``reward_model_helpful``,
``reward_model_safety``), with its weight and options:

    rewards:
      accuracy: 1.0
      reward_model_helpful: {weight: 0.5, model: path/to/rm, batch_size: 8, normalize: true}

What it scores, as TRL's GRPOTrainer does for a reward model: with a chat template on the reward
model's tokenizer and the sample's ``question`` at hand, the conversation [user: question,
assistant: completion] through that template; otherwise the prompt text followed by the
completion. Tokens are right-padded, special tokens come only from the template, the score is
``logits[:, 0]``, computed in batches of ``batch_size`` under ``torch.no_grad``. ``normalize``
standardises each score by the running mean and standard deviation of all scores that reward model
has given so far in this process (Welford), so its scale matches the 0/1 rule rewards.
"""

from __future__ import annotations

import math
import threading
from typing import Any

from r1kit.rewards.registry import Runs, completion_text, register

PREFIX = "reward_model"
_LOADED: dict[tuple[str, str], tuple[Any, Any]] = {}
_STATS: dict[str, list[float]] = {}  # model -> [count, mean, M2]
_LOCK = threading.Lock()


def is_reward_model_name(name: str) -> bool:
    return name == PREFIX or (name.startswith(PREFIX + "_") and len(name) > len(PREFIX) + 1)


def _device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def load_reward_model(model: str, device: str = "auto") -> tuple[Any, Any]:
    """The classifier and its tokenizer, loaded once per process; ValueError naming the model
    when it is not a one-output sequence classifier."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from r1kit.models import ModelError, resolve_model_path

    key = (model, device)
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        try:
            path = resolve_model_path(model)
            rm = AutoModelForSequenceClassification.from_pretrained(path)
            tok = AutoTokenizer.from_pretrained(path)
        except (OSError, ValueError, ModelError) as e:
            raise ValueError(f"reward_model: cannot load {model!r} as a sequence classifier ({e})") from None
        if rm.config.num_labels != 1:
            raise ValueError(f"reward_model: {model!r} has {rm.config.num_labels} outputs; a reward model has 1")
        if tok.pad_token is None:
            tok.pad_token = tok.eos_token
        rm.config.pad_token_id = tok.pad_token_id  # the score is read at the last non-pad token
        rm.to(_device(device)).eval()
        _LOADED[key] = (rm, tok)
        return rm, tok


def reward_model_texts(tokenizer, prompts: list[Any], completions: list[Any], questions: list[Any] | None) -> list[str]:
    """What the reward model reads for each sample (see the module docstring)."""
    chat = getattr(tokenizer, "chat_template", None)
    texts = []
    for i, (p, c) in enumerate(zip(prompts, completions)):
        question = questions[i] if questions else None
        if chat and isinstance(question, str):
            msgs = [{"role": "user", "content": question}, {"role": "assistant", "content": completion_text(c)}]
            texts.append(tokenizer.apply_chat_template(msgs, tokenize=False))
        else:
            texts.append(completion_text(p) + completion_text(c))
    return texts


def _standardise(model: str, scores: list[float]) -> list[float]:
    with _LOCK:
        n, mean, m2 = _STATS.setdefault(model, [0.0, 0.0, 0.0])
        for s in scores:
            n += 1
            delta = s - mean
            mean += delta / n
            m2 += delta * (s - mean)
        _STATS[model] = [n, mean, m2]
    std = math.sqrt(m2 / (n - 1)) if n > 1 else 0.0
    return [(s - mean) / std if std > 0 else 0.0 for s in scores]


@register(PREFIX, runs=Runs.IN_PROCESS)  # a torch model: loaded once in this process, batched
def reward_model_reward(prompts, completions, *, model: str = "", batch_size: int = 8, device: str = "auto",
                        max_length: int = 4096, normalize: bool = False, **columns) -> list[float]:
    """``logits[:, 0]`` of the sequence classifier ``model`` on each prompt + completion (through
    its chat template when it has one); standardised by running statistics with ``normalize``."""
    import torch

    if not model:
        raise ValueError("reward_model: give the 'model' option (an HF sequence-classification directory or hub id)")
    if batch_size < 1 or max_length < 1:
        raise ValueError(f"reward_model: batch_size and max_length must be >= 1, got {batch_size}, {max_length}")
    if not completions:
        from r1kit.models import resolve_model_path

        try:
            resolve_model_path(model)  # a dry run checks the path, without loading the weights
        except Exception as e:  # noqa: BLE001 - ModelError: report it as this reward's option error
            raise ValueError(f"reward_model: {e}") from None
        return []
    rm, tok = load_reward_model(model, device)
    texts = reward_model_texts(tok, prompts, completions, columns.get("question"))
    scores: list[float] = []
    with torch.no_grad():
        for lo in range(0, len(texts), batch_size):
            enc = tok(texts[lo : lo + batch_size], return_tensors="pt", padding=True, padding_side="right",
                      truncation=True, max_length=max_length, add_special_tokens=False).to(rm.device)
            scores += rm(**enc).logits[:, 0].float().tolist()
    return _standardise(model, scores) if normalize else scores
