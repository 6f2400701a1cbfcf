"""What ``r1kit eval MODEL`` evaluates: an HF directory, a hub id, a builtin name, or a run
directory (its ``final/`` model, or one of its checkpoints), whose config then supplies the
training template and task settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r1kit.checkpoint import list_checkpoints
from r1kit.models import ModelError, load_model, load_tokenizer, resolve_model_path


@dataclass
class Target:
    given: str  # as the user wrote it
    path: str  # the HF directory (or hub id) loaded
    run_dir: Path | None = None
    checkpoint: str | None = None
    run_cfg: Any = None  # the run's config, when the target is a run directory

    @property
    def train_data(self):
        return getattr(self.run_cfg, "data", None)

    @property
    def train_max_new_tokens(self) -> int | None:
        rollout = getattr(self.run_cfg, "rollout", None)
        return getattr(rollout, "max_new_tokens", None)


def is_run_dir(path: Path) -> bool:
    return path.is_dir() and (path / "config.yaml").is_file() and not (path / "config.json").is_file()


def _checkpoint_names(run_dir: Path) -> str:
    names = [p.name for _, p in list_checkpoints(run_dir)]
    return ", ".join(names) if names else "none"


def resolve_target(name: str, checkpoint: str | None = None) -> Target:
    """The model to evaluate; a ModelError names what is missing (a run directory without a final
    model lists its checkpoints)."""
    path = Path(name).expanduser()
    if is_run_dir(path):
        from r1kit.config import config_from_dict
        from r1kit.config.parse import read_yaml

        run_cfg = config_from_dict(read_yaml(str(path / "config.yaml")))
        if checkpoint:
            model_dir = path / "checkpoints" / checkpoint
            if not model_dir.is_dir():
                raise ModelError(f"{path}: no checkpoint '{checkpoint}' (checkpoints there: {_checkpoint_names(path)})")
        else:
            model_dir = path / "final"
            if not model_dir.is_dir():
                raise ModelError(
                    f"{path}: the run has no final model (no final/; checkpoints there: "
                    f"{_checkpoint_names(path)}); evaluate one with --checkpoint step-N"
                )
        return Target(name, str(model_dir), path, checkpoint, run_cfg)
    if checkpoint:
        raise ModelError(f"--checkpoint {checkpoint}: '{name}' is not a run directory (it has no config.yaml)")
    return Target(name, resolve_model_path(name))


def load_target(target: Target, dtype: str, device):
    """``(model, tokenizer)`` in eval mode; a LoRA checkpoint is merged into its base model."""
    from r1kit.config import ModelSection

    path = Path(target.path)
    if (path / "adapter_config.json").is_file():
        from peft import AutoPeftModelForCausalLM

        from r1kit.models import DTYPES

        try:
            model = AutoPeftModelForCausalLM.from_pretrained(str(path), dtype=DTYPES[dtype]).merge_and_unload()
        except Exception as e:  # noqa: BLE001 - re-raised with the culprit named
            raise ModelError(f"could not load the LoRA adapter in {path}: {e}") from e
        tokenizer = load_tokenizer(str(path))
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.to(device)
    else:
        model, _, tokenizer = load_model(ModelSection(name_or_path=target.path, dtype=dtype), device)
    model.eval()
    return model, tokenizer
