"""The GRPO training loop: each arrow of the algorithm box is one call.

    prompts -> rollout.generate -> rewards.score -> group_advantages -> make_batch -> learner.step
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from r1kit import rundir
from r1kit.checkpoint import (
    latest_checkpoint,
    load_policy_weights,
    load_trainer_state,
    rng_state,
    save_checkpoint,
    save_model_dir,
    set_rng_state,
)
from r1kit.config import GRPORun, load_config
from r1kit.diagnostics import HackingMonitor, step_diagnostics
from r1kit.grpo.advantages import group_advantages, zero_variance_groups
from r1kit.grpo.ahead import Generated, RolloutAhead, staleness
from r1kit.grpo.learner import Learner, make_batch
from r1kit.logging import RunLogger, plot_run, read_jsonl
from r1kit.distributed import (
    World, barrier, full_model_state, full_optimizer_state, full_params, gather_objects, init_world, is_sharded, is_zero3,
    load_whole_models_under_zero3, prompt_seed, shard_bounds, zero_stage,
)
from r1kit.rewards import Scores, TrainerState, score_groups
from r1kit.rewards.format import is_well_formed
from r1kit.rollout.weights import hf_weights
from r1kit.rundir import (  # noqa: F401 - PAUSE_ENV, STATE_FILE, TrainingError: part of this module's API
    PAUSE_ENV,
    STATE_FILE,
    TrainingError,
    check_run_dir,
    new_run_dir,
    pause_for_tests,
    resumed_run_dir,
    write_state,
)
from r1kit.eval.runner import eval_metrics, eval_row  # noqa: F401 - eval_metrics: this module's API
from r1kit.setup import build_parts
from r1kit.types import Group


@dataclass
class StepResult:
    groups: list[Group]
    rewards: torch.Tensor  # [B*G] total
    per_reward: dict[str, list[float]]
    errors: int  # reward entries that crashed or were not finite (scored 0)
    timeouts: int  # reward entries cut off by a deadline (scored 0)
    zero_var_frac: float
    resample_rounds: int
    dropped_groups: int
    tokens_generated: int  # over every generation round, dropped groups included
    # what rewards logged through TRL's log_metric: name -> mean over this step's scoring calls
    logged: dict[str, float] = field(default_factory=dict)
    gather_s: float = 0.0  # several processes: seconds spent exchanging the scored groups


def _scored_rewards(cfg: GRPORun) -> dict[str, float]:
    """The trained rewards' weights, plus weight 0 for each diagnostic reward not trained on:
    scored in the same call, for the metrics only (the total is unchanged)."""
    weights = dict(cfg.reward_weights)
    for name in cfg.train.diagnostic_rewards:
        weights.setdefault(name, 0.0)
    return weights


def informative_groups(
    groups_P: list[Group], totals_N: list[float], per_reward: dict[str, list[float]], G: int, want: int
) -> tuple[list[Group], list[float], dict[str, list[float]], int]:
    """DAPO's dynamic-sampling filter: the first ``want`` groups whose G rewards are not all equal
    (an all-equal group has zero advantage: no signal), with their totals and per-reward columns,
    and the number of groups dropped as all-equal."""
    flat_P = zero_variance_groups(torch.tensor(totals_N, dtype=torch.float32), G).tolist()
    kept = [i for i, flat in enumerate(flat_P) if not flat][:want]
    rows = [r for i in kept for r in range(i * G, (i + 1) * G)]
    columns = {k: [v[r] for r in rows] for k, v in per_reward.items()}
    return [groups_P[i] for i in kept], [totals_N[r] for r in rows], columns, sum(flat_P)


def _mean_logged(logged: list[dict[str, float]]) -> dict[str, float]:
    """TRL's semantics: per scoring call the mean of what was logged, per step the mean over calls."""
    names = dict.fromkeys(k for part in logged for k in part)
    return {k: sum(p[k] for p in logged if k in p) / sum(k in p for p in logged) for k in names}


