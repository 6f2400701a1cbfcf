"""``r1kit eval``: sample k completions per problem with the training template, grade them with
the training verifier, and report pass@1 (± its standard error), maj@K and pass@K per dataset.

Problems are generated in fixed chunks (``eval.batch_size // k`` problems, in order of prompt
length), each under its own seed, so a chunk's completions do not depend on which chunks ran
before: a killed evaluation rerun with the same command skips the finished problems and ends
with the results an uninterrupted run gives (HF backend, same machine and thread count).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

from r1kit.checkpoint import rng_state, set_rng_state
from r1kit.config import RolloutSection
from r1kit.config.eval import EvalRun, EvalSection
from r1kit.data.templates import render_prompt
from r1kit.eval.benchmarks import Benchmark, load_benchmark
from r1kit.eval.grading import grade, grader_version, r1kit_version, same_answer, saved_group, saved_lengths
from r1kit.eval.metrics import dataset_metrics, format_table, problem_metrics
from r1kit.eval.protocols import Protocol, resolve_protocol
from r1kit.eval.records import (
    EvalError,
    append_row,
    finished_rows,
    prepare_output,
    problems_path,
    write_results,
)
from r1kit.distributed import World, barrier, gather_objects
from r1kit.types import Sample

# Test hook: with R1KIT_TEST_PAUSE_AFTER_EVAL_CHUNK=N the process sleeps forever right after the
# rows of its N-th generated chunk are written, so a test can SIGKILL it at a known point.
PAUSE_ENV = "R1KIT_TEST_PAUSE_AFTER_EVAL_CHUNK"


def prompt_settings(section: EvalSection, tokenizer, train_data=None) -> tuple[str, str, str | None]:
    """(template, prefill, system prompt): the section's, else the training run's, else the chat
    template when the tokenizer has one (r1zero when not) with ``<think>`` pre-filled."""
    if train_data is not None:
        template, prefill, system = train_data.template, train_data.prefill, train_data.system_prompt
    else:
        template = "chat" if getattr(tokenizer, "chat_template", None) else "r1zero"
        prefill, system = "<think>", None
    return (
        section.template or template,
        section.prefill if section.prefill is not None else prefill,
        section.system_prompt if section.system_prompt is not None else system,
    )


def make_protocol(section: EvalSection, tokenizer, seed: int, train_data=None, train_max_new_tokens=None) -> Protocol:
    template, prefill, system = prompt_settings(section, tokenizer, train_data)
    text = render_prompt("{question}", tokenizer, template, prefill, system)
    return resolve_protocol(section, seed, template, prefill, system, text, train_max_new_tokens)


def eval_rollout(protocol: Protocol, model, tokenizer, backend: str = "hf", vllm_cfg=None, model_path=None, amp=None):
    """The rollout backend that samples ``protocol.k`` completions per problem."""
    from r1kit.rollout import build_rollout

    cfg = RolloutSection(
        backend=backend, group_size=protocol.k, max_new_tokens=protocol.max_new_tokens,
        temperature=protocol.temperature, top_p=protocol.top_p, top_k=protocol.top_k,
    )
    if vllm_cfg is not None:
        cfg.vllm = vllm_cfg
    return build_rollout(cfg, model, tokenizer, amp, model_path=model_path, seed=protocol.seed)


def chunk_seed(seed: int, dataset: str, chunk: int) -> int:
    """The seed of one chunk of problems: the same on every machine and run."""
    return int.from_bytes(hashlib.sha256(f"eval:{seed}:{dataset}:{chunk}".encode()).digest()[:8], "little")


def _problem_row(problem: dict[str, Any], samples: list[dict[str, Any]], k: int) -> dict[str, Any]:
    m = problem_metrics(problem["id"], samples, k, same_answer)
    return {**problem, "completions": samples, "pass@1": m["pass@1"], "majority_answer": m["majority_answer"]}


def run_dataset(bench: Benchmark, rollout, render: Callable[[str], str], protocol: Protocol, path: Path,
                batch_size: int, tokenizer, runtime=None, bar=None,
                world: World | None = None) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Generate and grade every unfinished problem of ``bench``, appending rows to ``path``;
    returns all rows in the dataset's order and the grader's error/timeout counts.

    Under several processes (``world``; every process calls this with the whole model) the
    chunks are dealt round-robin, process r taking chunk c of each round of N; each chunk is
    seeded by its index, so the rows are those of one process. The rows are gathered after each
    round and process 0 writes them, in chunk order."""
    world = world or World()
    ids = {p["id"] for p in bench.problems}
    done = gather_objects(finished_rows(path, ids) if world.is_main else None, world)[0]  # process 0's file
    prompts = {p["id"]: render(p["question"]) for p in bench.problems}
    lengths = {pid: len(tokenizer(text, add_special_tokens=False)["input_ids"]) for pid, text in prompts.items()}
    order = sorted(bench.problems, key=lambda p: lengths[p["id"]])  # stable: ties keep file order
    per_chunk = max(1, batch_size // protocol.k)
    chunks = [order[lo : lo + per_chunk] for lo in range(0, len(order), per_chunk)]
    counts = {"grader_errors": 0, "grader_timeouts": 0}
    generated = 0
    if bar is not None:
        bar.update(sum(p["id"] in done for p in bench.problems))
    for first in range(0, len(chunks), world.size):
        c = first + world.rank
        mine = _run_chunk(c, chunks[c], done, rollout, prompts, protocol, bench.name, runtime) if c < len(chunks) else None
        parts = gather_objects(mine, world)  # rank order is chunk order
        if not any(parts):
            continue
        for part in filter(None, parts):
            for key, v in part["counts"].items():
                counts[key] += v
            for row in part["rows"]:
                done[row["id"]] = row
                if world.is_main:
                    append_row(path, row)
        generated += 1
        _pause_for_tests(generated)
        if bar is not None:
            seconds = max(part["seconds"] for part in filter(None, parts))
            tokens = sum(part["tokens"] for part in filter(None, parts))
            bar.set_postfix(dataset=bench.name, tok_s=f"{tokens / max(seconds, 1e-9):.0f}")
            bar.update(sum(len(part["rows"]) for part in filter(None, parts)))
    return [done[p["id"]] for p in bench.problems], counts


def _run_chunk(c: int, chunk: list[dict[str, Any]], done: dict, rollout, prompts: dict[str, str], protocol: Protocol,
               dataset: str, runtime) -> dict[str, Any] | None:
    """Chunk ``c`` generated under its own seed and graded: its unfinished problems' rows, the
    grader's counts, seconds and tokens; None when every problem of it is finished."""
    if all(p["id"] in done for p in chunk):
        return None
    torch.manual_seed(chunk_seed(protocol.seed, dataset, c))
    t0 = time.perf_counter()
    groups = rollout.generate([Sample(prompts[p["id"]], protocol.prefill, dict(p)) for p in chunk])
    seconds = time.perf_counter() - t0
    graded, chunk_counts = grade(groups, runtime)
    rows = [_problem_row(problem, samples, protocol.k) for problem, samples in zip(chunk, graded) if problem["id"] not in done]
    tokens = sum(len(ids) for g in groups for ids in g.completion_ids)
    return {"rows": rows, "counts": chunk_counts, "seconds": seconds, "tokens": tokens}


def _pause_for_tests(chunks: int) -> None:
    if os.environ.get(PAUSE_ENV) == str(chunks):
        print(f"[r1kit] {PAUSE_ENV}: paused after chunk {chunks}", file=sys.stderr, flush=True)
        while True:
            time.sleep(3600)


def _record(bench: Benchmark, protocol: Protocol, model: dict[str, Any], backend: str) -> dict[str, Any]:
    return {
        **model, "backend": backend, "dataset_path": bench.source, "dataset_sha256": bench.sha256,
        **protocol.to_dict(), "r1kit_version": r1kit_version(), "grader_version": grader_version(),
    }


def dataset_results(rows: list[dict[str, Any]], k: int, record: dict[str, Any], counts: dict[str, int]) -> dict[str, Any]:
    """One dataset's entry of results.json: its metrics, grader counts and full protocol."""
    return {**dataset_metrics(rows, k, same_answer), **counts, "protocol": record}


def _identity(model: dict[str, Any], protocol: Protocol, benches: list[Benchmark], backend: str) -> dict[str, Any]:
    return {
        **model, "backend": backend, "protocol": protocol.to_dict(), "grader_version": grader_version(),
        "datasets": {b.name: {"source": b.source, "sha256": b.sha256, "n_problems": len(b.problems)} for b in benches},
    }


def _progress(total: int, enabled: bool, desc: str = "eval"):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="problem", dynamic_ncols=True, file=sys.stderr)


