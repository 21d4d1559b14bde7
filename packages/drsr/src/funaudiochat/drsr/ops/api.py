"""The op entry points: ``group``, ``ungroup``, ``ungroup_`` and ``sample``.

Each validates its arguments (:mod:`.checks`), lets :mod:`.dispatch` choose the implementation for the
inputs' device, and runs the extension's kernel or the reference (:mod:`.reference`).
"""

from __future__ import annotations

import torch

from . import reference
from .checks import (
    check_ids_range,
    check_sample_values,
    validate_group,
    validate_sample,
    validate_ungroup,
    validate_ungroup_,
)
from .dispatch import Backend, choose_implementation


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
    fused = choose_implementation(backend, table.device) == "extension"
    if not (fused and table.device.type == "cpu"):  # the CPU kernels check values themselves
        check_ids_range("ids", ids, table.shape[0])
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
    fused = choose_implementation(backend, u.device) == "extension"
    if not (fused and u.device.type == "cpu"):
        check_ids_range("prev_ids", prev_ids, table.shape[0])
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
    fused = choose_implementation(backend, u.device) == "extension"
    if not (fused and u.device.type == "cpu"):
        check_ids_range("prev_ids", prev_ids, table.shape[0])
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
    fused = choose_implementation(backend, logits.device) == "extension"
    if not (fused and logits.device.type == "cpu"):
        check_sample_values(logits, history, uniforms)
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
