"""Grade completions exactly as training scores them: the ``accuracy`` reward (same extraction,
same verifier, same deadlines) through ``score_groups``, plus the strict-format check and the
answer each completion commits to (what maj@k votes over)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from r1kit.rewards import score_groups
from r1kit.rewards.extract import answer_tag_content, extract_answer, last_boxed
from r1kit.rewards.format import is_well_formed
from r1kit.rewards.math import answers_match
from r1kit.types import Group, Sample

# Problem fields that are not reward columns.
_NOT_COLUMNS = ("id", "question", "subject", "level", "completions", "pass@1", "majority_answer")


def r1kit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("r1kit")
    except PackageNotFoundError:
        return "unknown"


def grader_version() -> str:
    """r1kit's version and a digest of the grader's source (``r1kit/rewards``): it changes
    whenever the grading can, so results.json says which grader produced it."""
    ver = r1kit_version()
    root = Path(__file__).resolve().parent.parent / "rewards"
    h = hashlib.sha256()
    for f in sorted(root.rglob("*.py")):
        h.update(f.relative_to(root).as_posix().encode() + b"\0" + f.read_bytes())
    return f"{ver}+{h.hexdigest()[:12]}"


def extracted(response: str, task: str | None) -> str | None:
    """The answer a response commits to, as its task's checker reads it."""
    if task in ("arithmetic", "countdown"):
        content = answer_tag_content(response)
        if not content:
            return None
        return (last_boxed(content) or content) if task == "arithmetic" else content
    return extract_answer(response)


def same_answer(a: str, b: str) -> bool:
    """Whether two extracted answers fall in one maj@k class."""
    return answers_match(a, b)


def columns(problem: dict[str, Any]) -> dict[str, Any]:
    """The reward columns of a problem row (answer, task, numbers, target, ...)."""
    return {k: v for k, v in problem.items() if k not in _NOT_COLUMNS}


def grade(groups_P: list[Group], runtime=None) -> tuple[list[list[dict[str, Any]]], dict[str, int]]:
    """Graded samples per group (``text``, ``extracted``, ``correct``, ``well_formed``, ``tokens``,
    ``clipped``), and the grader's error and timeout counts (those samples count as wrong)."""
    scores = score_groups(groups_P, {"accuracy": 1.0}, None, runtime)
    acc = iter(scores.per_reward["accuracy"])
    graded = []
    for g in groups_P:
        task = g.sample.columns.get("task")
        rows = []
        for j, response in enumerate(g.responses):
            rows.append({
                "text": response,
                "extracted": extracted(response, task),
                "correct": next(acc) >= 1.0,
                "well_formed": is_well_formed(response),
                "tokens": len(g.completion_ids[j]),
                "clipped": g.truncated[j],
            })
        graded.append(rows)
    counts = {"grader_errors": sum(scores.errors.values()), "grader_timeouts": sum(scores.timeouts.values())}
    return graded, counts


def saved_group(problem: dict[str, Any], completions: list[Any]) -> Group:
    """A Group of saved completions (strings, or graded samples from a problems.jsonl) to
    re-grade; see :func:`saved_lengths` for their token counts."""
    texts = [c["text"] if isinstance(c, dict) else str(c) for c in completions]
    return Group(
        sample=Sample(prompt=str(problem.get("question", "")), prefill="", columns=columns(problem)),
        prompt_ids=[],
        completion_ids=[[] for _ in texts],
        completions=texts,
        truncated=[False for _ in texts],
    )


def saved_lengths(samples: list[dict[str, Any]], completions: list[Any]) -> None:
    """Put the saved token counts and clip flags back on re-graded samples (None where the saved
    completion is a plain string: the length is unknown without the tokenizer)."""
    for sample, c in zip(samples, completions):
        sample["tokens"] = c.get("tokens") if isinstance(c, dict) else None
        sample["clipped"] = c.get("clipped") if isinstance(c, dict) else None
