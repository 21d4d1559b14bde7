"""The Python side of the extension's ops: autograd formulas and fake (meta) kernels.

``register_python_kernels()`` runs once, when :mod:`funaudiochat.drsr.ops.dispatch` has loaded the
extension (the ops must exist in ``torch.ops.funaudiochat`` first).
"""

from __future__ import annotations

import torch


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


def register_python_kernels() -> None:
    """Register the autograd formulas of ``group`` / ``ungroup`` and the fake kernels of every op."""
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
