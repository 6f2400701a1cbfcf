"""The config machinery: YAML trees and ``section.key=value`` overrides into dataclasses, checked.

A section is a dataclass. Building one from a mapping (``build``) checks every key (an unknown
key is named with the closest valid one), coerces each value to its annotation (a wrong type
names key, value and expected type), checks choice fields against the registry that owns the
choices, and runs the section's own ``__post_init__`` checks, whose ``ConfigError`` messages
name keys relative to the section (``"group_size: must be >= 1"``) and come out with the full
dotted path (``"rollout.group_size: must be >= 1"``).

Sections derive from ``Section``. A choice field declares its registry where it is defined:
``backend: str = choice("hf", "r1kit.rollout:BACKENDS")``; the registry (a dict, tuple or set
of names, imported only when a config is checked) is the one place the valid values live.

Why not OmegaConf (measured with omegaconf 2.4.0): its structured configs name an unknown key
with a suggestion and coerce types as well as this module does, but its dotted overrides split
``rewards.pkg.mod:fn=0.5`` into nested keys (so r1kit would keep its own override parser), its
errors span several lines, and it adds a dependency and ~120 ms of import time. This module is
about 200 lines.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import types
import typing
from typing import Any

import yaml


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the key."""


def choice(default: str, registry: str) -> Any:
    """A dataclass field whose value must be a name in ``registry`` (``"module:ATTRIBUTE"``)."""
    return dataclasses.field(default=default, metadata={"choices": registry})


def registry_names(registry: str) -> list[str]:
    """The names a choice registry (``"module:ATTRIBUTE"``: a dict, tuple or set) offers."""
    module, _, attr = registry.partition(":")
    return sorted(getattr(importlib.import_module(module), attr))


def check_choice(key: str, value: str, registry: str) -> None:
    names = registry_names(registry)
    if value not in names:
        raise ConfigError(f"{key}: '{value}' is not one of {names}")


class Section:
    """Base of every config section: after construction, choice fields are checked against their
    registries, then the section's own ``check()`` runs (raise ``ConfigError("key: ...")``)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            registry = f.metadata.get("choices")
            if registry:
                check_choice(f.name, getattr(self, f.name), registry)
        self.check()

    def check(self) -> None:
        """Checks that involve more than one value's type (ranges, dependencies between keys)."""


def at_least(section: Any, minimum: float, *names: str) -> None:
    """ConfigError naming the first of ``names`` whose value is below ``minimum``."""
    for name in names:
        value = getattr(section, name)
        if value < minimum:
            raise ConfigError(f"{name}: must be >= {minimum:g}, got {value}")


def positive(section: Any, *names: str) -> None:
    """ConfigError naming the first of ``names`` whose value is not > 0."""
    for name in names:
        value = getattr(section, name)
        if not value > 0:
            raise ConfigError(f"{name}: must be > 0, got {value}")


def closest(key: str, valid: list[str], prefix: str = "") -> str:
    near = difflib.get_close_matches(key, valid, n=1, cutoff=0.4)
    if near:
        return f" (did you mean '{prefix}{near[0]}'?)"
    return f" (valid keys: {', '.join(prefix + v for v in sorted(valid))})"


def check_type(path: str, value: Any, tp: Any) -> Any:
    """Coerce/validate a leaf value against its annotation; returns the value to store.

    A dataclass annotation with a ``from_yaml(path, value)`` classmethod parses its own short
    forms (``RewardSpec``: a weight, or a mapping with a weight and options)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return check_type(path, value, a)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"{path}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp) and hasattr(tp, "from_yaml"):
        return tp.from_yaml(path, value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {value!r}")
        _, vt = typing.get_args(tp)
        return {str(k): check_type(f"{path}.{k}", v, vt) for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        (et,) = typing.get_args(tp)
        return [check_type(path, v, et) for v in value]
    return _check_scalar(path, value, tp)


def _check_scalar(path: str, value: Any, tp: Any) -> Any:
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{path}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{path}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{path}: expected a string, got {value!r}")
    return value


def build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """A section (dataclass ``cls``) from a mapping, checked; errors carry the dotted path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ConfigError(f"unknown config key '{prefix}{key}'{closest(key, list(fields), prefix)}")
        tp = hints[key]
        if dataclasses.is_dataclass(tp) and not hasattr(tp, "from_yaml"):
            kwargs[key] = build(tp, value or {}, f"{prefix}{key}.")
        else:
            kwargs[key] = check_type(f"{prefix}{key}", value, tp)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{prefix}{e}") from None


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["train.max_steps=5", "seed=1"]`` -> nested dict; values parsed as YAML scalars.

    Reward names may be dotted module paths: ``rewards.pkg.mod:fn=0.5`` sets that reward's
    weight and ``rewards.pkg.mod:fn.max_len=48`` one of its options (a reward's name ends at the
    first dot after its ``:``, or at the first dot when it has none)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override '{item}' must look like section.key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override '{item}' has no key")
        _set_dotted(tree, key, yaml.safe_load(raw) if raw.strip() else "")
    return tree


def _split_key(dotted: str) -> list[str]:
    head, _, rest = dotted.partition(".")
    if head != "rewards" or not rest:
        return dotted.split(".")
    colon = rest.find(":")
    cut = rest.find(".", colon + 1 if colon >= 0 else 0)
    return [head, rest] if cut < 0 else [head, rest[:cut], rest[cut + 1 :]]


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = _split_key(dotted)
    if parts[0] == "rewards" and len(parts) >= 2:  # a weight and options of one reward mix freely
        rewards = tree.setdefault("rewards", {})
        current = rewards.get(parts[1]) if isinstance(rewards, dict) else None
        if len(parts) == 3 and current is not None and not isinstance(current, dict):
            rewards[parts[1]] = {"weight": current}
        elif len(parts) == 2 and isinstance(current, dict) and not isinstance(value, dict):
            current["weight"] = value
            return
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{dotted}': '{p}' is not a section")
    node[parts[-1]] = value


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` over ``base``, section by section (a mapping updates, anything else replaces)."""
    out = dict(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


def read_yaml(path: str) -> dict[str, Any]:
    from pathlib import Path

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        tree = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of sections")
    return tree


def to_dict(cfg: Any) -> Any:
    """A section as plain YAML-ready data; a field with ``to_yaml()`` writes its short form."""
    if hasattr(cfg, "to_yaml"):
        return cfg.to_yaml()
    if dataclasses.is_dataclass(cfg):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, dict):
        return {k: to_dict(v) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [to_dict(v) for v in cfg]
    return cfg
