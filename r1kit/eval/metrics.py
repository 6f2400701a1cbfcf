"""Evaluation metrics as papers report them, pure functions of graded samples.

- pass@1: the mean correctness of a problem's k samples, averaged over problems, with its
  standard error over problems (sample standard deviation of the per-problem means / sqrt(n)).
- pass@K: Chen et al. (2021)'s unbiased estimator 1 - C(n-c, K) / C(n, K) from n samples of
  which c are correct, for every power of two K <= k and for k itself.
- maj@K: majority vote over the first K samples' extracted answers. Answers that
  ``answers_match`` calls equal form one class: each answer joins the first class (in sample
  order) whose first answer matches it. The largest class wins; a tie goes to the class whose
  first sample came earliest. Samples with no answer do not vote; a problem where none answered
  counts as wrong. The vote is right when the winning class's first answer is correct.
A problem with fewer than k samples is an error that names it: no metric is estimated from
fewer samples than it claims.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Callable


class MetricsError(ValueError):
    """Samples that cannot support the metrics asked for; the message names the problem."""


def pass_at_k(n: int, c: int, k: int) -> float:
    """Probability that at least one of k samples drawn without replacement from n samples (c of
    them correct) is correct: 1 - C(n-c, k) / C(n, k), computed as a product (no huge binomials)."""
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def reported_ks(k: int) -> list[int]:
    """The K of pass@K and maj@K: every power of two up to k, and k itself."""
    ks, p = [], 1
    while p <= k:
        ks.append(p)
        p *= 2
    return ks if ks[-1] == k else [*ks, k]


def majority_index(answers: list[str | None], same: Callable[[str, str], bool]) -> int | None:
    """Index of the sample that represents the winning answer class (see the module docstring),
    or None when no sample has an answer."""
    classes: list[list[int]] = []
    for i, answer in enumerate(answers):
        if answer is None:
            continue
        for members in classes:
            first = answers[members[0]]
            if answer == first or same(answer, first):
                members.append(i)
                break
        else:
            classes.append([i])
    if not classes:
        return None
    return max(classes, key=lambda members: (len(members), -members[0]))[0]


def problem_metrics(problem_id: str, samples: list[dict[str, Any]], k: int,
                    same: Callable[[str, str], bool]) -> dict[str, Any]:
    """pass@1, pass@K and maj@K of one problem from its first k graded samples (each a mapping
    with ``correct`` and ``extracted``)."""
    if len(samples) < k:
        raise MetricsError(f"problem {problem_id!r} has {len(samples)} samples, fewer than k={k}")
    samples = samples[:k]
    correct = [bool(s["correct"]) for s in samples]
    c = sum(correct)
    out: dict[str, Any] = {"pass@1": c / k}
    for K in reported_ks(k):
        out[f"pass@{K}"] = pass_at_k(k, c, K)
        winner = majority_index([s.get("extracted") for s in samples[:K]], same)
        out[f"maj@{K}"] = float(winner is not None and correct[winner])
    winner = majority_index([s.get("extracted") for s in samples], same)
    out["majority_answer"] = None if winner is None else samples[winner].get("extracted")
    return out


def _standard_error(values: list[float]) -> float | None:
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else None


def _group(problems: list[dict[str, Any]], scores: list[dict[str, Any]], key: str) -> dict[str, Any]:
    groups: dict[str, list[float]] = {}
    for p, s in zip(problems, scores):
        if p.get(key) is not None:
            groups.setdefault(str(p[key]), []).append(s["pass@1"])
    return {name: {"n_problems": len(v), "pass@1": sum(v) / len(v)} for name, v in sorted(groups.items())}


def dataset_metrics(problems: list[dict[str, Any]], k: int, same: Callable[[str, str], bool]) -> dict[str, Any]:
    """The metrics of one dataset. ``problems``: rows of ``<dataset>.problems.jsonl`` (``id``,
    ``completions``: graded samples with ``correct``, ``extracted``, ``well_formed``, and
    ``tokens`` and ``clipped`` when known; ``subject``/``level`` when the data has them)."""
    if not problems:
        raise MetricsError("no problems to score")
    scores = [problem_metrics(p["id"], p["completions"], k, same) for p in problems]
    samples = [s for p in problems for s in p["completions"][:k]]
    n = len(problems)
    out: dict[str, Any] = {"pass@1": sum(s["pass@1"] for s in scores) / n,
                           "pass@1_se": _standard_error([s["pass@1"] for s in scores])}
    for K in reported_ks(k):
        out[f"maj@{K}"] = sum(s[f"maj@{K}"] for s in scores) / n
        out[f"pass@{K}"] = sum(s[f"pass@{K}"] for s in scores) / n
    out["format_rate"] = sum(bool(s.get("well_formed")) for s in samples) / len(samples)
    tokens = [s["tokens"] for s in samples if s.get("tokens") is not None]
    full = len(tokens) == len(samples)
    out["length_mean"] = sum(tokens) / len(tokens) if full else None
    out["length_median"] = statistics.median(tokens) if full else None
    out["length_max"] = max(tokens) if full else None
    clipped = [s["clipped"] for s in samples if s.get("clipped") is not None]
    out["clip_rate"] = sum(map(bool, clipped)) / len(clipped) if len(clipped) == len(samples) else None
    out["n_problems"] = n
    out["k"] = k
    for key in ("subject", "level"):
        groups = _group(problems, scores, key)
        if groups:
            out[f"by_{key}"] = groups
    return out


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """The summary table printed after an evaluation: one row per dataset, percentages."""

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}"

    header = ["dataset", "n", "k", "pass@1", "maj@k", "pass@k", "format", "length", "clip"]
    rows = [header]
    for name, m in results.items():
        k = m["k"]
        se = m["pass@1_se"]
        rows.append([
            name, str(m["n_problems"]), str(k),
            f"{pct(m['pass@1'])} ± {pct(se)}" if se is not None else pct(m["pass@1"]),
            pct(m[f"maj@{k}"]), pct(m[f"pass@{k}"]), pct(m["format_rate"]),
            "-" if m["length_mean"] is None else f"{m['length_mean']:.0f}", pct(m["clip_rate"]),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
