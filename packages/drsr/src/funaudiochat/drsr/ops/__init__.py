"""Fused DRSR ops: ``group``, ``ungroup`` (and its in-place form ``ungroup_``) and ``sample``.

Each op runs the compiled extension ``funaudiochat.drsr._C`` (built from ``csrc/`` by
``packages/drsr/setup.py``) when it is loaded and has a kernel for the inputs' device, and the pure-PyTorch
reference of
:mod:`funaudiochat.drsr.ops.reference` otherwise. The reference docstrings are the contract; the kernels
agree with them up to fp32 summation order (group / ungroup) and give identical tokens (sample), except in
the rounding edge cases listed in ``reference.sample``.

Choosing the implementation: every op takes ``backend="auto" | "extension" | "reference"``; ``None`` reads
the environment variable ``FUNAUDIOCHAT_DRSR_OPS`` (same values, default ``auto``). ``extension`` raises
if the extension is missing or has no kernel for the device.

Status: the CPU kernels (C++/OpenMP) are tested against the references. The CUDA kernels
(``csrc/drsr_ops_cuda.cu``) compile and link but have **not yet run on a GPU**.

Argument errors raise ``ValueError``. Value checks (id ranges, uniforms in ``[0, 1)``) run inside the CPU
kernels; for CUDA and the references they run here and synchronise the CUDA stream.
"""

from __future__ import annotations

import math
import os
from typing import Literal

import torch

from . import reference

Backend = Literal["auto", "extension", "reference"]
BACKENDS = ("auto", "extension", "reference")
ENV_BACKEND = "FUNAUDIOCHAT_DRSR_OPS"
TABLE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
LOGIT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
UNIFORM_DTYPES = (torch.float32, torch.float64)

__all__ = [
    "BACKENDS",
    "extension_available",
    "extension_error",
    "extension_has_cuda",
    "group",
    "reference",
    "sample",
    "ungroup",
    "ungroup_",
]

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


def _extension_serves(backend: Backend | None, device: torch.device) -> bool:
    choice = os.environ.get(ENV_BACKEND, "auto") if backend is None else backend
    if choice not in BACKENDS:
        source = ENV_BACKEND if backend is None else "backend"
        raise ValueError(f"{source} must be one of {BACKENDS}, got {choice!r}")
    if choice == "reference":
        return False
    supported = _C is not None and (device.type == "cpu" or (device.type == "cuda" and bool(_C.WITH_CUDA)))
    if choice == "extension" and not supported:
        reason = _IMPORT_ERROR or f"it has no kernels for device {device}"
        raise RuntimeError(f"backend='extension' requested but the extension cannot serve it: {reason}")
    return supported


# ------------------------------------------------------------------------------------------ checks


def _check_tensor(
    name: str, value: object, dtypes: tuple[torch.dtype, ...], ndim: int, shape_text: str
) -> None:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor {shape_text}, got {type(value).__name__}")
    if value.dtype not in dtypes:
        allowed = ", ".join(str(d).removeprefix("torch.") for d in dtypes)
        raise ValueError(
            f"{name} must have dtype in ({allowed}), got {str(value.dtype).removeprefix('torch.')}"
        )
    if value.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape_text}, got {tuple(value.shape)}")


def _check_device(reference_name: str, reference_tensor: torch.Tensor, **others: torch.Tensor | None) -> None:
    for name, tensor in others.items():
        if tensor is not None and tensor.device != reference_tensor.device:
            raise ValueError(
                f"{name} is on {tensor.device} but {reference_name} is on {reference_tensor.device}; "
                "all tensors must be on one device"
            )


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


def _check_ids_range(name: str, ids: torch.Tensor, vocab: int, allow_padding: bool = False) -> None:
    if ids.numel() == 0:
        return
    low, high = (int(x) for x in torch.aminmax(ids))
    if high >= vocab or (low < 0 and not allow_padding):
        allowed = f"< {vocab} (negative entries are padding)" if allow_padding else f"in [0, {vocab})"
        raise ValueError(
            f"{name} must hold ids {allowed} (V = table/logits rows), found min {low}, max {high}"
        )


