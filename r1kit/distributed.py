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

import contextlib
import hashlib
import os
import weakref
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
        """``ddp`` | ``fsdp`` | ``deepspeed`` | ``none`` (one process): what the ``accelerate
        launch`` config asked for (its environment), also on a CPU, where accelerate itself
        would fall back to DDP."""
        if not self.distributed:
            return "none"
        if os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
            return "fsdp"
        if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
            return "deepspeed"
        return "ddp"


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
    from accelerate import Accelerator, InitProcessGroupKwargs, PartialState

    cpu = not torch.cuda.is_available()
    kw: dict[str, Any] = {"cpu": cpu}
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        require_deepspeed()
        # DeepSpeed runs on a CPU (its cpu accelerator, over gloo) when accelerate lets it start:
        # not asked for CPU processes, and told the backend, which it would otherwise leave unset
        kw = {"cpu": False, **({"backend": "gloo"} if cpu else {})}
    if engine:
        handlers = [InitProcessGroupKwargs(backend=kw.pop("backend"))] if "backend" in kw else []
        acc = Accelerator(kwargs_handlers=handlers, **kw)
    else:
        acc = PartialState(**kw)
    return World(acc.process_index, acc.num_processes, acc)


def require_deepspeed() -> None:
    try:
        import deepspeed  # noqa: F401
    except ImportError as e:
        raise ImportError(
            "this accelerate launch config asks for DeepSpeed, which is not installed: "
            "pip install 'r1kit[deepspeed]' (or pick configs/accelerate/ddp.yaml or fsdp2.yaml)"
        ) from e


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