def per_prompt_seeding(cfg: GRPORun, world: World) -> bool:
    """``rollout.seeding``: per-prompt seeds (``auto``: whenever several processes share a step)."""
    return cfg.rollout.seeding == "per_prompt" or (cfg.rollout.seeding == "auto" and world.distributed)


def _gather_scored(groups_P: list[Group], scores: Scores, world: World) -> tuple[list[Group], Scores]:
    """Every process's groups and scores, in prompt order (one process: unchanged)."""
    if not world.distributed:
        return groups_P, scores
    parts = gather_objects((groups_P, scores), world)
    per_reward = {k: [v for _, sc in parts for v in sc.per_reward[k]] for k in scores.per_reward}

    def summed(attr: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, sc in parts:
            for k, v in getattr(sc, attr).items():
                out[k] = out.get(k, 0) + v
        return out

    merged = Scores(
        total=[t for _, sc in parts for t in sc.total], per_reward=per_reward,
        errors=summed("errors"), skipped=summed("skipped"), timeouts=summed("timeouts"),
        logged=_mean_logged([sc.logged for _, sc in parts if sc.total]),
    )
    return [g for gs, _ in parts for g in gs], merged


def rollout_and_score(
    cfg: GRPORun, source, rollout, trainer_state=None, world: World | None = None, step: int = 0,
) -> StepResult:
    """Generate G completions per prompt and score them; with dynamic sampling, groups whose
    rewards are all equal are dropped and refilled from new prompts (bounded rounds).

    Under several processes every process draws the same prompts, generates and scores its own
    contiguous share, and receives everyone's: what follows sees the whole step on each process."""
    world = world or World()
    G, want = cfg.rollout.group_size, cfg.train.prompts_per_step
    weights = _scored_rewards(cfg)
    seeded = per_prompt_seeding(cfg, world)
    gather_s = 0.0

    def generate_and_score(n: int, round_: int):
        nonlocal gather_s
        samples_P = source.next_batch(n)
        lo, hi = shard_bounds(n, world)
        seeds = [prompt_seed(cfg.seed, step, round_, i) for i in range(lo, hi)] if seeded else None
        # called with no prompts too (more processes than prompts in a refill round): under FSDP2
        # generation starts by gathering the weights, with every process
        groups_P = rollout.generate(samples_P[lo:hi], seeds)
        scores = Scores([], {k: [] for k in weights}, {}, {})
        if groups_P:
            scores = score_groups(groups_P, weights, cfg.reward_options, cfg.reward_runtime, trainer_state)
        t0 = time.perf_counter()
        gathered = _gather_scored(groups_P, scores, world)
        gather_s += time.perf_counter() - t0
        return gathered

    groups, scores = generate_and_score(want, 0)
    rewards = torch.tensor(scores.total, dtype=torch.float32)
    zero_var_frac = float(zero_variance_groups(rewards, G).float().mean())
    calls = [(groups, scores)]
    rounds = dropped = 0
    if cfg.grpo.dynamic_sampling:
        kept, totals, columns, dropped = informative_groups(groups, scores.total, scores.per_reward, G, want)
        while len(kept) < want and rounds < cfg.grpo.max_resample_rounds:
            rounds += 1
            more, sc = generate_and_score(want - len(kept), rounds)
            calls.append((more, sc))
            new, new_totals, new_columns, new_dropped = informative_groups(more, sc.total, sc.per_reward, G, want - len(kept))
            kept, totals, dropped = kept + new, totals + new_totals, dropped + new_dropped
            columns = {k: columns[k] + new_columns[k] for k in columns}
        if kept:  # else every group was flat: train on them (zero advantage, only KL acts)
            groups, rewards, scores.per_reward = kept, torch.tensor(totals, dtype=torch.float32), columns
    return StepResult(
        groups, rewards, scores.per_reward,
        errors=sum(sum(sc.errors.values()) for _, sc in calls),
        timeouts=sum(sum(sc.timeouts.values()) for _, sc in calls),
        zero_var_frac=zero_var_frac, resample_rounds=rounds, dropped_groups=dropped,
        tokens_generated=sum(len(c) for gs, _ in calls for g in gs for c in g.completion_ids),
        logged=_mean_logged([sc.logged for _, sc in calls]), gather_s=gather_s,
    )


def _step_metrics(
    step: int, res: StepResult, stats: dict[str, float], times: dict[str, float], monitor: HackingMonitor,
) -> tuple[dict[str, Any], list[str]]:
    """One metrics.jsonl row, and the reward-hacking warnings that start at this step."""
    lengths = [len(c) for g in res.groups for c in g.completion_ids]
    truncated = [t for g in res.groups for t in g.truncated]
    responses = [r for g in res.groups for r in g.responses]
    row: dict[str, Any] = {
        "step": step,
        "reward/mean": float(res.rewards.mean()),
        "reward/std": float(res.rewards.std(unbiased=False)),
    }
    for name, vals in res.per_reward.items():
        t = torch.tensor(vals, dtype=torch.float32)
        row[f"rewards/{name}/mean"] = float(t.mean())
        row[f"rewards/{name}/std"] = float(t.std(unbiased=False))
    well_formed = [is_well_formed(r) for r in responses]
    row["format_rate"] = sum(well_formed) / len(well_formed)
    acc = res.per_reward.get("accuracy")  # trained on, or scored for the metrics (train.diagnostic_rewards)
    if acc is not None:
        row["accuracy"] = sum(acc) / len(acc)
        row.update(step_diagnostics([a >= 1.0 for a in acc], well_formed))
    row["completion_length/mean"] = sum(lengths) / len(lengths)
    row["completion_length/max"] = max(lengths)
    row["truncated_frac"] = sum(truncated) / len(truncated)
    row["zero_variance_frac"] = res.zero_var_frac
    row["reward/errors"] = res.errors
    row["reward/timeouts"] = res.timeouts
    row["dynamic_sampling/rounds"] = res.resample_rounds
    row["dynamic_sampling/dropped_groups"] = res.dropped_groups
    row.update(stats)
    row["tokens_generated"] = res.tokens_generated
    stale_N = [staleness(step, g.policy_version) for g in res.groups for _ in g.completion_ids]
    row["sampling/staleness/mean"] = sum(stale_N) / len(stale_N)
    row["sampling/staleness/max"] = max(stale_N)
    drift, warnings = monitor.update(row.get("accuracy", 0.0), row["format_rate"], row["completion_length/mean"])
    row.update(drift)
    for k, v in times.items():
        row[f"time/{k}"] = v
    row.update({k: v for k, v in res.logged.items() if k not in row})  # r1kit's own keys win
    return row, warnings


def _sample_rows(step: int, res: StepResult, adv: torch.Tensor, log_all: bool) -> list[dict[str, Any]]:
    """Every completion of the step (``log_all``), else its highest- and lowest-reward ones."""
    flat = [(g, j) for g in res.groups for j in range(len(g.completions))]
    if log_all:
        picked = [(i, "all") for i in range(len(flat))]
    else:
        best = int(torch.argmax(res.rewards))  # first of the maxima: deterministic
        worst = int(torch.argmin(res.rewards))
        picked = [(best, "highest"), (worst, "lowest")]
    rows = []
    for i, kind in picked:
        g, j = flat[i]
        rows.append(
            {
                "step": step,
                "kind": kind,
                "prompt": g.sample.prompt,
                "completion": g.responses[j],
                "reward": float(res.rewards[i]),
                **{f"reward/{k}": v[i] for k, v in res.per_reward.items()},
                "advantage": float(adv[i]),
                "truncated": g.truncated[j],
                "completion_tokens": len(g.completion_ids[j]),
            }
        )
    return rows


def _read_checkpoint(cfg: GRPORun, policy, world: World) -> dict[str, Any]:
    """The last complete checkpoint of ``cfg.output_dir``: its trainer state, with its weights
    loaded into the (not yet sharded) policy. Only reads: a checkpoint that does not fit the
    config fails here, before the run directory's records are rewritten."""
    run_dir = Path(cfg.output_dir)
    check_run_dir(run_dir, resume=True, stage="grpo")
    ckpt = latest_checkpoint(run_dir)
    state = load_trainer_state(ckpt)
    if int(state["step"]) > cfg.train.max_steps:
        raise TrainingError(
            f"cannot resume {run_dir}: its checkpoint is at step {state['step']}, "
            f"past train.max_steps={cfg.train.max_steps}"
        )
    try:
        load_policy_weights(policy, ckpt)
    except (ValueError, KeyError, RuntimeError) as e:
        raise TrainingError(f"cannot resume from {ckpt}: it does not match the config ({e})") from e
    state["path"] = ckpt
    return state


def _restore(state: dict[str, Any], learner: Learner, source, ahead: RolloutAhead, world: World) -> None:
    """The rest of a checkpoint into the live objects: optimizer, schedule, data cursor, RNG, and
    the batches generated ahead of the learner (``rollout.async_steps``)."""
    ckpt = state["path"]
    saved_k, pending = state.get("async_steps", 0), state.get("generated_ahead", {})
    if pending and saved_k != ahead.ahead:
        raise TrainingError(
            f"cannot resume from {ckpt}: it was saved with rollout.async_steps={saved_k}, the config has "
            f"{ahead.ahead} (its data cursor is past the batches generated ahead; keep rollout.async_steps={saved_k})"
        )
    ahead.restore(pending)
    try:
        learner.load_state(state["optimizer"], state["scheduler"])
    except (ValueError, KeyError, RuntimeError) as e:
        raise TrainingError(f"cannot resume from {ckpt}: it does not match the config ({e})") from e
    source.load_state_dict(state["data"])
    per_rank = state.get("rng_per_rank") or [state["rng"]]
    if len(per_rank) != world.size and world.is_main:
        print(f"[r1kit] note: {ckpt} was saved by {len(per_rank)} process(es), this run has {world.size}: "
              "processes without a saved RNG state take process 0's", file=sys.stderr)
    set_rng_state(per_rank[world.rank] if world.rank < len(per_rank) else per_rank[0])


def _save_model(target: Path, policy, tokenizer, world: World) -> None:
    """``final/`` by process 0; under FSDP2 and ZeRO-3 from the state dict every process helps gather."""
    model_state = full_model_state(policy, world)
    if world.is_main:
        save_model_dir(target, policy, tokenizer, state_dict=model_state)


def _maybe_checkpoint(
    cfg: GRPORun, run_dir: Path, step: int, parts, learner: Learner, ahead: RolloutAhead, world: World,
) -> str | None:
    """Save ``checkpoints/step-N`` every ``save_every`` steps and at the last step (so `--resume`
    with more steps continues from it); the path, or None when this step saves nothing.
    Process 0 writes it, with every process's RNG state and the batches generated ahead (the data
    cursor is past them); the rest is the same on all of them."""
    t = cfg.train
    if not t.save_every or (step % t.save_every and step != t.max_steps):
        return None
    rngs = gather_objects(rng_state(), world)
    model_state, optim_state = full_model_state(parts.policy, world), None
    if world.engine == "deepspeed":  # ZeRO: each process's partition of the optimizer state, in rank order
        optim_state = {"zero_partitions": gather_objects(learner.optimizer.state_dict(), world)}
    elif is_sharded(parts.policy):  # FSDP2: gathered whole on process 0, one tensor at a time
        optim_state = full_optimizer_state(parts.policy, learner.optimizer)
    path = run_dir / "checkpoints" / f"step-{step}"
    if world.is_main:
        path = save_checkpoint(
            run_dir, step, parts.policy, parts.tokenizer, learner.optimizer, learner.scheduler,
            parts.source.state_dict(), t.keep_last, rng_per_rank=rngs if world.distributed else None,
            model_state=model_state, optimizer_state=optim_state,
            extra={"async_steps": cfg.rollout.async_steps, "generated_ahead": ahead.pending()},
        )
    barrier(world)
    return str(path)


def sync_rollout(rollout, policy, world: World) -> None:
    """Send the learner's weights to the generator: to each process's own engine, or once (by
    process 0) to a server every process shares."""
    shared = getattr(rollout, "shared_by_processes", False)
    if is_zero3(policy):  # gathered whole on every process for the sync, then partitioned again
        with full_params(policy):
            if world.is_main or not shared:
                rollout.sync_weights(policy)
    elif shared and is_sharded(policy):  # FSDP2: every process helps gather, process 0 sends
        weights = hf_weights(policy)
        if world.is_main:
            rollout.sync_weights(policy, weights)
    elif world.is_main or not shared:
        rollout.sync_weights(policy)
    barrier(world)


def rollout_ahead(cfg: GRPORun, parts, world: World) -> RolloutAhead:
    """Step j's generated and scored batch, ``rollout.async_steps`` steps ahead of the learner
    (0: when the step needs it), each group tagged with the policy version it was generated with."""

    def produce(step: int, version: int) -> StepResult:
        res = rollout_and_score(
            cfg, parts.source, parts.rollout, TrainerState(step - 1, cfg.train.max_steps), world, step,
        )
        for g in res.groups:
            g.policy_version = version
        return res

    return RolloutAhead(produce, cfg.rollout.async_steps, cfg.train.max_steps)


def _run_step(
    cfg: GRPORun, step: int, parts, learner: Learner, ahead: RolloutAhead, monitor: HackingMonitor,
    last_ckpt: str | None, world: World,
):
    """One GRPO step: rollout and scoring (or its batch generated ahead), group advantages, one
    learner update, weight sync. Returns the step's metrics row, its warnings, the scored groups
    and their advantages."""
    t0 = time.perf_counter()
    gen: Generated = ahead.take(step)
    res, waited = gen.result, ahead.wait_s
    t1 = time.perf_counter()
    adv = group_advantages(res.rewards, cfg.rollout.group_size, cfg.grpo.scale)
    batch = make_batch(res.groups, adv, parts.tokenizer.pad_token_id, cfg.grpo.mask_truncated)
    t2 = time.perf_counter()
    try:
        stats = learner.step(batch)
    except FloatingPointError as e:
        raise TrainingError(f"step {step}: {e}; last good checkpoint: {last_ckpt or 'none'}") from e
    t3 = time.perf_counter()
    ahead.settle()  # the engine's weights change only between generations
    t_sync = time.perf_counter()
    sync_rollout(parts.rollout, parts.policy, world)
    t4 = time.perf_counter()
    times = {"rollout_and_score": gen.seconds, "batch": t2 - t1, "learner": t3 - t2, "step": t4 - t0}
    if cfg.rollout.async_steps:  # the learner's seconds spent waiting for generation
        times["rollout_wait"] = waited + (t_sync - t3)
    if not parts.rollout.shares_weights:
        times["weight_sync"] = t4 - t_sync
    if world.distributed:  # communication: the groups exchanged, the gradients averaged (overlapping backward)
        times["gather_groups"] = res.gather_s
        times["grad_allreduce"] = learner.last_allreduce_s
    row, warnings = _step_metrics(step, res, stats, times, monitor)
    return row, warnings, res, adv


def _eval_due(cfg: GRPORun, step: int) -> bool:
    every = cfg.eval.every
    return bool(cfg.eval.datasets) and (step == cfg.train.max_steps or (every > 0 and step % every == 0))


def _run_eval(cfg: GRPORun, step: int, parts, run_dir: Path, benches, world: World) -> dict[str, float]:
    return eval_row(parts.policy, parts.tokenizer, cfg, run_dir, step, benches, parts.amp, world)


def check_world(cfg: GRPORun, world: World) -> None:
    """Each process gets whole groups, as many as the others: refused before any work otherwise."""
    P, n = cfg.train.prompts_per_step, world.size
    if cfg.rollout.async_steps and world.distributed:
        raise TrainingError(
            f"rollout.async_steps={cfg.rollout.async_steps} runs on one process only ({n} processes here): "
            "the generation thread's exchanges would interleave with the learner's"
        )
    if n > P:
        raise TrainingError(f"{n} processes but train.prompts_per_step={P}: each process needs at least one prompt")
    if P % n:
        raise TrainingError(
            f"train.prompts_per_step={P} does not split into whole groups over {n} processes "
            f"(use a multiple of {n}, e.g. {P + n - P % n})"
        )


class _Records:
    """The run directory's live records -- run_state.json, metrics, samples, the progress bar --
    kept by process 0 only; on the other processes every call does nothing."""

    def __init__(self, cfg: GRPORun, run_dir: Path, start: int, world: World):
        self.run_dir, self.on = run_dir, world.is_main
        self.logger = self.bar = None
        if not self.on:
            return
        self.logger = RunLogger(run_dir, cfg.train.tensorboard)
        if cfg.train.progress:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=cfg.train.max_steps, initial=start, desc="grpo", unit="step", dynamic_ncols=True)

    def state(self, **fields: Any) -> None:
        if self.on:
            write_state(self.run_dir, **fields)

    def step(self, step: int, row: dict[str, Any], warnings: list[str], samples: list[dict] | None,
             evaluated: dict[str, float]) -> None:
        if not self.on:
            return
        self.logger.log_metrics(row)
        for w in warnings:
            msg = f"[r1kit] step {step}: warning: {w}"
            self.bar.write(msg, file=sys.stderr) if self.bar is not None else print(msg, file=sys.stderr)
        if samples:
            self.logger.log_samples(samples)
        if self.bar is not None:
            self.bar.set_postfix(
                reward=f"{row['reward/mean']:.3f}", acc=f"{row.get('accuracy', float('nan')):.2f}",
                **{f"eval_{name}": f"{v:.2f}" for name, v in evaluated.items()}, s_step=f"{row['time/step']:.1f}",
            )
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if self.logger is not None:
            self.logger.close()
            self.logger = None


