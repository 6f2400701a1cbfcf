"""Reward registry and the TRL reward-function contract.

A reward is a plain function ``fn(prompts, completions, **columns) -> list[float | None]``
(TRL's convention): ``completions[i]`` is either the text the model wrote or, in TRL's
conversational form, a list of ``{"role", "content"}`` messages; ``columns`` hold one list per
dataset column (``answer=[...]``, ``task=[...]``) plus whatever else the caller passes, which a
reward must ignore. ``None`` means "not applicable to this sample".

r1kit passes completions as text (prefill + completion). A user's reward written for TRL's
conversational format (``completion[0]["content"]``) fails on text; such a ``module:function``
reward is called again with each completion as ``[{"role": "assistant", "content": text}]`` (and
each prompt as a user message), and from then on always so (see ``PluginReward``).

How the scorer runs a reward (``Runs``) is declared once: by ``register(name, runs=...)`` for
r1kit's rewards, by the ``runs(...)`` decorator for a user's ``module:function``; both write
``RUNS``. A function that declares nothing runs per batch in the worker pool, or in a thread when
a worker cannot import it (see ``r1kit.rewards.scoring``).
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import logging
from enum import StrEnum
from typing import Any, Callable

logger = logging.getLogger(__name__)

RewardFn = Callable[..., list]


class Runs(StrEnum):
    """How the scorer calls a reward; the value is what logs and warnings say."""

    IN_PROCESS = "in-process"  # called directly: for pure, linear-time code (nothing to guard)
    POOL_ITEM = "per-item"  # in the worker pool, once per completion, each under ``timeout_s``
    POOL_BATCH = "per-batch"  # in the worker pool, once on the whole batch (TRL's contract)
    THREAD = "thread"  # in a daemon thread of this process, under ``batch_timeout_s``


# The keyword arguments TRL's GRPOTrainer adds to every reward call; r1kit's scorer passes them
# to a reward whose signature takes them (see ``r1kit.rewards.scoring``).
TRL_KWARGS = ("trainer_state", "log_extra", "log_metric")

REWARDS: dict[str, RewardFn] = {}
# What each function declared (by identity, so "r1kit.rewards.format:format_reward" is "format").
RUNS: dict[RewardFn, Runs] = {}


def register(name: str, *, runs: Runs | str | None = None) -> Callable[[RewardFn], RewardFn]:
    """Decorator: make ``fn`` resolvable by ``name`` from the config's ``rewards`` mapping, and
    declare how the scorer runs it (``runs``; None: the default, see ``Runs``)."""
    mode = None if runs is None else Runs(runs)

    def wrap(fn: RewardFn) -> RewardFn:
        old = REWARDS.get(name)
        # Re-importing the defining module (importlib.reload) registers the same function again.
        if old is not None and (old.__module__, old.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(
                f"reward '{name}' is already registered by {old.__module__}.{old.__qualname__}"
            )
        REWARDS[name] = fn
        if mode is not None:
            RUNS[fn] = mode
        return fn

    return wrap


def runs(mode: Runs | str) -> Callable[[RewardFn], RewardFn]:
    """Decorator for a user's reward: declare how the scorer runs it, e.g. ``@runs(Runs.POOL_ITEM)``
    for a reward that judges each completion on its own (split per item, each with its own
    deadline). Without it a ``module:function`` reward runs on the whole batch in the pool."""
    mode = Runs(mode)

    def wrap(fn: RewardFn) -> RewardFn:
        RUNS[fn] = mode
        return fn

    return wrap


def declared_runs(fn: RewardFn) -> Runs | None:
    """What ``fn`` (or the user function inside a ``PluginReward``) declared, or None."""
    inner = fn.fn if isinstance(fn, PluginReward) else fn
    try:
        return RUNS.get(inner)
    except TypeError:  # an unhashable callable declares nothing
        return None


def resolve_reward(name: str) -> RewardFn:
    """A registered name (``"accuracy"``) or ``"package.module:function"``; KeyError otherwise.

    A ``module:function`` that is not one of r1kit's registered rewards comes back wrapped in a
    ``PluginReward`` (the same wrapper each time), which a worker process can import as well."""
    if name in REWARDS:
        return REWARDS[name]
    if name.startswith("reward_model_") and "reward_model" in REWARDS:  # several learned reward models
        return REWARDS["reward_model"]
    if ":" in name:
        fn = _import_reward(name)
        if any(fn is registered for registered in REWARDS.values()):
            return fn
        return _plugin(name, fn)
    raise KeyError(
        f"unknown reward '{name}'; registered: {', '.join(sorted(REWARDS))}, "
        "or give 'package.module:function'"
    )


def _import_reward(name: str) -> RewardFn:
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise KeyError(f"reward '{name}': cannot import module '{module_name}' ({e})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise KeyError(f"reward '{name}': module '{module_name}' has no function '{attr}'")
    return fn


def as_messages(items: list[Any], role: str) -> list[Any]:
    """TRL's conversational form: each string becomes ``[{"role": role, "content": text}]``."""
    return [[{"role": role, "content": x}] if isinstance(x, str) else x for x in items]