def evaluate_benchmarks(benches: list[Benchmark], rollout, tokenizer, protocol: Protocol, out: Path,
                        model: dict[str, Any], backend: str, batch_size: int, runtime=None, overwrite: bool = False,
                        progress: bool = True, world: World | None = None) -> dict[str, Any]:
    """Evaluate into ``out`` (resuming what it holds) and write results.json; returns it (on
    every process of ``world``, which share the problems; process 0 writes)."""
    world = world or World()
    if world.is_main:
        prepare_output(out, _identity(model, protocol, benches, backend), overwrite)
    barrier(world)
    render = functools.partial(
        render_prompt, tokenizer=tokenizer, template=protocol.template, prefill=protocol.prefill,
        system_prompt=protocol.system_prompt,
    )
    bar = _progress(sum(len(b.problems) for b in benches), progress and world.is_main)
    results = {}
    try:
        for bench in benches:
            rows, counts = run_dataset(
                bench, rollout, render, protocol, problems_path(out, bench.name), batch_size, tokenizer, runtime, bar,
                world,
            )
            results[bench.name] = dataset_results(rows, protocol.k, _record(bench, protocol, model, backend), counts)
    finally:
        if bar is not None:
            bar.close()
    if world.is_main:
        write_results(out, results)
    return results


def default_output_dir(target) -> Path:
    if target.run_dir is not None:
        return target.run_dir / (f"eval-{target.checkpoint}" if target.checkpoint else "eval")
    return Path("runs/eval") / Path(target.given.rstrip("/")).name