def zero_stage(world: World) -> int:
    """The DeepSpeed ZeRO stage of this launch (0: not under DeepSpeed)."""
    if world.engine != "deepspeed":
        return 0
    plugin = getattr(getattr(world.accelerator, "state", None), "deepspeed_plugin", None)
    return int(plugin.zero_stage) if plugin is not None else int(os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2"))


def prepare_deepspeed(world: World, model, optimizer, micro_batch_size: int, max_grad_norm: float | None):
    """The DeepSpeed engine around ``model`` and ``optimizer``, through accelerate: ZeRO-1/2 shard
    the optimizer states (and at 2 the gradients), ZeRO-3 the parameters too. The learner marks
    the gradient-accumulation boundaries itself (one optimizer step per r1kit step and inner
    epoch), so DeepSpeed's own accumulation count is 1; clipping is DeepSpeed's, at ``max_grad_norm``."""
    plugin = world.accelerator.state.deepspeed_plugin
    plugin.deepspeed_config.update(
        train_micro_batch_size_per_gpu=micro_batch_size, gradient_accumulation_steps=1,
        train_batch_size=micro_batch_size * world.size, gradient_clipping=float(max_grad_norm or 0.0),
    )
    engine, wrapped_optimizer = world.accelerator.prepare(model, optimizer)
    if zero_stage(world) == 3:
        _ZERO3_ENGINES[model] = engine  # full_params needs the engine's hooks
    return engine, wrapped_optimizer


def load_whole_models_under_zero3() -> None:
    """Under a ZeRO-3 launch config transformers would create every model already partitioned
    (``zero3_init_flag``); GRPO loads the policy and reference whole, as FSDP2 does, and lets
    the engine partition the policy when it is prepared."""
    from transformers.integrations.deepspeed import unset_hf_deepspeed_config

    unset_hf_deepspeed_config()


_ZERO3_ENGINES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()  # module -> its ZeRO-3 engine


def is_zero3(model) -> bool:
    return any(hasattr(p, "ds_id") for p in unwrap(model).parameters())


@contextlib.contextmanager
def _zero3_whole(model):
    """ZeRO-3: every parameter gathered on every process, with DeepSpeed's per-module hooks off
    inside the block (they would re-partition after each forward pass, a collective), as TRL's
    ``unwrap_model_for_generation`` does."""
    import deepspeed

    module = unwrap(model)
    engine = _ZERO3_ENGINES.get(module)
    offload = getattr(getattr(engine, "optimizer", None), "parameter_offload", None)
    params = list(module.parameters())
    with deepspeed.zero.GatheredParameters(params, modifier_rank=None):
        start_hook = None
        if offload is not None:
            for p in params:
                p.ds_active_sub_modules.clear()
            # the root's start-of-forward hook checks step counts across processes: a collective
            start_hook = offload.module._forward_pre_hooks[offload.fwd_pre_hook.id]
            for h in offload.forward_hooks + offload.backward_hooks + [offload.fwd_pre_hook]:
                h.remove()
            offload.forward_hooks, offload.backward_hooks = [], []
        try:
            yield
        finally:
            if offload is not None:
                coordinator = getattr(offload, "param_coordinator", None)
                if coordinator is not None and not coordinator.is_invalid_trace():
                    coordinator._invalidate_trace()  # generation ran other modules in another order
                offload.fwd_pre_hook = offload.module.register_forward_pre_hook(start_hook)  # first, as DeepSpeed does
                offload._register_deepspeed_module(offload.module)


def zero3_full_state_dict(model, world: World) -> dict:
    """ZeRO-3: the whole model's state dict on process 0 (CPU memory), gathered one parameter at
    a time; the other processes get an empty dict. Every process calls it."""
    import deepspeed

    out: dict = {}
    for name, t in unwrap(model).state_dict(keep_vars=True).items():
        if hasattr(t, "ds_id"):
            with deepspeed.zero.GatheredParameters([t], modifier_rank=None):
                if world.is_main:
                    out[name] = t.data.detach().cpu().clone()
        elif world.is_main:
            out[name] = t.detach().cpu().clone()
    return out


def barrier(world: World) -> None:
    if world.distributed:
        world.accelerator.wait_for_everyone()


def unwrap(model):
    """The module inside an engine wrapper (DDP, DeepSpeed): what saves, generates and is read."""
    inner = getattr(model, "module", None)
    wrapped = isinstance(inner, torch.nn.Module) and type(model).__name__ in ("DistributedDataParallel", "DeepSpeedEngine")
    return inner if wrapped else model


# ---- FSDP2 ----------------------------------------------------------------------------------------
# r1kit shards the policy with torch's fully_shard itself, one unit per decoder layer plus the
# root (accelerate's FSDP2 settings: TRANSFORMER_BASED_WRAP, reshard after forward), so the same
# code runs on GPUs (NCCL) and on a CPU (gloo), where accelerate does not offer FSDP.


def fsdp_reshard_after_forward() -> bool:
    return os.environ.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower() not in ("false", "no_shard")


@torch.no_grad()
def sync_from_rank0(model, device: torch.device) -> None:
    """Every process gets process 0's parameters and buffers, one tensor at a time. Under an
    FSDP launch config with ``fsdp_cpu_ram_efficient_loading`` transformers loads the weights on
    process 0 only (the others get empty ones), leaving the broadcast to whoever shards."""
    import torch.distributed as dist

    if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
        model.to_empty(device=device)
    for t in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(t.data, src=0)


def shard_fsdp2(model) -> None:
    """``fully_shard`` each decoder layer (the classes the model lists in ``_no_split_modules``),
    then the whole model (embeddings, final norm and head, tied or not). In place."""
    from torch.distributed.fsdp import fully_shard

    reshard = fsdp_reshard_after_forward()
    hf = model.get_base_model() if hasattr(model, "get_base_model") else model
    layer_classes = set(getattr(hf, "_no_split_modules", None) or [])
    if not layer_classes:
        raise ValueError(f"FSDP2: {type(hf).__name__} lists no decoder layer classes (_no_split_modules) to shard by")
    for m in list(model.modules()):
        if type(m).__name__ in layer_classes:
            fully_shard(m, reshard_after_forward=reshard)
    fully_shard(model, reshard_after_forward=reshard)


def _fsdp_modules(model) -> list:
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:  # pragma: no cover - torch < 2.6
        return []
    return [m for m in model.modules() if isinstance(m, FSDPModule)]


@contextlib.contextmanager
def full_params(model):
    """Under FSDP2 and ZeRO-3, every process holds the whole model inside the block, so forward
    passes need no collective: generation and evaluation, whose number of forward passes differs
    between processes. Entered by every process at once (the gathering is one); a no-op otherwise."""
    if getattr(model, "_r1kit_whole", False):
        yield  # already whole: process 0 alone inside re-enters (its eval's generation)
        return
    if is_zero3(model):
        model._r1kit_whole = True
        try:
            with _zero3_whole(model):
                yield
        finally:
            model._r1kit_whole = False
        return
    mods = _fsdp_modules(model)
    if not mods:
        yield  # not sharded
        return
    for m in mods:
        m.unshard()
        m.set_reshard_after_forward(False)
    model._r1kit_whole = True
    try:
        yield
    finally:
        model._r1kit_whole = False
        reshard = fsdp_reshard_after_forward()
        for m in mods:
            m.reshard()
            m.set_reshard_after_forward(reshard)


def full_model_state(model, world: World) -> dict | None:
    """FSDP2 / ZeRO-3: the whole model's state dict on process 0 in CPU memory, every process
    helping gather it one tensor at a time (the others get an empty dict); None when every process
    holds the whole model anyway. Every process calls it."""
    if is_zero3(model):
        return zero3_full_state_dict(model, world)
    if not is_sharded(model):
        return None
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    return get_model_state_dict(model, options=_full_cpu())


def full_optimizer_state(model, optimizer) -> dict:
    """FSDP2: the whole optimizer state dict (keyed by parameter name), gathered like :func:`full_model_state`."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    return get_optimizer_state_dict(model, optimizer, options=_full_cpu())


def _full_cpu():
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True)


def load_full_optimizer_state(model, optimizer, state: dict) -> None:
    """FSDP2: each process takes its shard of a full optimizer state dict (as saved by :func:`full_optimizer_state`)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(model, optimizer, optim_state_dict=state, options=StateDictOptions(full_state_dict=True))


def is_sharded(model) -> bool:
    """Parameters sharded over the processes (FSDP2, ZeRO-3): forward passes are collectives."""
    return bool(_fsdp_modules(model)) or is_zero3(model)


def prompt_seed(seed: int, *key: int) -> int:
    """A 63-bit seed from the run's seed and a position (step, round, prompt index, ...): the same
    on every process and whatever the batching, so sampling does not depend on either."""
    digest = hashlib.blake2b("/".join(map(str, (seed, *key))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
