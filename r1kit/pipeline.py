"""``r1kit pipeline CONFIG``: the R1 recipe in one resumable command.

Stages run in the order the config lists them, each in ``RUN/<name>/`` with its own stage
config; a stage's model is the latest model before it (``final/`` of the last training stage;
the pipeline's ``model`` at first, its ``student`` for ``distill``) and its data the latest data
(worked examples, traces, kept traces, pairs), unless it names its own (``model_from``,
``data_from``, or the path in its config). Kinds:

    worked_examples  procedural arithmetic problems with worked solutions (problem, reasoning, answer)
    sft | grpo | dpo | distill   the training stages (their own configs; output RUN/<name>/final)
    generate         k traces per prompt from the current model (RUN/<name>/traces.jsonl)
    filter | pairs   rejection sampling / preference pairs of the latest traces

Every stage config is built and checked before the first stage runs. A finished stage leaves
``RUN/<name>/stage.done.json`` (its outputs, wall time, evaluation and a digest of its config) and
is not run again; a killed training stage resumes from its last checkpoint, a killed generation
from its last finished prompt. ``--from NAME`` runs that stage and all after it again. A stage
that fails stops the pipeline with its name; the stages before it keep their outputs.
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from r1kit.checkpoint import latest_checkpoint, write_text_atomically
from r1kit.config import ConfigError, config_from_dict, save_config, to_dict
from r1kit.config.pipeline import PipelineRun, PipelineStage

KINDS = ("worked_examples", "sft", "grpo", "generate", "filter", "pairs", "dpo", "distill")
TRAINING = {"sft": "r1kit.sft.train", "grpo": "r1kit.grpo.train", "dpo": "r1kit.sft.dpo", "distill": "r1kit.distill.student"}
NEEDS_DATA = ("sft", "dpo", "distill", "filter", "pairs")
MARKER = "stage.done.json"


class PipelineError(RuntimeError):
    """A pipeline stage failed or cannot run; the message names the stage."""


@dataclass
class Step:
    """One stage, resolved: where it runs, what it reads, its checked config, what it writes."""

    stage: PipelineStage
    dir: Path
    model_in: str | None
    data_in: str | None
    cfg: Any = None  # the stage's root config (training stages, generate)
    options: dict[str, Any] = field(default_factory=dict)  # worked_examples, filter, pairs
    model_out: str | None = None
    data_out: str | None = None

    @property
    def digest(self) -> str:
        what = {"kind": self.stage.kind, "config": to_dict(self.cfg) if self.cfg is not None else self.options,
                "model_in": self.model_in, "data_in": self.data_in}
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _set_default(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    *parents, last = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node.setdefault(last, value)


def resolve(cfg: PipelineRun) -> list[Step]:
    """Every stage's inputs, outputs and checked config, before anything runs."""
    out = Path(cfg.output_dir)
    steps: list[Step] = []
    by_name: dict[str, Step] = {}
    model, data = cfg.model, None
    for i, s in enumerate(cfg.stages):
        where = f"stages[{i}] ({s.name})"
        model_in = by_name[s.model_from].model_out if s.model_from else (cfg.student or cfg.model) if s.kind == "distill" else model
        data_in = by_name[s.data_from].data_out if s.data_from else data
        step = Step(s, out / s.name, model_in, data_in)
        tree = copy.deepcopy(s.config)
        try:
            _configure(step, tree, cfg)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None
        by_name[s.name] = step
        if s.skip:
            continue
        steps.append(step)
        model = step.model_out or model
        data = step.data_out or data
    return steps


def _configure(step: Step, tree: dict[str, Any], cfg: PipelineRun) -> None:
    kind, d = step.stage.kind, step.dir
    needs_data = kind in NEEDS_DATA and not (kind in TRAINING and (tree.get("data") or {}).get("path"))
    if needs_data and step.data_in is None:
        raise ConfigError(f"a {kind} stage needs data: put a worked_examples, generate, filter or pairs stage "
                          "before it, or give its own data path")
    if kind in TRAINING:
        tree.update(stage=kind, output_dir=str(d))
        tree.setdefault("seed", cfg.seed)
        _set_default(tree, "model.name_or_path", step.model_in)
        if kind != "grpo":
            _set_default(tree, "data.path", step.data_in)
        step.cfg = config_from_dict(tree)
        step.model_out = str(d / "final")
    elif kind == "generate":
        tree.update(stage="generate", output=str(d / "traces.jsonl"))
        tree.setdefault("seed", cfg.seed)
        _set_default(tree, "teacher.model.name_or_path", step.model_in)
        step.cfg = config_from_dict(tree)
        step.data_out = step.cfg.output
    elif kind == "filter":
        from r1kit.distill.filter import FilterSettings
        from r1kit.distill.traces import DistillError

        try:
            FilterSettings(**tree)
        except (TypeError, DistillError) as e:
            raise ConfigError(f"config: {e}") from None
        step.options, step.data_out = tree, str(d / "kept.jsonl")
    elif kind == "pairs":
        unknown = sorted(set(tree) - {"max_pairs_per_prompt"})
        if unknown:
            raise ConfigError(f"config: unknown key '{unknown[0]}' (pairs takes max_pairs_per_prompt)")
        step.options, step.data_out = tree, str(d / "pairs.jsonl")
    elif kind == "worked_examples":
        unknown = sorted(set(tree) - {"num_problems", "seed", "arithmetic"})
        if unknown:
            raise ConfigError(f"config: unknown key '{unknown[0]}' (worked_examples takes num_problems, seed, arithmetic)")
        step.options = {"num_problems": 64, "seed": cfg.seed, "arithmetic": {}, **tree}
        step.data_out = str(d / "traces.jsonl")