def evaluate(cfg: EvalRun):
    """``r1kit eval``: the output directory, its results.json mapping, and the evaluated
    ``Target`` (a run directory's config carries its recipe's reference numbers)."""
    from r1kit.eval.target import load_target, resolve_target
    from r1kit.models import autocast_dtype, default_device, load_tokenizer
    from r1kit.rewards.pool import configure as configure_reward_pool
    from r1kit.setup import seed_everything

    target = resolve_target(cfg.model.name_or_path, cfg.checkpoint)
    benches = [load_benchmark(spec, cfg.eval.limit, target.train_data) for spec in cfg.eval.datasets]
    _warn_training_seed(cfg, target)
    # the output directory is checked before the model loads: a protocol mismatch fails fast
    tokenizer = load_tokenizer(target.path)
    protocol = make_protocol(cfg.eval, tokenizer, cfg.seed, target.train_data, target.train_max_new_tokens)
    out = Path(cfg.output_dir) if cfg.output_dir else default_output_dir(target)
    model_record = {"model": target.given, "model_path": target.path, "checkpoint": target.checkpoint}
    prepare_output(out, _identity(model_record, protocol, benches, cfg.backend), cfg.overwrite)
    device = default_device()
    seed_everything(cfg.seed)
    model, tokenizer = load_target(target, cfg.model.dtype, device)
    if cfg.reward_runtime.workers:
        configure_reward_pool(size=cfg.reward_runtime.workers)
    rollout = eval_rollout(protocol, model, tokenizer, cfg.backend, cfg.vllm, target.path,
                           autocast_dtype(cfg.model.dtype, device))
    results = evaluate_benchmarks(
        benches, rollout, tokenizer, protocol, out, model_record, cfg.backend, cfg.eval.batch_size,
        cfg.reward_runtime, overwrite=False, progress=cfg.progress,
    )
    return out, results, target


def _warn_training_seed(cfg: EvalRun, target) -> None:
    data = target.train_data
    for spec in cfg.eval.datasets:
        if data is not None and spec.layout_name == data.source and spec.seed == target.run_cfg.seed:
            print(
                f"[r1kit] warning: eval dataset '{spec.name}' draws {spec.layout_name} problems with the "
                f"training seed {spec.seed}: these are the problems the run trained on", file=sys.stderr,
            )


@torch.no_grad()
def evaluate_policy(policy, tokenizer, section: EvalSection, train_cfg, out: Path, benches: list[Benchmark],
                    amp=None, world: World | None = None) -> dict[str, Any]:
    """Held-out evaluation during training: the policy as it is now, with the HF backend, under
    its own seeds; the training RNG streams are left exactly where they were (exact resume holds
    with evaluation on). Returns results.json's mapping."""
    state = rng_state()
    was_training = policy.training
    # GRPO's completions are as long as its rollouts; other stages take the protocol's length
    max_new_tokens = train_cfg.rollout.max_new_tokens if hasattr(train_cfg, "rollout") else None
    try:
        policy.eval()
        protocol = make_protocol(section, tokenizer, train_cfg.seed, train_cfg.data, max_new_tokens)
        rollout = eval_rollout(protocol, policy, tokenizer, "hf", amp=amp)
        model = {"model": "policy", "model_path": str(out), "checkpoint": out.name}
        return evaluate_benchmarks(
            benches, rollout, tokenizer, protocol, out, model, "hf", section.batch_size,
            getattr(train_cfg, "reward_runtime", None), overwrite=False, progress=False, world=world,
        )
    finally:
        policy.train(was_training)
        set_rng_state(state)