def _open_run_dir(cfg: GRPORun, state: dict | None, world: World) -> Path:
    """Process 0 makes the run directory ready (new, or resumed after the checkpoint's step)."""
    if world.is_main:
        resumed_run_dir(cfg, int(state["step"])) if state else new_run_dir(cfg, "grpo")
    barrier(world)
    return Path(cfg.output_dir)


def train(cfg: GRPORun, resume: bool = False) -> Path:
    """Run GRPO as configured; returns the run directory. Under ``accelerate launch`` with
    several processes, each trains on its share of every step (see :mod:`r1kit.distributed`)."""
    from r1kit.eval.benchmarks import load_benchmark

    # Everything that can fail on bad input happens before the run directory is touched,
    # the cheap checks of the run directory itself first.
    world = init_world()
    check_world(cfg, world)
    if zero_stage(world) == 3:
        load_whole_models_under_zero3()
    if world.distributed and world.is_main:
        print(f"[r1kit] grpo on {world.size} processes, engine {world.engine}", file=sys.stderr)
    check_run_dir(Path(cfg.output_dir), resume, "grpo")
    barrier(world)  # every process has checked before process 0 writes
    benches = [load_benchmark(spec, cfg.eval.limit, cfg.data) for spec in cfg.eval.datasets]
    parts = build_parts(cfg, need_ref=cfg.grpo.beta != 0.0)
    policy, tokenizer, rollout = parts.policy, parts.tokenizer, parts.rollout
    state = _read_checkpoint(cfg, policy, world) if resume else None  # weights in before any sharding
    learner = Learner(
        policy, parts.ref, cfg.grpo, cfg.train, cfg.rollout.max_new_tokens, cfg.rollout.temperature, parts.amp, world,
    )
    ahead = rollout_ahead(cfg, parts, world)
    if state is not None:
        _restore(state, learner, parts.source, ahead, world)
    if state is not None or rollout.needs_initial_sync:
        # the engine holds what it loaded (or whatever a server last received): start in step
        sync_rollout(rollout, policy, world)
    start = int(state["step"]) if state else 0
    run_dir = _open_run_dir(cfg, state, world)
    last_ckpt = str(state["path"]) if state else None
    records = None
    done = start  # last completed step
    monitor = HackingMonitor()
    evaluated: dict[str, float] = {}  # the last eval pass@1 per dataset, for the progress bar
    monitor.replay(read_jsonl(run_dir / "metrics.jsonl"))  # resumed runs keep their baseline
    try:
        records = _Records(cfg, run_dir, start, world)
        records.state(status="running", step=start, last_checkpoint=last_ckpt)
        for step in range(start + 1, cfg.train.max_steps + 1):
            row, warnings, res, adv = _run_step(cfg, step, parts, learner, ahead, monitor, last_ckpt, world)
            if _eval_due(cfg, step):
                with full_params(policy):  # FSDP2 / ZeRO-3: whole on every process; each evaluates its share
                    row.update(_run_eval(cfg, step, parts, run_dir, benches, world))
                    evaluated = {k.split("/")[1]: v for k, v in row.items() if k.endswith("/pass@1") and k.startswith("eval/")}
            logged = cfg.train.samples_every and step % cfg.train.samples_every == 0
            records.step(step, row, warnings, _sample_rows(step, res, adv, cfg.train.log_all_samples) if logged else None,
                         evaluated)
            done = step
            saved = _maybe_checkpoint(cfg, run_dir, step, parts, learner, ahead, world)
            if saved:
                last_ckpt = saved
                if world.is_main:
                    pause_for_tests(step)
            records.state(status="running", step=step, last_checkpoint=last_ckpt)
        records.close()
        final = run_dir / "final"
        if world.is_main and read_jsonl(run_dir / "metrics.jsonl"):
            plot_run(run_dir)
        _save_model(final, policy, tokenizer, world)
        barrier(world)
    except BaseException as e:
        error = f"{type(e).__name__}: {e}"[:2000]
        if world.is_main:
            write_state(run_dir, status="failed", step=done, last_checkpoint=last_ckpt, error=error)
        raise
    finally:
        ahead.close()
        if records is not None:
            records.close()
    records.state(status="completed", step=cfg.train.max_steps, last_checkpoint=last_ckpt, final=str(final))
    return run_dir


def resume_config(run_dir: str | Path, overrides: list[str] | None = None) -> GRPORun:
    return rundir.resume_config(run_dir, "grpo", overrides)


def summarize(run_dir: str | Path) -> str:
    rows = read_jsonl(Path(run_dir) / "metrics.jsonl")
    if not rows:
        return "no metrics"
    k = max(1, math.ceil(len(rows) / 10))
    first = sum(r["reward/mean"] for r in rows[:k]) / k
    last = sum(r["reward/mean"] for r in rows[-k:]) / k
    secs = sum(r.get("time/step", 0.0) for r in rows)
    return (
        f"{len(rows)} steps in {secs / 60:.1f} min; mean reward first {k} steps {first:.3f} -> "
        f"last {k} steps {last:.3f} (change {last - first:+.3f})"
    )


if __name__ == "__main__":  # pragma: no cover - `python -m r1kit.grpo.train CONFIG [k=v ...]`
    train(load_config(sys.argv[1], sys.argv[2:]))