def validate_group(
    ids: object, table: object, group_size: object, text: object, check_values: bool = True
) -> None:
    """Raise ValueError unless the arguments fit :func:`group`."""
    _check_tensor("ids", ids, (torch.int64,), 2, "[B, T] (int64)")
    _check_tensor("table", table, TABLE_DTYPES, 2, "[V, D]")
    k = _check_positive_int("group_size", group_size)
    batch, length = ids.shape
    if length % k:
        raise ValueError(f"ids.shape[1] (T = {length}) must be a multiple of group_size (k = {k})")
    _check_device("table", table, ids=ids, text=text if isinstance(text, torch.Tensor) else None)
    if text is not None:
        _check_tensor(
            "text", text, (table.dtype,), 3, f"[B, T/k, D] = [{batch}, {length // k}, {table.shape[1]}]"
        )
        if tuple(text.shape) != (batch, length // k, table.shape[1]):
            raise ValueError(
                f"text must have shape [B, T/k, D] = [{batch}, {length // k}, {table.shape[1]}], "
                f"got {tuple(text.shape)}"
            )
    if check_values:
        _check_ids_range("ids", ids, table.shape[0])


def validate_ungroup(
    u: object, prev_ids: object, table: object, group_size: object, check_values: bool = True
) -> None:
    """Raise ValueError unless the arguments fit :func:`ungroup`."""
    _check_tensor("table", table, TABLE_DTYPES, 2, "[V, D]")
    _check_tensor("u", u, (table.dtype,), 3, "[B, L, k*D]")
    _check_tensor("prev_ids", prev_ids, (torch.int64,), 2, "[B, L*k] (int64)")
    k = _check_positive_int("group_size", group_size)
    batch, length, width = u.shape
    if width != k * table.shape[1]:
        raise ValueError(
            f"u.shape[2] must be group_size * D = {k} * {table.shape[1]} = {k * table.shape[1]}, got {width}"
        )
    if tuple(prev_ids.shape) != (batch, length * k):
        raise ValueError(
            f"prev_ids must have shape [B, L*k] = [{batch}, {length * k}], got {tuple(prev_ids.shape)}"
        )
    _check_device("u", u, prev_ids=prev_ids, table=table)
    if check_values:
        _check_ids_range("prev_ids", prev_ids, table.shape[0])


def validate_ungroup_(
    u: object, prev_ids: object, table: object, group_size: object, check_values: bool = True
) -> None:
    """Raise ValueError unless the arguments fit :func:`ungroup_`: those of :func:`ungroup`, u writable."""
    validate_ungroup(u, prev_ids, table, group_size, check_values=check_values)
    if not u.is_contiguous():
        raise ValueError(
            f"u must be contiguous (ungroup_ writes into its storage), got strides {u.stride()}; "
            "use ungroup, or pass u.contiguous()"
        )
    if u.is_leaf and u.requires_grad and torch.is_grad_enabled():
        raise ValueError(
            "u is a leaf tensor that requires grad, which ungroup_ cannot overwrite; use ungroup, or pass a "
            "non-leaf u (e.g. the output of a Linear)"
        )


def validate_sample(
    logits: object,
    history: object,
    uniforms: object,
    temperature: float,
    top_k: int,
    top_p: float,
    repetition_penalty: float,
    ras_window: int,
    ras_tau: float,
    check_values: bool = True,
) -> None:
    """Raise ValueError unless the arguments fit :func:`sample`."""
    _check_tensor("logits", logits, LOGIT_DTYPES, 2, "[B, V]")
    batch, vocab = logits.shape
    if vocab < 1:
        raise ValueError("logits must have at least one column (V >= 1)")
    _check_tensor("history", history, (torch.int64,), 2, f"[B, H] = [{batch}, H] (int64)")
    _check_tensor("uniforms", uniforms, UNIFORM_DTYPES, 2, f"[B, 2] = [{batch}, 2]")
    if history.shape[0] != batch:
        raise ValueError(f"history must have shape [B, H] with B = {batch}, got {tuple(history.shape)}")
    if tuple(uniforms.shape) != (batch, 2):
        raise ValueError(f"uniforms must have shape [B, 2] = [{batch}, 2], got {tuple(uniforms.shape)}")
    _check_device("logits", logits, history=history, uniforms=uniforms)
    if not isinstance(temperature, int | float) or math.isnan(temperature):
        raise ValueError(f"temperature must be a number (<= 0 means greedy), got {temperature!r}")
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 0:
        raise ValueError(f"top_k must be an int >= 0 (0 = off), got {top_k!r}")
    if not isinstance(top_p, int | float) or not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1] (1 = off), got {top_p!r}")
    if not isinstance(repetition_penalty, int | float) or not 0.0 < repetition_penalty < math.inf:
        raise ValueError(
            f"repetition_penalty must be a finite number > 0 (1 = off), got {repetition_penalty!r}"
        )
    if isinstance(ras_window, bool) or not isinstance(ras_window, int) or ras_window < 0:
        raise ValueError(f"ras_window must be an int >= 0 (0 = off), got {ras_window!r}")
    if not isinstance(ras_tau, int | float) or not 0.0 <= ras_tau < math.inf:
        raise ValueError(f"ras_tau must be a finite number >= 0, got {ras_tau!r}")
    if check_values:
        _check_sample_values(logits, history, uniforms)


