"""Format rewards on adversarial 200 KB responses: milliseconds per input.

The issue's bar is under 10 ms per 200 KB input for ``is_well_formed`` (no backtracking regex).
For comparison the script also times the regex most R1-Zero repositories use for the same check
(``^<think>.*?</think>\\s*<answer>.*?</answer>$`` with DOTALL); the regex gives different answers on
some inputs (it allows repeated tags), so only its time is shown, from a single run: on one input it
backtracks for seconds.

    python benchmarks/bench_format.py            # best of 5 repeats per input
    python benchmarks/bench_format.py --repeats 20
"""

from __future__ import annotations

import argparse
import re
import time

from r1kit.rewards.format import is_well_formed, soft_format_score, tag_count_score

N = 200_000
OK = "<think>r</think><answer>7</answer>"

INPUTS = {
    "<think> x 28571": "<think>" * (N // 7),
    "no tags": "a" * N,
    "whitespace": " \n" * (N // 2),
    "</think><answer> pairs": "<think>" + "</think><answer>" * (N // 16),
    "nested <think>": "<think>" * 13_400 + "r" + "</think>" * 13_400 + "<answer>7</answer>",
    "unclosed answer": "<think>r</think><answer>" + "7" * N,
    "50k end tokens": OK + "</s>" * (N // 4),
    "end tokens + text": OK + "<|im_end|>\n" * (N // 11) + "x",
    "long reasoning (valid)": "<think>" + "step. " * (N // 6) + "</think><answer>7</answer>",
    "unicode reasoning (valid)": "<think>" + "数学🙂\u200b" * (N // 4) + "</think><answer>四</answer>",
    "<think / </answer fragments": "<think" * (N // 6) + "</answer",
    "11k answers": "<think>r</think>" + "<answer>7</answer>" * (N // 18),
}

COMMON_REGEX = re.compile(r"^<think>.*?</think>\s*<answer>.*?</answer>$", re.DOTALL)


def best_ms(fn, text: str, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn(text)
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    fns = {
        "is_well_formed": is_well_formed,
        "soft_format": soft_format_score,
        "tag_count": tag_count_score,
        "common regex": COMMON_REGEX.match,
    }
    print(f"ms per input (best of {args.repeats}; common regex: one run); every input is ~200 KB")
    print(f"{'input':30s}" + "".join(f"{name:>16s}" for name in fns))
    worst = {name: 0.0 for name in fns}
    for label, text in INPUTS.items():
        row = {name: best_ms(fn, text, 1 if name == "common regex" else args.repeats) for name, fn in fns.items()}
        for name, ms in row.items():
            worst[name] = max(worst[name], ms)
        print(f"{label:30s}" + "".join(f"{row[name]:16.3f}" for name in fns))
    print(f"{'worst':30s}" + "".join(f"{worst[name]:16.3f}" for name in fns))
    verdict = "under" if worst["is_well_formed"] < 10 else "OVER"
    print(f"is_well_formed worst case: {worst['is_well_formed']:.3f} ms per 200 KB ({verdict} the 10 ms bar)")


if __name__ == "__main__":
    main()
