"""The in-process comparison behind ``answers_match`` (it may run for a long time: callers go
through the deadline-guarded worker pool in ``r1kit.rewards.verifier``, never call it directly
from the training process)."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=4096)
def _parse_gold(text: str):
    from math_verify import parse

    # Each gold answer is compared with a whole group of G predictions.
    return parse(text, parsing_timeout=None)


def verify_pair(gold: str, prediction: str) -> bool:
    """math-verify's ``verify(parse(gold), parse(prediction))`` with its signal-based timeouts off."""
    from math_verify import parse, verify

    g = _parse_gold(gold)
    p = parse(prediction, parsing_timeout=None)
    return bool(g) and bool(p) and bool(verify(g, p, timeout_seconds=None))