def _saved_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for i, line in enumerate(path.read_text().splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as e:
            raise EvalError(f"{path}: line {i + 1} is not JSON ({e})") from None
        missing = [k for k in ("id", "answer", "completions") if k not in row]
        if missing or not isinstance(row.get("completions"), list):
            raise EvalError(
                f"{path}: line {i + 1} needs 'id', 'answer' and a list 'completions'; "
                f"{'missing ' + ', '.join(missing) if missing else 'completions is not a list'}"
            )
        row["id"] = str(row["id"])
        row.setdefault("task", "math")
        rows.append(row)
    if not rows:
        raise EvalError(f"{path}: no rows")
    return rows


def regrade(path: str | Path, output: str | Path | None = None, k: int | None = None,
            runtime=None) -> tuple[Path, dict[str, Any]]:
    """``r1kit eval --responses FILE``: grade saved completions again with this r1kit's grader.
    The dataset is named after the file (``gsm8k.problems.jsonl`` -> ``gsm8k``)."""
    from r1kit.data.loaders import plain_gold
    from r1kit.eval.benchmarks import file_sha256

    path = Path(path)
    if not path.is_file():
        raise EvalError(f"--responses: no file {path}")
    name = path.name.removesuffix(".jsonl").removesuffix(".problems")
    rows = _saved_rows(path)
    counts = sorted({len(r["completions"]) for r in rows})
    if k is None and len(counts) > 1:
        print(f"[r1kit] {path}: problems have {counts[0]} to {counts[-1]} completions; grading the first "
              f"k={counts[0]} of each (pass --k to insist on more)", file=sys.stderr)
    k = k or counts[0]
    short = next((r for r in rows if len(r["completions"]) < k), None)
    if short is not None:
        raise EvalError(f"{path}: problem {short['id']!r} has {len(short['completions'])} completions, fewer than k={k}")
    out = Path(output) if output else path.parent / "regraded"
    out.mkdir(parents=True, exist_ok=True)
    target = problems_path(out, name)
    if target.resolve() == path.resolve():
        raise EvalError(f"--output {out}: would overwrite the file being re-graded")
    problems = []
    for r in rows:
        gold = plain_gold(r["answer"])
        if gold is None:
            raise EvalError(f"{path}: problem {r['id']!r} has no gold answer ({r['answer']!r})")
        problems.append({**{c: v for c, v in r.items() if c not in ("completions", "pass@1", "majority_answer")},
                         "answer": gold})
    completions = [r["completions"][:k] for r in rows]
    graded, counts = grade([saved_group(p, c) for p, c in zip(problems, completions)], runtime)
    from r1kit.checkpoint import write_text_atomically

    lines = []
    for problem, samples, saved in zip(problems, graded, completions):
        saved_lengths(samples, saved)
        lines.append(json.dumps(_problem_row(problem, samples, k)) + "\n")
    write_text_atomically(target, "".join(lines))
    record = {"regraded_from": str(path), "regraded_sha256": file_sha256(str(path)), "k": k,
              "grader_version": grader_version()}
    results = {name: dataset_results([json.loads(x) for x in lines], k, record, counts)}
    write_results(out, results)
    return out, results


def reference_deltas(results: dict[str, Any], reference: dict[str, Any], trained: bool) -> list[str]:
    """Lines comparing pass@1 with a recipe's published numbers (``reference.after`` for a
    trained run, ``reference.before`` for the model it started from), in points."""
    side = "after" if trained else "before"
    published = (reference or {}).get(side) or {}
    lines = []
    for name, m in results.items():
        if name in published and published[name] is not None:
            ours = 100 * m["pass@1"]
            lines.append(f"{name}: pass@1 {ours:.1f} vs published {side} {published[name]:.1f} ({ours - published[name]:+.1f} points)")
    return lines


def print_summary(out: Path, results: dict[str, Any], reference: dict[str, Any] | None = None,
                  trained: bool = False) -> None:
    print(format_table(results))
    for line in reference_deltas(results, reference or {}, trained):
        print(f"[r1kit] {line}")
    print(f"[r1kit] results: {out / 'results.json'}")


def eval_metrics(results: dict[str, Any]) -> dict[str, float]:
    """``eval/<dataset>/<metric>`` columns of a metrics.jsonl row from results.json's mapping."""
    keys = ("pass@1", "pass@1_se", "format_rate", "length_mean", "clip_rate")
    row = {}
    for name, m in results.items():
        for key, value in m.items():
            if key in keys or key.startswith(("pass@", "maj@")):
                row[f"eval/{name}/{key}"] = value
    return row


def eval_row(policy, tokenizer, train_cfg, run_dir: Path, step: int, benches: list[Benchmark], amp=None,
             world: World | None = None) -> dict[str, float]:
    """A training run's held-out evaluation after ``step`` (its ``eval:`` section, into
    ``RUN/eval/step-N/``): the columns of that step's metrics row, ``time/eval`` included. Under
    several processes every process calls it, each holding the whole model, and generates its
    share of the problems (see :func:`run_dataset`)."""
    import time

    t0 = time.perf_counter()
    out = run_dir / "eval" / f"step-{step}"
    results = evaluate_policy(policy, tokenizer, train_cfg.eval, train_cfg, out, benches, amp, world)
    return {**eval_metrics(results), "time/eval": time.perf_counter() - t0}