class PluginReward:
    """A user's ``module:function`` reward as r1kit calls it.

    TRL rewards come in two forms: for text completions, and for conversational ones
    (``completion[0]["content"]``, as TRL's own ``think_format_reward``). r1kit's completions are
    text, so the first call passes text; if that raises TypeError/KeyError/IndexError/
    AttributeError (what indexing a string as a message raises) and the same call with messages
    succeeds, the reward is conversational and gets messages from then on. If both fail, the
    first error is raised (and the scorer counts it).

    The scorer runs user rewards in worker processes, which import them by ``module:qualname``.
    So that a worker gets this wrapper (not the bare function), the wrapper is published as the
    attribute ``plugin:<name with / for .>`` of this module, and the module's ``__getattr__``
    rebuilds it on demand in a fresh process. A function from ``__main__`` cannot be imported by a
    worker; its wrapper keeps ``__module__ == "__main__"``, so the scorer runs it in a thread.
    How the scorer runs it is what the user's function declared (``runs``), looked up on ``fn``.
    """

    def __init__(self, fn: RewardFn, name: str):
        self.fn = fn
        self.name = name
        self.__name__ = getattr(fn, "__name__", name)
        self.__wrapped__ = fn
        self.__doc__ = getattr(fn, "__doc__", None)
        if getattr(fn, "__module__", None) in ("__main__", "__mp_main__"):
            self.__module__, self.__qualname__ = fn.__module__, self.__name__
        else:
            self.__module__, self.__qualname__ = __name__, _PLUGIN_PREFIX + name.replace(".", "/")
        self.conversational = False

    def __call__(self, prompts, completions, **columns):
        if self.conversational:
            return self._call_with_messages(prompts, completions, columns)
        try:
            return self.fn(prompts=prompts, completions=completions, **columns)
        except (TypeError, KeyError, IndexError, AttributeError) as first:
            if not all(isinstance(c, str) for c in completions):
                raise
            try:
                out = self._call_with_messages(prompts, completions, columns)
            except Exception:  # noqa: BLE001 - the text call's error is the one to report
                raise first from None
            self.conversational = True
            logger.info("reward '%s' takes conversational completions; passing them as messages", self.name)
            return out

    def _call_with_messages(self, prompts, completions, columns):
        return self.fn(prompts=as_messages(prompts, "user"), completions=as_messages(completions, "assistant"), **columns)

    def __repr__(self) -> str:
        return f"PluginReward({self.name!r})"


# "package.module:function" -> attribute "plugin:package/module:function" of this module; the
# attribute name holds no "." so that "r1kit.rewards.registry:<attribute>" is a valid target.
_PLUGIN_PREFIX = "plugin:"


def _plugin(name: str, fn: RewardFn) -> PluginReward:
    attr = _PLUGIN_PREFIX + name.replace(".", "/")
    current = globals().get(attr)
    if current is None or current.fn is not fn:  # first use, or the module was reloaded
        current = globals()[attr] = PluginReward(fn, name)
    return current


def __getattr__(attr: str) -> Any:
    # A worker process resolving "r1kit.rewards.registry:plugin:..." (see PluginReward).
    if attr.startswith(_PLUGIN_PREFIX):
        name = attr[len(_PLUGIN_PREFIX) :].replace("/", ".")
        try:
            return _plugin(name, _import_reward(name))
        except KeyError as e:
            raise AttributeError(e.args[0]) from None
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def check_reward_options(name: str, options: dict[str, Any]) -> None:
    """Raise ValueError, naming the option, if ``options`` cannot be ``reward_options[name]``.

    Every reward takes ``**columns``, so a misspelt option would otherwise vanish into them. For
    r1kit's rewards an option must be a named keyword parameter, and the reward is dry-run on an
    empty batch so that a bad value (``overlong: {buffer: -1}``) fails before training starts. A
    user's reward with ``**kwargs`` accepts any option; one without rejects unknown names.
    """
    fn = resolve_reward(name)
    for key in options:
        if key in TRL_KWARGS:
            raise ValueError(f"{name}: '{key}' cannot be an option, the trainer passes it")
    target = getattr(fn, "__wrapped__", fn)
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):  # a builtin or C callable without a signature: cannot check
        return
    named = [
        p for p, v in params.items()
        if p not in ("prompts", "completions", "completion_ids", *TRL_KWARGS)
        and v.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    builtin = any(fn is r for r in REWARDS.values())
    open_kwargs = any(v.kind is inspect.Parameter.VAR_KEYWORD for v in params.values())
    if not builtin and open_kwargs:
        return
    for key in options:
        if key not in named:
            close = difflib.get_close_matches(key, named, n=1)
            hint = f"; did you mean '{close[0]}'" if close else ""
            takes = ", ".join(named) if named else "no options"
            raise ValueError(f"{name}: no option '{key}'{hint} (it takes: {takes})")
    if builtin:  # a dry run on an empty batch: bad values, and options a reward cannot do without
        try:
            fn(prompts=[], completions=[], **options)
        except (TypeError, ValueError, KeyError) as e:
            msg = str(e.args[0]) if e.args else type(e).__name__
            raise ValueError(msg if msg.startswith(f"{name}:") else f"{name}: {msg}") from None


def completion_text(completion: Any) -> str:
    """The text of one completion: a string as is, or the last message of a conversation."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, (list, tuple)):
        if not completion:
            return ""
        content = completion[-1].get("content") if isinstance(completion[-1], dict) else None
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        # Multimodal content: a list of {"type": "text", "text": ...} parts.
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    raise TypeError(f"a completion must be a string or a list of messages, got {type(completion)}")
