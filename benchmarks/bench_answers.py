"""Answer-equivalence accuracy: r1kit's ``answers_match`` vs plain math-verify, on the case set.

Every case of ``tests/rewards/equivalence_cases.jsonl`` (a gold answer as a dataset stores it, a
model's answer, whether they are equal, the category and the grader that documents the edge case)
goes through

* ``r1kit``: ``r1kit.rewards.math.answers_match(pred, gold)``, end to end (the fast path in this
  process, the rest in the verifier's worker process under its deadline);
* ``math-verify``: ``verify(parse(gold), parse(pred))`` with math-verify's defaults, as its README
  shows it;
* ``math-verify, both in $...$``: the same with each side wrapped in ``$...$`` unless it already
  has ``$`` or ``\\boxed`` (math-verify only reads LaTeX inside delimiters; its README's advice for
  gold strings), which is how r1kit called math-verify before this comparison was written.

and the script prints, as markdown, accuracy, false passes (not equal, judged equal) and false
fails (equal, judged not equal) of each, then the same per category, then r1kit's misjudgements.

    python benchmarks/bench_answers.py [--cases PATH] [--timeout 5]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from r1kit.rewards.math import answers_match  # noqa: E402

DEFAULT_CASES = ROOT / "tests" / "rewards" / "equivalence_cases.jsonl"


def load_cases(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _latex(text: str) -> str:
    return text if "$" in text or "\\boxed" in text else f"${text}$"


def math_verify_judge(wrap: bool):
    from math_verify import parse, verify

    def judge(gold: str, pred: str) -> bool:
        try:
            if wrap:
                gold, pred = _latex(gold), _latex(pred)
            return bool(verify(parse(gold), parse(pred)))
        except Exception:  # noqa: BLE001 - a crash is a "no"
            return False

    return judge


def score(verdicts: list[bool], cases: list[dict]) -> dict:
    false_pass = sum(v and not c["equal"] for v, c in zip(verdicts, cases))
    false_fail = sum(c["equal"] and not v for v, c in zip(verdicts, cases))
    n = len(cases)
    accuracy = (n - false_pass - false_fail) / n if n else 0.0
    return {"n": n, "acc": accuracy, "fp": false_pass, "ff": false_fail}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", type=Path, default=DEFAULT_CASES)
    ap.add_argument("--timeout", type=float, default=5.0, help="per-answer deadline for answers_match")
    args = ap.parse_args()
    logging.disable(logging.WARNING)  # math-verify logs every parse it gives up on

    cases = load_cases(args.cases)
    judges = {
        "r1kit `answers_match`": lambda g, p: answers_match(p, g, timeout_s=args.timeout),
        "math-verify `verify(parse(gold), parse(pred))`": math_verify_judge(wrap=False),
        "math-verify, both wrapped in `$...$`": math_verify_judge(wrap=True),
    }
    answers_match("1", "1")  # start the verifier worker outside the timing
    verdicts, seconds = {}, {}
    for name, judge in judges.items():
        start = time.perf_counter()
        verdicts[name] = [judge(c["gold"], c["pred"]) for c in cases]
        seconds[name] = time.perf_counter() - start

    n_equal = sum(c["equal"] for c in cases)
    print(f"{len(cases)} cases ({n_equal} equal, {len(cases) - n_equal} not equal) from {args.cases.name}\n")
    print("| grader | accuracy | false passes | false fails | seconds |")
    print("|---|---:|---:|---:|---:|")
    for name in judges:
        s = score(verdicts[name], cases)
        print(f"| {name} | {s['acc']:.1%} | {s['fp']} | {s['ff']} | {seconds[name]:.1f} |")

    by_cat: dict[str, list[int]] = defaultdict(list)
    for i, c in enumerate(cases):
        by_cat[c["category"]].append(i)
    names = list(judges)
    print("\nPer category (accuracy, false passes / false fails):\n")
    print("| category | cases | r1kit | math-verify | math-verify, wrapped |")
    print("|---|---:|" + "---:|" * len(names))
    for cat, idx in by_cat.items():
        sub = [cases[i] for i in idx]
        cells = []
        for name in names:
            s = score([verdicts[name][i] for i in idx], sub)
            cells.append(f"{s['acc']:.0%} ({s['fp']}/{s['ff']})")
        print(f"| {cat} | {len(idx)} | " + " | ".join(cells) + " |")

    ours = verdicts[names[0]]
    wrong = [c for v, c in zip(ours, cases) if v != c["equal"]]
    print(f"\nr1kit misjudgements: {len(wrong)}")
    for c in wrong:
        kind = "false pass" if not c["equal"] else "false fail"
        print(f"- {kind} [{c['category']}]: gold {c['gold']!r}, pred {c['pred']!r}")


if __name__ == "__main__":
    main()
