"""Evaluation the way papers report it: ``r1kit eval`` (the runner), benchmark layouts by name,
pass@1 with its standard error, maj@K and unbiased pass@K (``metrics``, pure functions)."""

from __future__ import annotations

from r1kit.eval.metrics import MetricsError, dataset_metrics, majority_index, pass_at_k, reported_ks

__all__ = [
    "MetricsError", "dataset_metrics", "evaluate", "load_benchmark", "majority_index", "pass_at_k", "regrade",
    "reported_ks",
]


def __getattr__(name: str):  # the runner imports torch: only when it is used
    if name in ("evaluate", "regrade"):
        from r1kit.eval import runner

        return getattr(runner, name)
    if name == "load_benchmark":
        from r1kit.eval.benchmarks import load_benchmark

        return load_benchmark
    raise AttributeError(name)
