"""Dataclass configs from recipe dictionaries: ``{"preset": "tiny", "depth": 4}`` -> ``FlowConfig(...)``.

Recipes (OmegaConf YAML) bind straight onto constructor arguments; a model's size is one nested mapping
that overrides the fields of its config dataclass. ``preset`` names a zero-argument classmethod of the
config (``tiny``; ``default`` is the plain constructor, i.e. the official size); the other keys replace
fields. Unknown fields, unknown presets and values of the wrong type are ``ValueError``s that name them.

Example:
    >>> build_config(FlowConfig, {"preset": "tiny", "depth": 4})
    >>> config_to_dict(HiFTConfig.tiny())["f0_dtype"]
    'float64'
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any, TypeVar

import torch

T = TypeVar("T")


def presets(cls: type) -> list[str]:
    """Names usable as ``preset``: ``default`` and every classmethod of ``cls`` callable with no argument."""
    names = ["default"]
    for name in dir(cls):
        if name.startswith("_"):
            continue
        attr = inspect.getattr_static(cls, name, None)
        if isinstance(attr, classmethod):
            params = inspect.signature(getattr(cls, name)).parameters.values()
            if all(p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
                names.append(name)
    return names


def _coerce(cls: type, name: str, value: Any, reference: Any) -> Any:
    """Check ``value`` against the type of the field's current value (``reference``); convert dtype names."""
    where = f"{cls.__name__}.{name}"
    if isinstance(reference, torch.dtype):
        if isinstance(value, torch.dtype):
            return value
        dtype = getattr(torch, str(value), None) if isinstance(value, str) else None
        if not isinstance(dtype, torch.dtype):
            raise ValueError(f"{where} must be a torch dtype name such as 'float32', got {value!r}")
        return dtype
    if reference is None or value is None:
        return value
    if isinstance(reference, bool):
        ok = isinstance(value, bool)
    elif isinstance(reference, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(reference, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(reference, str):
        ok = isinstance(value, str)
    elif isinstance(reference, (list, tuple)):
        ok = isinstance(value, (list, tuple))
        value = type(reference)(value) if ok else value
    else:
        ok = True
    if not ok:
        raise ValueError(f"{where} must be of type {type(reference).__name__}, got {value!r}")
    return value


def build_config(cls: type[T], overrides: Mapping[str, Any] | T | None = None) -> T:
    """A ``cls`` instance from a preset and field overrides (see the module docstring).

    ``overrides`` may also be an instance of ``cls`` (returned as is) or ``None`` (the default config)."""
    if overrides is None:
        return cls()
    if isinstance(overrides, cls):
        return overrides
    if not isinstance(overrides, Mapping):
        raise ValueError(
            f"{cls.__name__} overrides must be a mapping of field names to values, "
            f"got {type(overrides).__name__}"
        )
    values = dict(overrides)
    preset = values.pop("preset", "default")
    known = presets(cls)
    if preset not in known:
        raise ValueError(f"unknown {cls.__name__} preset {preset!r}; choose one of {known}")
    base = cls() if preset == "default" else getattr(cls, preset)()
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {unknown}; valid fields are {sorted(fields)}")
    coerced = {k: _coerce(cls, k, v, getattr(base, k)) for k, v in values.items()}
    return dataclasses.replace(base, **coerced)


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain JSON-able values (torch dtypes become their names)."""

    def plain(value: Any) -> Any:
        if isinstance(value, torch.dtype):
            return str(value).removeprefix("torch.")
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        return value

    return {f.name: plain(getattr(config, f.name)) for f in dataclasses.fields(config)}
