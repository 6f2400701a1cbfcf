"""Tiny random models and tokenizers for fast tests and examples (no hub, no download).

``tiny_tokenizer()`` is a byte-level BPE trained in-process on a few sentences, with a ChatML chat
template and the special tokens SmolLM2/Qwen use; ``tiny_model(...)`` is a random Llama or Qwen2 of
a few thousand parameters. Saved together they form an ordinary ``from_pretrained`` directory.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import torch

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)

# Qwen2.5-Instruct's layout (ChatML with its default system prompt when none is given).
QWEN25_TEMPLATE = (
    "{% if messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}"
    "{% endif %}"
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
# Llama-3-Instruct's layout: header tokens, trimmed contents, <|eot_id|> ends a turn.
LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
# DeepSeek-R1's habit: an assistant message loses everything up to </think> when rendered.
THINK_STRIPPING_TEMPLATE = CHATML_TEMPLATE.replace(
    "message['content']", "(message['content'].split('</think>')[-1] if message['role'] == 'assistant' else message['content'])"
)
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
                   "<|finetune_right_pad_id|>"]

_CORPUS = [
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it.",
    "<think> 3 + 4 = 7 </think> <answer> 7 </answer>",
    "What is 12 + 30? Using the numbers [3, 5, 7], create an equation that equals 15.",
    "0123456789 +-*/=()[]{}.,:;!? \\boxed{\\frac{1}{2}} #### 72",
]


def tiny_tokenizer(style: str = "chatml"):
    """``chatml`` (SmolLM2's tokens and template), ``qwen2.5`` (Qwen2.5-Instruct's template and
    default system prompt) or ``llama3`` (Llama-3's special tokens and template; no pad token,
    as in the real one)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    llama = style == "llama3"
    specials = LLAMA3_SPECIALS if llama else ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|begin_of_text|>" if llama else None,
        eos_token="<|eot_id|>" if llama else "<|im_end|>",
        pad_token=None if llama else "<|endoftext|>",
        unk_token=None,
    )
    fast.chat_template = {"chatml": CHATML_TEMPLATE, "qwen2.5": QWEN25_TEMPLATE, "llama3": LLAMA3_TEMPLATE}[style]
    return fast


def tiny_model(tokenizer, arch: str = "llama", seed: int = 0, hidden: int = 32, layers: int = 2, tie: bool = False):
    """A random causal LM sized for unit tests (fp32)."""
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config}[arch]
    cfg = cls(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=tie,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        bos_token_id=None,
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def save_tiny(path: str | Path, arch: str = "llama", seed: int = 0) -> Path:
    """Write a tiny random model + tokenizer as an HF ``from_pretrained`` directory."""
    path = Path(path)
    tok = tiny_tokenizer()
    model = tiny_model(tok, arch=arch, seed=seed)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process below it (a launcher's workers run in their own sessions)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = root.children(recursive=True) + [root]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def run_until_then_sigkill(cmd: list[str], env: dict[str, str], log_path: str | Path, marker: str,
                           timeout_s: float = 180.0) -> int:
    """Start ``cmd`` with its output in ``log_path``, wait until ``marker`` is printed (a test hook
    pausing the process at a known point), SIGKILL it and every process it started (a launcher's
    workers), and return its exit status (-9). Fails if the process exits first or the marker does
    not come within ``timeout_s``."""
    import subprocess
    import time

    log_path = Path(log_path)
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout_s
            while marker not in log_path.read_text():
                if proc.poll() is not None:
                    raise AssertionError(f"exited before {marker!r}:\n{log_path.read_text()}")
                if time.monotonic() > deadline:
                    raise AssertionError(f"no {marker!r} within {timeout_s:.0f} s")
                time.sleep(0.1)
            kill_tree(proc.pid)
            proc.wait(timeout=30)
        finally:
            if proc.poll() is None:
                kill_tree(proc.pid)
    return proc.returncode


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_cmd(num_processes: int, *args: str, config_file: str | Path | None = None) -> list[str]:
    """The command line running ``r1kit ARGS`` on ``num_processes`` processes of this machine
    through ``accelerate launch`` (gloo on CPU, NCCL on GPUs), DDP or what ``config_file`` (an
    accelerate config) says, in fp32; one process: plain ``python -m r1kit``."""
    import sys

    if num_processes == 1:
        return [sys.executable, "-m", "r1kit", *args]
    engine = ["--config_file", str(config_file)] if config_file else ["--multi_gpu", "--num_machines", "1"]
    return [
        sys.executable, "-m", "accelerate.commands.launch", *engine, "--num_processes", str(num_processes),
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), "-m", "r1kit", *args,
    ]


def load_script(path: str | Path) -> ModuleType:
    """A script (e.g. ``benchmarks/bench_grpo_cpu.py``) imported as a module named after its file."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = mod
    spec.loader.exec_module(mod)
    return mod


@contextlib.contextmanager
def module_on_path(directory: str | Path, name: str, source: str):
    """``name.py`` with ``source`` written to ``directory`` and importable inside the block
    (e.g. a reward function a config names as ``name:function``)."""
    directory = Path(directory)
    (directory / f"{name}.py").write_text(source)
    sys.path.insert(0, str(directory))
    try:
        yield directory
    finally:
        sys.path.remove(str(directory))
