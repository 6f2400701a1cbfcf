"""Several processes (``accelerate launch``): who this process is, which prompts are its own, and
the few collectives the GRPO loop needs. accelerate owns the process group and the engine (DDP,
FSDP2, DeepSpeed) that reduces gradients; nothing here touches a gradient.

One process -- plain ``r1kit grpo`` -- is the world of size 1: every function is then the
identity and no process group exists.

Sharding keeps each prompt's G completions on one process (advantages need the whole group):
process r owns a contiguous slice of the step's prompts, so N processes x P/N prompts hold the
same rows, in the same order, as 1 process x P prompts.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, Sequence

import torch


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    accelerator: Any = None  # accelerate.Accelerator when size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def engine(self) -> str:
        """``ddp`` | ``fsdp`` | ``deepspeed`` | ``none`` (one process)."""
        if not self.distributed:
            return "none"
        kind = str(self.accelerator.distributed_type).rsplit(".", 1)[-1]
        return {"FSDP": "fsdp", "DEEPSPEED": "deepspeed"}.get(kind, "ddp")


def launched_world_size() -> int:
    """Processes the launcher started (``WORLD_SIZE``, set by ``accelerate launch`` / torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_world(engine: bool = True) -> World:
    """The world this process runs in; under ``accelerate launch`` with N > 1 processes this
    joins the process group (gloo on CPU, NCCL on GPUs). ``engine``: also create the Accelerator
    that prepares models (GRPO); the stages on TRL's trainers let those create theirs, and only
    need the shared process state."""
    if launched_world_size() <= 1:
        return World()
    from accelerate import Accelerator, PartialState

    cpu = not torch.cuda.is_available()
    acc = Accelerator(cpu=cpu) if engine else PartialState(cpu=cpu)
    return World(acc.process_index, acc.num_processes, acc)


def shard_bounds(n: int, world: World) -> tuple[int, int]:
    """``[lo, hi)`` of this process's contiguous share of n items (the first n % size get one more)."""
    base, extra = divmod(n, world.size)
    lo = world.rank * base + min(world.rank, extra)
    return lo, lo + base + (world.rank < extra)


def shard(items: Sequence, world: World) -> list:
    lo, hi = shard_bounds(len(items), world)
    return list(items[lo:hi])


def gather_lists(part: list, world: World) -> list:
    """Every process's list, concatenated in rank order (the inverse of :func:`shard`)."""
    if not world.distributed:
        return list(part)
    import torch.distributed as dist

    parts: list = [None] * world.size
    dist.all_gather_object(parts, part)
    return [x for p in parts for x in p]


def gather_objects(obj: Any, world: World) -> list:
    """One object from each process, in rank order."""
    if not world.distributed:
        return [obj]
    import torch.distributed as dist

    out: list = [None] * world.size
    dist.all_gather_object(out, obj)
    return out


def reduce_metrics(metrics: dict[str, float], world: World) -> dict[str, float]:
    """Sum each value over processes, except ``*/max`` keys (max) and ``*/min`` keys (min).

    Values a process reports as its share of a global mean (its sum over the global count) add up
    to that mean; a key missing on some processes counts as 0 there (max/min: ignored)."""
    if not world.distributed:
        return dict(metrics)
    keys = sorted({k for m in gather_objects(sorted(metrics), world) for k in m})
    out: dict[str, float] = {}
    for k, v in zip(keys, _all_reduce([metrics.get(k) for k in keys], keys, world)):
        out[k] = v
    return out


def _all_reduce(values: list[float | None], keys: list[str], world: World) -> list[float]:
    import torch.distributed as dist

    ops = [dist.ReduceOp.MAX if k.endswith("/max") else dist.ReduceOp.MIN if k.endswith("/min") else dist.ReduceOp.SUM
           for k in keys]
    fill = {dist.ReduceOp.MAX: float("-inf"), dist.ReduceOp.MIN: float("inf"), dist.ReduceOp.SUM: 0.0}
    result = []
    for op in (dist.ReduceOp.SUM, dist.ReduceOp.MAX, dist.ReduceOp.MIN):
        idx = [i for i, o in enumerate(ops) if o == op]
        if not idx:
            continue
        t = torch.tensor([fill[op] if values[i] is None else float(values[i]) for i in idx], dtype=torch.float64)
        dist.all_reduce(t, op=op)
        result.extend(zip(idx, t.tolist()))
    return [v for _, v in sorted(result)]


def barrier(world: World) -> None:
    if world.distributed:
        world.accelerator.wait_for_everyone()


def broadcast_object(obj: Any, world: World) -> Any:
    """Rank 0's ``obj`` on every process."""
    if not world.distributed:
        return obj
    import torch.distributed as dist

    box = [obj if world.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def unwrap(model):
    """The module inside an engine wrapper (DDP, DeepSpeed): what saves, generates and is read."""
    inner = getattr(model, "module", None)
    wrapped = isinstance(inner, torch.nn.Module) and type(model).__name__ in ("DistributedDataParallel", "DeepSpeedEngine")
    return inner if wrapped else model


def prompt_seed(seed: int, *key: int) -> int:
    """A 63-bit seed from the run's seed and a position (step, round, prompt index, ...): the same
    on every process and whatever the batching, so sampling does not depend on either."""
    digest = hashlib.blake2b("/".join(map(str, (seed, *key))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
