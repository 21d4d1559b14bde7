"""Argument checks of the fused ops: ``validate_<op>`` raises ``ValueError`` naming the argument, its
expected shape / dtype / range and what it got.

Value checks (id ranges, uniforms in ``[0, 1)``) read tensor values, which synchronises a CUDA stream; the
ops skip them where the CPU kernels check values themselves (``check_values=False``, then
:func:`check_ids_range` / :func:`check_sample_values` where needed).
"""

from __future__ import annotations

import math

import torch

TABLE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
LOGIT_DTYPES = (torch.float32, torch.float64, torch.bfloat16, torch.float16)
UNIFORM_DTYPES = (torch.float32, torch.float64)


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


def check_ids_range(name: str, ids: torch.Tensor, vocab: int, allow_padding: bool = False) -> None:
    """Raise ValueError unless every id is in ``[0, vocab)`` (negative ids too with ``allow_padding``)."""
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
        check_ids_range("ids", ids, table.shape[0])


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
        check_ids_range("prev_ids", prev_ids, table.shape[0])


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
        check_sample_values(logits, history, uniforms)


def check_sample_values(logits: torch.Tensor, history: torch.Tensor, uniforms: torch.Tensor) -> None:
    """Raise ValueError unless the history ids fit the logits' vocabulary and the uniforms lie in [0, 1)."""
    check_ids_range("history", history, logits.shape[1], allow_padding=True)
    if uniforms.numel():
        low, high = (float(x) for x in torch.aminmax(uniforms))
        if not (0.0 <= low and high < 1.0):
            raise ValueError(f"uniforms must lie in [0, 1), found min {low}, max {high}")
