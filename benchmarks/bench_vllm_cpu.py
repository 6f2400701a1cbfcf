"""Generation speed: HF ``generate`` vs r1kit's HF backend vs vLLM, and vLLM's weight-sync cost.

Same model (the bundled SmolLM2-135M, fp32), same prompts (arithmetic, chat template, ``<think>``
prefill), same sampling (G completions per prompt, temperature 1, no top-k/top-p, max_new_tokens).
Each engine gets one warm-up round, then the median of ``--rounds`` rounds is reported as
generated tokens per second (EOS included, padding excluded). Weight sync: the full policy (or
merged LoRA) pushed into the engine after a parameter change, median of ``--rounds``.

    python benchmarks/bench_vllm_cpu.py [--prompts 2] [--group 8] [--max-new-tokens 48] [--rounds 3]
    python benchmarks/bench_vllm_cpu.py --server http://127.0.0.1:8000   # also a running `r1kit vllm-serve`
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _tokens(groups) -> int:
    return sum(len(c) for g in groups for c in g.completion_ids)


def _rate(fn, rounds: int) -> tuple[float, int]:
    fn()  # warm-up
    rates, total = [], 0
    for r in range(rounds):
        torch.manual_seed(100 + r)
        t0 = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t0))
        total += n
    return statistics.median(rates), total


def _sync_time(rollout, policy, rounds: int) -> float:
    times = []
    for _ in range(rounds + 1):
        with torch.no_grad():
            for p in policy.parameters():
                p.add_(torch.randn_like(p) * 1e-4)
        t0 = time.perf_counter()
        rollout.sync_weights(policy)
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=2)
    ap.add_argument("--group", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--server", help="URL of a running `r1kit vllm-serve smollm2-135m-instruct`")
    a = ap.parse_args()

    from r1kit.config import load_config
    from r1kit.data import build_source
    from r1kit.models import load_model, resolve_model_path
    from r1kit.rollout import build_rollout
    from r1kit.rollout.hf import encode_prompt

    over = [f"rollout.group_size={a.group}", f"rollout.max_new_tokens={a.max_new_tokens}", "rollout.temperature=1.0"]
    cfg = load_config("configs/r1zero_cpu.yaml", over)
    policy, _, tok = load_model(cfg.model, torch.device("cpu"))
    policy.eval()
    samples = build_source(cfg.data, tok, 0).next_batch(a.prompts)
    print(f"[bench] SmolLM2-135M fp32, {a.prompts} prompts x {a.group} completions, <= {a.max_new_tokens} new tokens, "
          f"T=1, median of {a.rounds} rounds after 1 warm-up; torch threads {torch.get_num_threads()}")

    def hf_generate() -> int:
        n = 0
        with torch.no_grad():
            for s in samples:
                ids = torch.tensor([encode_prompt(tok, s.prompt)])
                out = policy.generate(
                    ids, attention_mask=torch.ones_like(ids), do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
                    max_new_tokens=a.max_new_tokens, num_return_sequences=a.group, pad_token_id=tok.pad_token_id,
                )[:, ids.shape[1]:]
                n += int((out != tok.pad_token_id).sum())  # pad == eos here: the EOS itself is not counted
        return n

    results = {}
    results["HF generate"] = _rate(hf_generate, a.rounds)
    hf = build_rollout(cfg.rollout, policy, tok)
    results["r1kit hf backend"] = _rate(lambda: _tokens(hf.generate(samples)), a.rounds)

    t0 = time.perf_counter()
    vcfg = load_config("configs/r1zero_cpu.yaml", [*over, "rollout.backend=vllm"]).rollout
    vllm = build_rollout(vcfg, policy, tok, None, model_path=resolve_model_path(cfg.model.name_or_path), seed=0)
    start = time.perf_counter() - t0
    results["vLLM colocated"] = _rate(lambda: _tokens(vllm.generate(samples)), a.rounds)
    sync = {"vLLM colocated": _sync_time(vllm, policy, a.rounds)}
    if a.server:
        scfg = load_config("configs/r1zero_cpu.yaml", [*over, "rollout.backend=vllm-server", f"rollout.url={a.server}"])
        server = build_rollout(scfg.rollout, policy, tok)
        server.sync_weights(policy)
        results["vLLM server"] = _rate(lambda: _tokens(server.generate(samples)), a.rounds)
        sync["vLLM server (shm file + HTTP)"] = _sync_time(server, policy, a.rounds)

    base = results["HF generate"][0]
    print(f"{'engine':<22} {'tok/s':>8} {'vs HF generate':>15} {'tokens':>8}")
    for name, (rate, total) in results.items():
        print(f"{name:<22} {rate:8.1f} {rate / base:14.2f}x {total:8d}")
    print(f"vLLM colocated engine start: {start:.1f} s")
    for name, s in sync.items():
        print(f"weight sync per step, {name}: {s:.2f} s")


if __name__ == "__main__":
    main()
