"""Peak memory and time of one learner step at long completion lengths: r1kit's learner against
TRL GRPOTrainer's loss computation, on the same batch of the same model.

The model has tiny layers and the bundled SmolLM2's real 49,152-token vocabulary, so the
vocabulary projection (what long completions make expensive) is real size and it runs on a CPU.
Each (trainer, length) case runs in its own process: peak memory is the highest resident set size
(RSS, sampled every 2 ms; ``torch.cuda.max_memory_allocated`` on a GPU) during one step, above the
process's memory just before it. The step is forward, backward and optimizer step on one batch of
N completions (one micro-batch, as one TRL per-device batch), after one untimed warm-up step.

    python benchmarks/bench_memory.py [--lengths 128 512 2048] [--completions 8]

Last line: ``peak memory vs TRL at 2048 tokens: X.XXx`` (TRL's peak / r1kit's).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

VOCAB_FROM = "smollm2-135m-instruct"
PROMPT_LEN = 32


class PeakRSS:
    """The highest RSS of this process while the block runs, sampled by a thread."""

    def __init__(self, every_s: float = 0.002):
        import psutil

        self.proc, self.every_s, self.peak = psutil.Process(), every_s, 0
        self._stop = threading.Event()

    def _watch(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(self.every_s)

    def __enter__(self):
        self.base = self.proc.memory_info().rss
        self.peak = self.base
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def build_model(tok, hidden: int, layers: int, seed: int = 0):
    """A random Llama with the tokenizer's real vocabulary and ``layers`` tiny layers (fp32)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=layers,
        num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=PROMPT_LEN + 4096,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
    )
    return LlamaForCausalLM(cfg)


def make_inputs(tok, n: int, length: int, seed: int = 0):
    """n completions of exactly ``length`` tokens after two distinct prompts (groups of n/2)."""
    g = torch.Generator().manual_seed(seed)
    V = len(tok)
    prompts = [torch.randint(10, V, (PROMPT_LEN,), generator=g).tolist() for _ in range(2)]
    comps = [torch.randint(10, V, (length,), generator=g).tolist() for _ in range(n)]
    adv = torch.randn(n, generator=g)
    return prompts, comps, adv


def case_r1kit(tok, model, prompts, comps, adv, chunked_head: bool = True) -> callable:
    from r1kit.config import GRPOSection, TrainSection
    from r1kit.grpo.learner import Learner, make_batch
    from r1kit.types import Group, Sample

    n = len(comps)
    half = n // 2
    groups = [Group(Sample(str(i)), prompts[i], comps[i * half : (i + 1) * half], [""] * half, [False] * half)
              for i in range(2)]
    batch = make_batch(groups, adv, tok.pad_token_id)
    train = TrainSection(micro_batch_size=n, lr=1e-6, chunked_head=chunked_head)
    learner = Learner(model, None, GRPOSection(), train, max(len(c) for c in comps))
    return lambda: learner.step(batch)


