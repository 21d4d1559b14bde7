"""Which implementation runs an op: the compiled extension ``funaudiochat.drsr._C`` or the references.

``backend="auto" | "extension" | "reference"``; ``None`` reads the environment variable
``FUNAUDIOCHAT_DRSR_OPS`` (same values, default ``auto``).

- ``reference``: always the pure-PyTorch references (:mod:`funaudiochat.drsr.ops.reference`).
- ``extension``: the extension's kernels; raises ``RuntimeError`` if it is not loaded or has no kernel for the
  device (CPU kernels are always built; CUDA kernels when the build found nvcc).
- ``auto``: the extension's kernels where it has them for the device (CPU always; CUDA when built with
  nvcc), else the references. The CUDA kernels passed ``tests/drsr/test_ops_cuda.py`` on an NVIDIA H200
  (docs/kernels_on_gpu.md).

Loading the extension also registers the Python side of its ops (autograd formulas, fake kernels).
"""

from __future__ import annotations

import os
from typing import Literal

import torch

from .registration import register_python_kernels

Backend = Literal["auto", "extension", "reference"]
Implementation = Literal["extension", "reference"]
BACKENDS = ("auto", "extension", "reference")
ENV_BACKEND = "FUNAUDIOCHAT_DRSR_OPS"

try:
    from .. import _C  # registers torch.ops.funaudiochat.*
except ImportError as error:  # not built: the references serve
    _C = None
    _IMPORT_ERROR: str | None = f"{type(error).__name__}: {error}"
else:
    _IMPORT_ERROR = None


def extension_available() -> bool:
    """True when the compiled extension is loaded (its CPU kernels always are)."""
    return _C is not None


def extension_error() -> str | None:
    """Why the extension could not be imported, or None when it was."""
    return _IMPORT_ERROR


def extension_has_cuda() -> bool:
    """True when the loaded extension was compiled with its CUDA kernels."""
    return _C is not None and bool(_C.WITH_CUDA)


def requested_backend(backend: Backend | None) -> Backend:
    """``backend``, or the environment's choice when it is None; ``ValueError`` for an unknown name."""
    choice = os.environ.get(ENV_BACKEND, "auto") if backend is None else backend
    if choice not in BACKENDS:
        source = ENV_BACKEND if backend is None else "backend"
        raise ValueError(f"{source} must be one of {BACKENDS}, got {choice!r}")
    return choice


def choose_implementation(backend: Backend | None, device: torch.device) -> Implementation:
    """``"extension"`` or ``"reference"`` for an op on ``device`` (the rules in the module docstring).

    Raises ``ValueError`` for an unknown backend name, ``RuntimeError`` when ``extension`` is requested and
    the extension cannot serve ``device``."""
    choice = requested_backend(backend)
    if choice == "reference":
        return "reference"
    has_kernels = _C is not None and (
        device.type == "cpu" or (device.type == "cuda" and extension_has_cuda())
    )
    if choice == "extension":
        if not has_kernels:
            reason = _IMPORT_ERROR or f"it has no kernels for device {device}"
            raise RuntimeError(f"backend='extension' requested but the extension cannot serve it: {reason}")
        return "extension"
    return "extension" if has_kernels else "reference"


if _C is not None:
    register_python_kernels()