def _check_sample_values(logits: torch.Tensor, history: torch.Tensor, uniforms: torch.Tensor) -> None:
    _check_ids_range("history", history, logits.shape[1], allow_padding=True)
    if uniforms.numel():
        low, high = (float(x) for x in torch.aminmax(uniforms))
        if not (0.0 <= low and high < 1.0):
            raise ValueError(f"uniforms must lie in [0, 1), found min {low}, max {high}")


# ---------------------------------------------------------------------------------------------- ops


def group(
    ids: torch.Tensor,
    table: torch.Tensor,
    group_size: int,
    text: torch.Tensor | None = None,
    *,
    backend: Backend | None = None,
) -> torch.Tensor:
    """``[B, T]`` ids -> ``[B, T/k, D]`` mean of each ``k = group_size`` token embeddings, fp32-accumulated.

    table: ``[V, D]`` fp32/bf16/fp16; text: optional ``[B, T/k, D]`` of the table's dtype, averaged in as
    ``(text + mean) / 2``. Returns the table's dtype. Differentiable w.r.t. ``table`` and ``text``.
    """
    validate_group(ids, table, group_size, text, check_values=False)
    fused = _extension_serves(backend, table.device)
    if not (fused and table.device.type == "cpu"):  # the CPU kernels check values themselves
        _check_ids_range("ids", ids, table.shape[0])
    if fused:
        return torch.ops.funaudiochat.group(ids, table, group_size, text)
    return reference.group(ids, table, group_size, text)


def ungroup(
    u: torch.Tensor,
    prev_ids: torch.Tensor,
    table: torch.Tensor,
    group_size: int,
    *,
    backend: Backend | None = None,
) -> torch.Tensor:
    """``u [B, L, k*D]`` -> ``[B, L*k, D]``; row ``p*k + j`` is ``u[b, p, j*D:(j+1)*D]`` plus
    ``table[prev_ids[b, p*k + j]]``.

    prev_ids: int64 ``[B, L*k]``; table: ``[V, D]`` of u's dtype. Differentiable w.r.t. ``u`` and ``table``.
    """
    validate_ungroup(u, prev_ids, table, group_size, check_values=False)
    fused = _extension_serves(backend, u.device)
    if not (fused and u.device.type == "cpu"):
        _check_ids_range("prev_ids", prev_ids, table.shape[0])
    if fused:
        return torch.ops.funaudiochat.ungroup(u, prev_ids, table, group_size)
    return reference.ungroup(u, prev_ids, table, group_size)


