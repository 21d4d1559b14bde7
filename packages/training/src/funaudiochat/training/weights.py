"""Writing trained weights: safetensors only, atomically (a temporary file in the same folder, then
``os.replace``), so a reader never sees a half-written file and an interrupted run leaves the old one."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import save

from .atomic import atomic_write


def save_safetensors_atomic(
    tensors: Mapping[str, torch.Tensor], path: str | os.PathLike, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write ``tensors`` (moved to CPU, made contiguous, shared storage split) to ``path``; returns it.

    ``metadata`` is stored in the safetensors header (string keys and values only)."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(
            f"{path}: weights are written as safetensors; the file name must end in .safetensors"
        )
    if metadata is not None and not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()
    ):
        raise ValueError("safetensors metadata must map strings to strings")
    plain = {name: t.detach().to("cpu").contiguous().clone() for name, t in tensors.items()}
    data = save(plain, metadata=dict(metadata) if metadata else None)
    return atomic_write(path, lambda handle: handle.write(data))
