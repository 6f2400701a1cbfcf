"""Misbehaving functions for the deadline tests. They live in a module (not in a test body) so
that a pool worker can import them by ``module:qualname``: the pool hands the worker the caller's
``sys.path``, on which pytest put this directory."""

from __future__ import annotations

import os
import time

from r1kit.rewards.registry import Runs, completion_text, runs


def sleep_forever(prompts, completions, **columns):
    """A reward that never returns."""
    time.sleep(10**6)
    return [1.0] * len(completions)


@runs(Runs.POOL_ITEM)
def per_item(prompts, completions, **columns):
    """1.0 per completion, but "hang" never returns, "raise" raises and "exit" kills the process."""
    out = []
    for c in completions:
        text = completion_text(c)
        if "hang" in text:
            time.sleep(10**6)
        if "raise" in text:
            raise RuntimeError(f"bad completion {text!r}")
        if "exit" in text:
            os._exit(7)
        out.append(1.0)
    return out


def whole_batch(prompts, completions, **columns):
    """``per_item`` run as TRL runs a reward: once on the whole batch."""
    return per_item(prompts, completions, **columns)


def batch_sizes(prompts, completions, **columns):
    """Each entry is the size of the batch it was called with (tells per-item from per-batch)."""
    return [float(len(completions))] * len(completions)


@runs(Runs.POOL_ITEM)
def item_sizes(prompts, completions, **columns):
    """``batch_sizes`` declared per item: each call sees one completion."""
    return batch_sizes(prompts, completions, **columns)


def nap(seconds, value=None):
    time.sleep(seconds)
    return value


def exit_with(code, *args):
    os._exit(code)


def verify_exits(gold, prediction):
    """A stand-in comparison whose process dies on every call."""
    os._exit(3)


def segfault():
    import ctypes

    return ctypes.string_at(0)


def hog_memory():
    """More memory than the worker's cap allows: MemoryError inside the worker."""
    return len(bytearray(64 * 1024**3))


def raise_keyerror():
    raise KeyError("no such thing")


def echo(*args, **kwargs):
    return args, kwargs


def my_pid():
    return os.getpid()


def is_worker():
    from r1kit.rewards.pool import in_worker

    return in_worker()


@runs(Runs.POOL_ITEM)
def reports_errors(prompts, completions, **columns):
    """Catches its own (pretend) verifier failure, scores 0 and reports it, as answers_match does."""
    from r1kit.rewards.pool import report

    for _ in completions:
        report("error")
    return [0.0] * len(completions)


@runs(Runs.POOL_ITEM)
def two_values(prompts, completions, **columns):
    return [1.0, 1.0]


def pair_or_hang(gold, prediction):
    """A stand-in comparison: equal strings match, "hang" never returns."""
    if prediction == "hang":
        time.sleep(10**6)
    return gold == prediction
