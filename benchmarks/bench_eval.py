"""r1kit eval vs a plain transformers generate loop: generated tokens per second, one process.

Every contender samples k completions for the same problems, with the same prompts (rendered by
r1kit: chat template, `<think>` pre-filled), model, sampling settings and max_new_tokens:

- r1kit: ``evaluate_benchmarks`` -- what ``r1kit eval`` runs after loading: batched generation
  across problems (HF backend), grading with the verifier, rows written to disk; all of it timed.
- plain loop: for each problem, ``model.generate(num_return_sequences=k)`` (generation only).
- batched generate: ``model.generate`` on the same problem chunks as r1kit, left-padded.
- vLLM (``--vllm``, when installed): ``r1kit eval --backend vllm``'s path, engine start excluded.

Tokens are the generated ones up to and including the first EOS. The last line is
``r1kit eval vs plain generate loop: X.XXx tokens/s``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def generated_tokens(seqs_NT: torch.Tensor, eos_ids: list[int]) -> int:
    """Tokens up to and including the first EOS of each row (all of the row if none)."""
    total = 0
    eos = torch.tensor(eos_ids)
    for row in seqs_NT:
        hits = torch.isin(row, eos).nonzero()
        total += int(hits[0]) + 1 if hits.numel() else row.numel()
    return total


def hf_generate(model, tokenizer, prompts: list[str], k: int, args, eos_ids: list[int]) -> int:
    from r1kit.rollout.hf import encode_prompt
    from r1kit.tensors import left_pad

    ids = [encode_prompt(tokenizer, p) for p in prompts]
    ids_PL, attn_PL = left_pad(ids, tokenizer.pad_token_id, torch.device("cpu"))
    out = model.generate(
        input_ids=ids_PL, attention_mask=attn_PL, do_sample=args.temperature > 0, temperature=args.temperature or None,
        top_p=args.top_p, top_k=0, max_new_tokens=args.max_new_tokens, num_return_sequences=k,
        eos_token_id=eos_ids, pad_token_id=tokenizer.pad_token_id,
    )
    return generated_tokens(out[:, ids_PL.shape[1] :], eos_ids)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--problems", type=int, default=32, help="arithmetic problems (seed 12345)")
    ap.add_argument("--k", type=int, default=4)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--temperature", type=float, default=0.6)
    ap.add_argument("--top-p", type=float, default=0.95)
    ap.add_argument("--batch-size", type=int, default=64, help="sequences per generate call (r1kit, batched)")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--vllm", action="store_true", help="also time the vLLM backend (needs vllm installed)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from r1kit.config import EvalSection
    from r1kit.config.eval import EvalDatasetSpec
    from r1kit.config.sections import ModelSection
    from r1kit.data.templates import render_prompt
    from r1kit.eval.benchmarks import load_benchmark
    from r1kit.eval.runner import eval_rollout, evaluate_benchmarks, make_protocol
    from r1kit.models import load_model, resolve_model_path
    from r1kit.rollout.hf import eos_token_ids

    model, _, tok = load_model(ModelSection(name_or_path=args.model))
    model.eval()
    eos_ids = eos_token_ids(model, tok)
    bench = load_benchmark(EvalDatasetSpec.from_yaml("bench", {"name": "arithmetic", "num_problems": args.problems}))
    section = EvalSection(k=args.k, temperature=args.temperature, top_p=args.top_p, max_new_tokens=args.max_new_tokens,
                          batch_size=args.batch_size)
    protocol = make_protocol(section, tok, seed=0)
    prompts = [render_prompt(p["question"], tok, protocol.template, protocol.prefill) for p in bench.problems]
    print(f"model {args.model}, {args.problems} problems x k={args.k}, <= {args.max_new_tokens} new tokens, "
          f"T={args.temperature}, top-p {args.top_p}, {args.threads} threads, batch {args.batch_size} sequences")

    results = {}

    def timed(name, fn):
        t0 = time.perf_counter()
        tokens = fn()
        seconds = time.perf_counter() - t0
        results[name] = (tokens, seconds)
        print(f"{name:<18} {tokens:>7} tokens  {seconds:7.1f} s  {tokens / seconds:8.1f} tokens/s", flush=True)

    def r1kit_eval(backend="hf"):
        rollout = eval_rollout(protocol, model, tok, backend, model_path=resolve_model_path(args.model))
        with tempfile.TemporaryDirectory() as out:
            def run():
                res = evaluate_benchmarks([bench], rollout, tok, protocol, Path(out), {"model": args.model}, backend,
                                          args.batch_size, progress=False)
                m = res["arithmetic"]
                return round(m["length_mean"] * m["n_problems"] * m["k"])
            timed(f"r1kit eval ({backend})", run)

    with torch.no_grad():
        r1kit_eval()
        timed("plain loop", lambda: sum(hf_generate(model, tok, [p], args.k, args, eos_ids) for p in prompts))
        per = max(1, args.batch_size // args.k)
        timed("batched generate", lambda: sum(
            hf_generate(model, tok, prompts[i : i + per], args.k, args, eos_ids) for i in range(0, len(prompts), per)))
        if args.vllm:
            r1kit_eval("vllm")

    rate = {name: t / s for name, (t, s) in results.items()}
    print(f"tokens/s ratio r1kit eval / batched generate: {rate['r1kit eval (hf)'] / rate['batched generate']:.2f}x")
    n = args.problems * args.k
    print(f"mean completion tokens: r1kit {results['r1kit eval (hf)'][0] / n:.1f}, plain loop "
          f"{results['plain loop'][0] / n:.1f}, batched {results['batched generate'][0] / n:.1f} (independent samples)")
    print(f"r1kit eval vs plain generate loop: {rate['r1kit eval (hf)'] / rate['plain loop']:.2f}x tokens/s")


if __name__ == "__main__":
    main()
