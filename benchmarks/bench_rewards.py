"""Seconds to score a batch of answers with r1kit's ``accuracy`` reward under hard deadlines.

``score()`` runs ``accuracy`` in the reward worker pool, one call per completion, each with its
own deadline (see ``r1kit.rewards.scoring``). This prints what that costs for ``--n`` completions
(default 1,024), for three kinds of answers, all distinct (no cache helps):

- ``arithmetic``: integer answers of the arithmetic task (no sympy);
- ``plain numbers``: math-task answers such as ``72`` vs ``72`` or ``1,000`` vs ``1000``;
- ``latex fractions``: ``\\frac{2k+1}{2}`` vs ``k.5``, ``\\dfrac{2k}{4k+2}`` vs ``\\frac{k}{2k+1}``;
- ``latex symbolic``: answers sympy has to work on: ``(k+2)\\sqrt{3}`` vs ``\\sqrt{3(k+2)^2}``,
  ``x^2+k`` vs ``k+x^2`` (several ms each in sympy itself, whatever runs it).

For each: **cold** (a fresh pool: starting the workers, importing sympy, then scoring) and
**warm** (median of ``--repeats`` runs on started workers), plus, for reference, the same reward
called in this process with no isolation and no deadline (what r1kit did before the pool).

    python benchmarks/bench_rewards.py                # 1,024 answers, pool of min(2, cpus) workers
    python benchmarks/bench_rewards.py --n 4096 --workers 4
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from r1kit.rewards import pool as pool_mod  # noqa: E402
from r1kit.rewards import score  # noqa: E402
from r1kit.rewards.worker_protocol import WORKER_ENV  # noqa: E402
from r1kit.rewards.accuracy import accuracy_reward  # noqa: E402


def batches(n: int, salt: int) -> dict[str, tuple[list[str], dict[str, list]]]:
    """Three batches of ``n`` correct answers; ``salt`` makes every run's answers new."""
    def tagged(answer: str) -> str:
        return f"<think>working it out</think> <answer>{answer}</answer>"

    out = {}
    k = [salt * n + i for i in range(n)]
    out["arithmetic"] = ([tagged(str(x)) for x in k], {"task": ["arithmetic"] * n, "answer": [str(x) for x in k]})
    out["plain numbers"] = (
        [tagged(f"{x:,}" if i % 2 else str(x)) for i, x in enumerate(k)],
        {"task": ["math"] * n, "answer": [str(x) for x in k]},
    )
    def alternating(odd, even):  # (pred, gold) pairs from two makers, by the parity of the index
        pairs = [odd(x) if i % 2 else even(x) for i, x in enumerate(k)]
        return [tagged(p) for p, _ in pairs], {"task": ["math"] * n, "answer": [g for _, g in pairs]}

    out["latex fractions"] = alternating(
        lambda x: (f"{x}.5", f"\\frac{{{2 * x + 1}}}{{2}}"),
        lambda x: (f"\\dfrac{{{2 * x}}}{{{4 * x + 2}}}", f"\\frac{{{x}}}{{{2 * x + 1}}}"),
    )
    out["latex symbolic"] = alternating(
        lambda x: (f"{x + 2}\\sqrt{{3}}", f"\\sqrt{{{3 * (x + 2) ** 2}}}"),
        lambda x: (f"x^2+{x}", f"{x}+x^2"),
    )
    return out


def run_score(responses, columns) -> tuple[float, float, dict]:
    t0 = time.perf_counter()
    s = score(["prompt"] * len(responses), responses, columns, {"accuracy": 1.0})
    took = time.perf_counter() - t0
    return took, sum(s.per_reward["accuracy"]) / len(responses), {"timeouts": s.timeouts["accuracy"], "errors": s.errors["accuracy"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1024, help="completions per batch")
    ap.add_argument("--workers", type=int, default=None, help="pool size (default min(2, cpus))")
    ap.add_argument("--repeats", type=int, default=3, help="warm runs per kind (median reported)")
    args = ap.parse_args()

    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    rows = []
    salt = 0
    for kind in ("arithmetic", "plain numbers", "latex fractions", "latex symbolic"):
        salt += 1
        pool = pool_mod.configure(size=args.workers)  # a fresh pool: the cold run starts it
        responses, columns = batches(args.n, salt)[kind]
        cold, acc, counts = run_score(responses, columns)
        warm = []
        for _ in range(args.repeats):
            salt += 1
            responses, columns = batches(args.n, salt)[kind]
            took, acc_w, counts_w = run_score(responses, columns)
            warm.append(took)
            acc = min(acc, acc_w)
            counts = {k: counts[k] + counts_w[k] for k in counts}
        # Reference: the reward in this process, no worker, no deadline (answers are compared in
        # this process too: the worker flag makes the verifier skip the pool).
        salt += 1
        responses, columns = batches(args.n, salt)[kind]
        os.environ[WORKER_ENV] = "1"
        try:
            t0 = time.perf_counter()
            accuracy_reward(["prompt"] * args.n, responses, **columns)
            inproc = time.perf_counter() - t0
        finally:
            del os.environ[WORKER_ENV]
        rows.append((kind, cold, statistics.median(warm), inproc, acc, counts, pool.size))
        pool.close()

    print(f"\nscore(accuracy) on {args.n:,} completions, seconds (all answers correct; pool of {rows[0][6]} workers)")
    print(f"{'answers':<15}{'cold':>8}{'warm':>8}{'in-process, no deadline':>26}{'accuracy':>10}  timeouts/errors")
    for kind, cold, warm, inproc, acc, counts, _ in rows:
        print(f"{kind:<15}{cold:>8.2f}{warm:>8.2f}{inproc:>26.2f}{acc:>10.3f}  {counts['timeouts']}/{counts['errors']}")
    simple = max(r[2] for r in rows if r[0] != "latex symbolic")
    print(f"\nwarm, simple answers (all but 'latex symbolic'): at most {simple:.2f} s for {args.n:,} answers")


if __name__ == "__main__":
    main()