def ungroup_(
    u: torch.Tensor,
    prev_ids: torch.Tensor,
    table: torch.Tensor,
    group_size: int,
    *,
    backend: Backend | None = None,
) -> torch.Tensor:
    """:func:`ungroup` in place: adds the embeddings into ``u``'s storage, returns its ``[B, L*k, D]`` view.

    u: contiguous ``[B, L, k*D]``, a temporary the caller no longer needs (e.g. a Linear's output; not a leaf
    that requires grad); prev_ids, table: as for :func:`ungroup` (table must not overlap u). Same values as
    :func:`ungroup`. Differentiable: d/du is the identity (reshaped), d/dtable the same scatter-add as
    ungroup's. A bad argument or id raises ValueError before u is written.
    """
    validate_ungroup_(u, prev_ids, table, group_size, check_values=False)
    fused = _extension_serves(backend, u.device)
    if not (fused and u.device.type == "cpu"):
        _check_ids_range("prev_ids", prev_ids, table.shape[0])
    if not fused:
        return reference.ungroup_(u, prev_ids, table, group_size)
    torch.ops.funaudiochat.ungroup_(u, prev_ids, table, group_size)
    batch, length, width = u.shape
    return u.view(batch, length * group_size, width // group_size)


def sample(
    logits: torch.Tensor,
    history: torch.Tensor,
    uniforms: torch.Tensor,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    repetition_penalty: float = 1.0,
    ras_window: int = 0,
    ras_tau: float = 0.1,
    *,
    backend: Backend | None = None,
) -> torch.Tensor:
    """One token per row of ``logits [B, V]``: int64 ``[B]``. Semantics: :func:`reference.sample`.

    history: int64 ``[B, H]`` (``< 0`` = padding); uniforms: fp32/fp64 ``[B, 2]`` in ``[0, 1)`` from the
    caller's seeded generator (column 0 for the draw, column 1 for the RAS redraw).
    """
    validate_sample(
        logits,
        history,
        uniforms,
        temperature,
        top_k,
        top_p,
        repetition_penalty,
        ras_window,
        ras_tau,
        check_values=False,
    )
    fused = _extension_serves(backend, logits.device)
    if not (fused and logits.device.type == "cpu"):
        _check_sample_values(logits, history, uniforms)
    settings = (
        float(temperature),
        int(top_k),
        float(top_p),
        float(repetition_penalty),
        int(ras_window),
        float(ras_tau),
    )
    if fused:
        return torch.ops.funaudiochat.sample(logits, history, uniforms, *settings)
    return reference.sample(logits, history, uniforms, *settings)


# ------------------------------------------------------------------- autograd and fake (meta) kernels


def _group_setup_context(ctx, inputs: tuple, output: torch.Tensor) -> None:
    ids, table, group_size, text = inputs
    ctx.save_for_backward(ids)
    ctx.num_embeddings = table.shape[0]
    ctx.group_size = group_size
    ctx.has_text = text is not None


def _group_backward(ctx, grad: torch.Tensor) -> tuple:
    (ids,) = ctx.saved_tensors
    grad_table = grad_text = None
    divisor = float(ctx.group_size * (2 if ctx.has_text else 1))
    if ctx.needs_input_grad[1]:
        grad_table = torch.ops.funaudiochat.group_backward(
            grad, ids, ctx.num_embeddings, ctx.group_size, divisor
        )
    if ctx.has_text and ctx.needs_input_grad[3]:
        grad_text = grad / 2
    return None, grad_table, None, grad_text


def _ungroup_setup_context(ctx, inputs: tuple, output: torch.Tensor) -> None:
    u, prev_ids, table, group_size = inputs
    ctx.save_for_backward(prev_ids)
    ctx.num_embeddings = table.shape[0]
    ctx.u_shape = u.shape


def _ungroup_backward(ctx, grad: torch.Tensor) -> tuple:
    (prev_ids,) = ctx.saved_tensors
    grad_u = grad.reshape(ctx.u_shape) if ctx.needs_input_grad[0] else None
    grad_table = None
    if ctx.needs_input_grad[2]:
        grad_table = torch.ops.funaudiochat.group_backward(grad, prev_ids, ctx.num_embeddings, 1, 1.0)
    return grad_u, None, grad_table, None


def _register_python_kernels() -> None:
    torch.library.register_autograd(
        "funaudiochat::group", _group_backward, setup_context=_group_setup_context
    )
    torch.library.register_autograd(
        "funaudiochat::ungroup", _ungroup_backward, setup_context=_ungroup_setup_context
    )

    @torch.library.register_fake("funaudiochat::group")
    def _(ids, table, group_size, text=None):
        return table.new_empty(ids.shape[0], ids.shape[1] // group_size, table.shape[1])

    @torch.library.register_fake("funaudiochat::group_backward")
    def _(grad, ids, num_embeddings, group_size, divisor):
        return grad.new_empty(num_embeddings, grad.shape[2])

    @torch.library.register_fake("funaudiochat::ungroup")
    def _(u, prev_ids, table, group_size):
        return u.new_empty(u.shape[0], u.shape[1] * group_size, table.shape[1])

    @torch.library.register_fake("funaudiochat::ungroup_")
    def _(u, prev_ids, table, group_size):
        return u  # ungroup_'s autograd kernel is C++ (a mutation): UngroupInplace in csrc/drsr_ops.cpp

    @torch.library.register_fake("funaudiochat::sample")
    def _(logits, history, uniforms, temperature, top_k, top_p, repetition_penalty, ras_window, ras_tau):
        return logits.new_empty(logits.shape[0], dtype=torch.int64)


if _C is not None:
    _register_python_kernels()
