"""Fused DRSR ops: ``group``, ``ungroup`` (and its in-place form ``ungroup_``) and ``sample``.

Each op runs the compiled extension ``funaudiochat.drsr._C`` (built from ``csrc/`` by
``packages/drsr/setup.py``) or the pure-PyTorch reference of :mod:`funaudiochat.drsr.ops.reference`. The
reference docstrings are the contract; the kernels agree with them up to fp32 summation order (group /
ungroup) and give identical tokens (sample), except in the rounding edge cases listed in
``reference.sample``.

Choosing the implementation (:mod:`.dispatch`): every op takes ``backend="auto" | "extension" |
"reference"``; ``None`` reads the environment variable ``FUNAUDIOCHAT_DRSR_OPS`` (same values, default
``auto``). ``auto`` uses the extension's kernels wherever it has them for the device (CPU always, CUDA when
built with nvcc) and the references elsewhere; ``extension`` raises if the extension is missing or has no
kernel for the device.

Status: the CPU kernels (C++/OpenMP) are tested against the references here. The CUDA kernels
(``csrc/drsr_ops_cuda.cu``) passed the same property tests on an NVIDIA H200 (``tests/drsr/test_ops_cuda.py``;
docs/kernels_on_gpu.md), which CI cannot run (no GPU).

Argument errors raise ``ValueError`` (:mod:`.checks`). Value checks (id ranges, uniforms in ``[0, 1)``) run
inside the CPU kernels; for CUDA and the references they run in Python and synchronise the CUDA stream.

This module only re-exports: the entry points live in :mod:`.api`.
"""

from __future__ import annotations

from . import reference
from .api import group, sample, ungroup, ungroup_
from .checks import (
    LOGIT_DTYPES,
    TABLE_DTYPES,
    UNIFORM_DTYPES,
    validate_group,
    validate_sample,
    validate_ungroup,
    validate_ungroup_,
)
from .dispatch import (
    BACKENDS,
    ENV_BACKEND,
    Backend,
    choose_implementation,
    extension_available,
    extension_error,
    extension_has_cuda,
)

__all__ = [
    "BACKENDS",
    "ENV_BACKEND",
    "LOGIT_DTYPES",
    "TABLE_DTYPES",
    "UNIFORM_DTYPES",
    "Backend",
    "choose_implementation",
    "extension_available",
    "extension_error",
    "extension_has_cuda",
    "group",
    "reference",
    "sample",
    "ungroup",
    "ungroup_",
    "validate_group",
    "validate_sample",
    "validate_ungroup",
    "validate_ungroup_",
]