def worked_examples(path: Path, num_problems: int, seed: int, arithmetic: dict[str, Any]) -> int:
    """Cold-start data made here, not copied: arithmetic problems with their worked solution
    (``problem``, ``reasoning``: "3 + 5 * 2 = 13", ``answer``), written atomically."""
    from r1kit.config import EvalDatasetSpec
    from r1kit.distill.traces import write_jsonl_atomically
    from r1kit.eval.benchmarks import load_benchmark

    spec = EvalDatasetSpec(name="arithmetic", seed=seed, num_problems=num_problems, arithmetic=arithmetic)
    rows = []
    for p in load_benchmark(spec).problems:
        expr = p["question"].removeprefix("What is ").removesuffix("?")
        rows.append({"id": p["id"], "problem": p["question"], "reasoning": f"{expr} = {p['answer']}", "answer": p["answer"]})
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_jsonl_atomically(path, rows)


def run_step(step: Step, progress: bool) -> None:
    kind = step.stage.kind
    if kind in TRAINING:
        import importlib

        module = importlib.import_module(TRAINING[kind])
        resume = latest_checkpoint(step.dir) is not None
        if step.dir.exists() and not resume:
            shutil.rmtree(step.dir)  # killed before its first checkpoint: nothing to resume
        module.train(step.cfg, resume=resume)
    elif kind == "generate":
        from r1kit.distill.generate import generate

        step.cfg.progress = step.cfg.progress and progress
        generate(step.cfg)
    elif kind == "filter":
        from r1kit.distill.filter import FilterSettings, filter_traces

        filter_traces(step.data_in, step.data_out, FilterSettings(**step.options), progress=progress)
    elif kind == "pairs":
        from r1kit.distill.pairs import pair_traces

        pair_traces(step.data_in, step.data_out, progress=progress, **step.options)
    else:
        worked_examples(Path(step.data_out), **step.options)


def evaluate_model(cfg: PipelineRun, model: str, out: Path) -> dict[str, float]:
    """pass@1 per dataset of ``model`` under the pipeline's ``eval:`` section (resumable)."""
    from r1kit.eval.runner import evaluate

    section = {k: v for k, v in to_dict(cfg.eval).items() if k != "start"}
    tree = {"stage": "eval", "seed": cfg.seed, "model": {"name_or_path": model}, "output_dir": str(out),
            "eval": section, "progress": False}
    _, results, _ = evaluate(config_from_dict(tree))
    return {name: m["pass@1"] for name, m in results.items()}


def _stage_outputs(step: Step) -> dict[str, Any]:
    return {"model": step.model_out, "data": step.data_out}


def run(cfg: PipelineRun, from_stage: str | None = None, progress: bool = True) -> tuple[Path, list[dict[str, Any]]]:
    """Run (or finish) the pipeline; returns its directory and the summary rows."""
    steps = resolve(cfg)
    names = [s.stage.name for s in steps]
    if from_stage is not None and from_stage not in names:
        raise PipelineError(f"--from {from_stage}: not a stage of this pipeline (stages: {', '.join(names)})")
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "config.yaml")
    if from_stage is not None:
        for step in steps[names.index(from_stage) :]:
            shutil.rmtree(step.dir, ignore_errors=True)
    rows = []
    if cfg.eval.datasets and cfg.eval.start:
        rows.append({"stage": "start", "kind": "model", "model": cfg.model, "seconds": None,
                     "eval": evaluate_model(cfg, cfg.model, out / "start" / "eval")})
    for step in steps:
        name, kind = step.stage.name, step.stage.kind
        marker = step.dir / MARKER
        if marker.is_file():
            done = json.loads(marker.read_text())
            if done.get("digest") != step.digest:
                raise PipelineError(f"stage '{name}' finished with another config (or other inputs); "
                                    f"rerun it and the stages after it with --from {name}")
            rows.append(done["summary"])
            continue
        _say(f"stage {name} ({kind})", progress)
        t0 = time.perf_counter()
        try:
            run_step(step, progress)
            scores = evaluate_model(cfg, step.model_out, step.dir / "eval") if step.model_out and cfg.eval.datasets else {}
        except Exception as e:
            raise PipelineError(f"pipeline stage '{name}' ({kind}) failed: {type(e).__name__}: {e}") from e
        row = {"stage": name, "kind": kind, "model": step.model_out, "data": step.data_out,
               "seconds": round(time.perf_counter() - t0, 1), "eval": scores}
        write_text_atomically(marker, json.dumps({"digest": step.digest, "outputs": _stage_outputs(step), "summary": row},
                                                 indent=1) + "\n")
        rows.append(row)
    write_text_atomically(out / "summary.json", json.dumps(rows, indent=1) + "\n")
    return out, rows


def _say(msg: str, progress: bool) -> None:
    if progress:
        print(f"[r1kit] pipeline: {msg}", file=sys.stderr, flush=True)


def format_summary(rows: list[dict[str, Any]]) -> str:
    """The end-of-pipeline table: per stage, its kind, output, wall time and eval pass@1."""
    datasets = list(dict.fromkeys(k for r in rows for k in r.get("eval", {})))
    head = ["stage", "kind", "output", "seconds", *(f"{d} pass@1" for d in datasets)]
    table = [head]
    for r in rows:
        output = r.get("model") or r.get("data") or ""
        secs = "" if r.get("seconds") is None else f"{r['seconds']:.0f}"
        table.append([r["stage"], r["kind"], output, secs,
                      *(f"{100 * r['eval'][d]:.1f}" if d in r.get("eval", {}) else "" for d in datasets)])
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
