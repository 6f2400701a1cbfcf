"""What the reward pool and its worker processes share: environment names, frames, targets, events.

The pool (``r1kit.rewards.pool``) runs in the training process; a worker
(``python -m r1kit.rewards.verify_worker``) is a fresh interpreter that imports only this module
and the function it is asked to run.

Frames, both directions: an 8-byte big-endian length, then a pickle. A request is
``(sys_path | None, target, origin_file, payload)`` with ``payload = pickle((args, kwargs))``, so
the worker can take the caller's ``sys.path`` and import the target before unpickling arguments
that may need the target's module. The worker answers ``("imported",)`` the first time it resolves
a target (importing is not charged to the call's deadline, only to the batch's), then
``("ok", value, events)`` or ``("error", message, retire)``.

A target is ``"module:qualname"``, or ``("module:factory", args)``: the function to call is then
``factory(*args)``, built once per worker as part of the import (for a function that needs
preparing, e.g. a comparison that should import sympy before its first deadline starts).
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pickle
import struct
import sys
from typing import Any, Callable

WORKER_ENV = "R1KIT_REWARD_WORKER"  # "1" inside a worker process
# Read by the worker: the parent's pid (exit when it is gone), the memory cap, parent-death signal.
PARENT_ENV = "R1KIT_REWARD_WORKER_PARENT"
MEMORY_ENV = "R1KIT_REWARD_WORKER_MEMORY"
PDEATHSIG_ENV = "R1KIT_REWARD_WORKER_PDEATHSIG"

HEADER = struct.Struct(">Q")  # a frame's length prefix


def in_worker() -> bool:
    """True inside a pool worker process: run comparisons in-process there, do not recurse."""
    return os.environ.get(WORKER_ENV) == "1"


_events: list[str] = []


def report(event: str) -> None:
    """Inside a worker: attach ``event`` to the current call's ``Result.events``. Outside a
    worker, nothing (the code that handled the failure counts it itself)."""
    if in_worker():
        _events.append(event)


def take_events() -> tuple[str, ...]:
    """The events reported since the last call (worker side)."""
    out = tuple(_events)
    _events.clear()
    return out


def target_of(fn: Callable) -> str | None:
    """``"module:qualname"`` that a fresh process can import to get ``fn``, or None.

    None for lambdas, closures, functions defined in ``__main__`` (a worker cannot import the
    user's script without running it) and objects that are not named functions or classes.
    """
    module_name = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module_name or not qualname or module_name in ("__main__", "__mp_main__") or "<" in qualname:
        return None
    obj: Any = sys.modules.get(module_name)
    if obj is None:
        return None
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    return f"{module_name}:{qualname}" if obj is fn else None


def target_key(target: str | tuple[str, tuple]) -> str:
    return target if isinstance(target, str) else f"{target[0]}{tuple(target[1])!r}"


def load_target(target: str | tuple[str, tuple], origin: str | None = None) -> Callable:
    """The callable a target names (see the module docstring)."""
    if isinstance(target, str):
        return resolve_target(target, origin)
    factory, args = target
    fn = resolve_target(factory, origin)(*args)
    if not callable(fn):
        raise TypeError(f"{factory}{tuple(args)!r} returned {type(fn).__name__}, not a callable")
    return fn


def resolve_target(target: str, origin: str | None = None) -> Callable:
    """Import ``"module:qualname"``; if the module is not importable by name but ``origin`` names
    its file (pytest's importlib mode, a script directory not on ``sys.path``), load it from there."""
    module_name, sep, qualname = target.partition(":")
    if not sep or not module_name or not qualname:
        raise ValueError(f"target {target!r} is not 'module:qualname'")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if not origin or e.name != module_name.split(".")[0] and e.name != module_name:
            raise
        spec = importlib.util.spec_from_file_location(module_name, origin)
        if spec is None or spec.loader is None:
            raise
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        try:
            spec.loader.exec_module(module)
        except BaseException:
            sys.modules.pop(module_name, None)
            raise
    obj: Any = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{target} is not callable")
    return obj


def describe_exception(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:2000]


def write_frame(fd: int, obj: Any = None, data: bytes | None = None) -> None:
    """Write one length-prefixed pickle (``data`` when already pickled) to a blocking fd."""
    if data is None:
        data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    view = memoryview(HEADER.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def read_frames(buf: bytearray) -> list[Any]:
    """The complete frames at the start of ``buf``, removed from it (a partial frame stays)."""
    out = []
    while len(buf) >= HEADER.size:
        (size,) = HEADER.unpack_from(buf)
        if len(buf) < HEADER.size + size:
            break
        data = bytes(buf[HEADER.size : HEADER.size + size])
        del buf[: HEADER.size + size]
        out.append(pickle.loads(data))
    return out
