"""Strict, explained loading of state dicts, and safetensors files read and written safely.

A checkpoint that does not fit a module is never loaded in part: every missing, unexpected and mis-shaped
key is named in one ``ValueError``. Files are read with safetensors only (nothing is ever unpickled) and
written atomically.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from .atomic import atomic_save

MAX_LISTED = 20  # keys named per kind of problem; the rest are counted


def _listing(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED])
    more = len(keys) - MAX_LISTED
    return shown + (f", ... ({more} more)" if more > 0 else "")


def state_dict_problems(module: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """What keeps ``state_dict`` from fitting ``module`` exactly: one line per kind (missing, unexpected,
    mis-shaped keys); empty when it fits."""
    expected = module.state_dict()
    missing = sorted(k for k in expected if k not in state_dict)
    unexpected = sorted(k for k in state_dict if k not in expected)
    misshaped = sorted(
        f"{k} (checkpoint {tuple(state_dict[k].shape)}, model {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    )
    return [
        f"{what} keys: {_listing(keys)}"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped))
        if keys
    ]


def check_state_dict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise ``ValueError`` unless ``state_dict`` has exactly ``module``'s keys and shapes.

    source: where the state dict came from (a file name), for the message."""
    problems = state_dict_problems(module, state_dict)
    if problems:
        raise ValueError(f"{source}: checkpoint does not fit {type(module).__name__}; " + "; ".join(problems))


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """Check ``state_dict`` against ``module`` (see ``check_state_dict``), then load it."""
    check_state_dict(module, state_dict, source)
    module.load_state_dict(dict(state_dict), strict=True)


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Every tensor and the metadata of a safetensors file; a missing or corrupt file is a ``ValueError``
    naming it."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: weights file not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises its own error types for corrupt headers
        raise ValueError(f"{path}: not a readable safetensors file ({err})") from err
    return tensors, metadata


def read_config_metadata(metadata: Mapping[str, str], path: str | os.PathLike) -> dict | None:
    """The ``config`` entry that ``write_safetensors`` stores (a JSON object), or None when absent."""
    if "config" not in metadata:
        return None
    try:
        config = json.loads(metadata["config"])
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: the 'config' metadata is not JSON ({err})") from err
    if not isinstance(config, dict):
        raise ValueError(f"{path}: the 'config' metadata must be a JSON object, got {type(config).__name__}")
    return config


def write_safetensors(
    path: str | os.PathLike,
    tensors: Mapping[str, torch.Tensor],
    config: Mapping | None = None,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """Write ``tensors`` atomically (contiguous CPU copies); ``config`` goes into the metadata as JSON
    under ``config``, next to any other string ``metadata``."""
    meta = dict(metadata or {})
    if config is not None:
        meta["config"] = json.dumps(dict(config))
    plain = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    return atomic_save(path, lambda tmp: save_file(plain, tmp, metadata=meta or None))