def case_trl(tok, model, prompts, comps, adv, workdir: Path) -> callable:
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    n = len(comps)
    args = GRPOConfig(
        output_dir=str(workdir), use_cpu=True, bf16=False, per_device_train_batch_size=n, num_generations=n // 2,
        max_completion_length=max(len(c) for c in comps), learning_rate=1e-6, beta=0.0, loss_type="grpo", report_to="none",
        save_strategy="no", logging_steps=1, disable_tqdm=True,
    )
    trainer = GRPOTrainer(
        model=model, reward_funcs=[lambda completions, **kw: [0.0] * len(completions)], args=args,
        train_dataset=datasets.Dataset.from_list([{"prompt": "x"}] * n), processing_class=tok,
    )
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); one batch, no accumulation
    half = n // 2
    inputs = {
        "prompt_ids": torch.tensor([prompts[i // half] for i in range(n)]),
        "prompt_mask": torch.ones((n, PROMPT_LEN), dtype=torch.long),
        "completion_ids": torch.tensor(comps),
        "completion_mask": torch.ones((n, len(comps[0])), dtype=torch.long),
        "advantages": adv,
        "num_items_in_batch": torch.tensor(float(n * len(comps[0]))),
    }
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = trainer._compute_loss(trainer.model, inputs)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainer.model.parameters(), 1.0)
        optimizer.step()

    return step


def run_case(trainer: str, length: int, n: int, hidden: int, layers: int) -> dict:
    """One case, in this process: its step's peak memory above the start, and its seconds."""
    from r1kit.models import ensure_builtin, load_tokenizer

    torch.set_num_threads(os.cpu_count() or 1)
    tok = load_tokenizer(ensure_builtin(VOCAB_FROM))
    model = build_model(tok, hidden, layers)
    prompts, comps, adv = make_inputs(tok, n, length)
    with tempfile.TemporaryDirectory() as tmp:
        if trainer == "trl":
            step = case_trl(tok, model, prompts, comps, adv, Path(tmp))
        else:  # r1kit, or r1kit-whole: with the model's whole logits tensor (train.chunked_head: false)
            step = case_r1kit(tok, model, prompts, comps, adv, chunked_head=trainer == "r1kit")
        step()  # warm-up: allocator pools, lazy inits
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            step()
            seconds = time.perf_counter() - t0
        peak = torch.cuda.max_memory_allocated() if cuda else mem.peak - mem.base
    return {"trainer": trainer, "length": length, "peak_mb": peak / 2**20, "seconds": seconds}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lengths", type=int, nargs="+", default=[128, 512, 2048])
    p.add_argument("--completions", type=int, default=8, help="N completions per step (2 prompts x N/2)")
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--case", nargs=2, metavar=("TRAINER", "LENGTH"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:  # a child process: one measurement, as JSON on the last line
        print(json.dumps(run_case(args.case[0], int(args.case[1]), args.completions, args.hidden, args.layers)))
        return 0

    import platform

    print(f"== one learner step, {args.completions} completions x L tokens after {PROMPT_LEN}-token prompts; "
          f"Llama {args.layers} layers x {args.hidden} hidden, vocabulary {VOCAB_FROM}'s (fp32) ==")
    print(f"device: {'cuda' if torch.cuda.is_available() else 'cpu'} ({platform.processor() or platform.machine()}), "
          f"torch {torch.__version__}; peak = RSS above the process's before the step, sampled every 2 ms")
    results = {}
    for length in args.lengths:
        for trainer in ("r1kit", "r1kit-whole", "trl"):
            cmd = [sys.executable, __file__, "--case", trainer, str(length), "--completions", str(args.completions),
                   "--hidden", str(args.hidden), "--layers", str(args.layers)]
            out = subprocess.run(cmd, capture_output=True, text=True)
            if out.returncode != 0:
                print(out.stdout[-2000:], out.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"{trainer} at {length} tokens failed")
            results[(trainer, length)] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{'tokens':>7} | {'r1kit peak MB':>13} {'whole logits':>12} {'TRL peak MB':>12} {'TRL/r1kit':>9} | "
          f"{'r1kit s':>8} {'whole s':>8} {'TRL s':>8} {'TRL/r1kit':>9}")
    for length in args.lengths:
        a, w, b = (results[(t, length)] for t in ("r1kit", "r1kit-whole", "trl"))
        print(f"{length:>7} | {a['peak_mb']:>13.0f} {w['peak_mb']:>12.0f} {b['peak_mb']:>12.0f} "
              f"{b['peak_mb'] / a['peak_mb']:>8.2f}x | {a['seconds']:>8.2f} {w['seconds']:>8.2f} {b['seconds']:>8.2f} "
              f"{b['seconds'] / a['seconds']:>8.2f}x")
    last = max(args.lengths)
    a, b = results[("r1kit", last)], results[("trl", last)]
    print(f"peak memory vs TRL at {last} tokens: {b['peak_mb'] / a['peak_mb']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
