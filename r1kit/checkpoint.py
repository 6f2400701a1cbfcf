"""Atomic checkpoints and exact resume.

``checkpoints/step-N/`` holds an HF-loadable model (or LoRA adapter) with its tokenizer, and
``trainer_state.pt``: optimizer, scheduler, RNG states (python, numpy, torch, cuda), the data
cursor and the step. It is written as ``.tmp-step-N`` and renamed, so a killed process leaves
either a complete checkpoint or none; only the last ``keep_last`` are kept.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

STATE_FILE = "trainer_state.pt"
HF_STATE_FILE = "trainer_state.json"  # a checkpoint of the stages trained by TRL's trainers
_STEP_DIR = re.compile(r"^step-(\d+)$")


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def list_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        m = _STEP_DIR.match(p.name)
        if m and any((p / name).is_file() for name in (STATE_FILE, HF_STATE_FILE)):
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1][1] if ckpts else None


def write_text_atomically(path: str | Path, text: str) -> None:
    """``path`` holds either its old content or ``text``, never a part of it (written beside
    it, then renamed over it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_dir_atomically(target: str | Path, write: Callable[[Path], None]) -> Path:
    """Make the directory ``target`` from ``write(tmp_dir)``: written as ``.tmp-<name>``, flushed,
    then renamed into place; an existing ``target`` is swapped out only once the new one is
    complete (never deleted first). A killed process leaves the old or the new, whole."""
    target = Path(target)
    tmp = target.with_name(f".tmp-{target.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    write(tmp)
    fsync_dir(tmp)
    if target.exists():
        old = target.with_name(f".old-{target.name}")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old)
    else:
        os.rename(tmp, target)
    fsync_dir(target.parent)
    return target


def save_model_dir(target: str | Path, policy, tokenizer, state_dict: dict | None = None) -> Path:
    """An HF-loadable directory (``from_pretrained``) with the policy and its tokenizer, atomically.
    ``state_dict``: the weights to write, when the live ones are sharded (FSDP2)."""

    def write(tmp: Path) -> None:
        policy.save_pretrained(tmp, **({} if state_dict is None else {"state_dict": state_dict}))
        tokenizer.save_pretrained(tmp)

    return write_dir_atomically(target, write)


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    policy,
    tokenizer,
    optimizer,
    scheduler,
    data_state: dict[str, Any],
    keep_last: int,
    rng_per_rank: list[dict[str, Any]] | None = None,
    model_state: dict | None = None,
    optimizer_state: dict | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """``checkpoints/step-N``: the model (HF-loadable) and ``trainer_state.pt``, atomically; only
    the last ``keep_last`` checkpoints stay. ``rng_per_rank``: every process's RNG states (a run
    of several processes), saved beside this process's. ``model_state`` / ``optimizer_state``: full
    state dicts to write in place of the live objects' (FSDP2: gathered from the shards).
    ``extra``: more entries of the trainer state (e.g. batches generated ahead of the learner)."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    state = {
        "step": step,
        "optimizer": optimizer.state_dict() if optimizer_state is None else optimizer_state,
        "scheduler": scheduler.state_dict(),
        "rng": rng_state(),
        "data": data_state,
    }
    if rng_per_rank is not None:
        state["rng_per_rank"] = rng_per_rank
    state.update(extra or {})

    def write(tmp: Path) -> None:
        policy.save_pretrained(tmp, **({} if model_state is None else {"state_dict": model_state}))
        tokenizer.save_pretrained(tmp)
        torch.save(state, tmp / STATE_FILE)

    final = write_dir_atomically(root / f"step-{step}", write)
    for _, path in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(path)
    return final


def fsync_dir(path: Path) -> None:
    """Flush a directory's files and the directory entry itself to disk."""
    for f in path.iterdir():
        if f.is_file():
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_trainer_state(ckpt: str | Path) -> dict[str, Any]:
    return torch.load(Path(ckpt) / STATE_FILE, map_location="cpu", weights_only=False)


def load_policy_weights(policy, ckpt: str | Path) -> None:
    """Load a checkpoint's weights into an already-built policy (full model or LoRA adapter)."""
    from safetensors.torch import load_file

    ckpt = Path(ckpt)
    adapter = ckpt / "adapter_model.safetensors"
    if adapter.is_file():
        from peft import set_peft_model_state_dict

        set_peft_model_state_dict(policy, load_file(adapter))
        return
    files = sorted(ckpt.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no model weights (*.safetensors) in checkpoint {ckpt}")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        state.update(load_file(f))
    missing, unexpected = policy.load_state_dict(state, strict=False)
    # tied embeddings are saved once; anything else missing means a wrong checkpoint
    missing = [k for k in missing if k not in policy._tied_weights_keys_set()] if hasattr(
        policy, "_tied_weights_keys_set"
    ) else [k for k in missing if "lm_head" not in k]
    if missing or unexpected:
        raise ValueError(f"checkpoint {ckpt} does not match the model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    if getattr(policy.config, "tie_word_embeddings", False):
        policy.tie_weights()
