"""Values derived from parameters alone, kept between inference calls until a parameter changes.

A vocoder in inference keeps remaking things that depend on its weights only: the weight-normed kernels,
the stacked q/k/v projection, the time modulations of the flow solver's few times, the rotary table of a
chunk's positions. ``kept`` makes such a value once and holds it on its owner module while the tensors it
came from are unchanged (same version counter, storage, device and dtype: an optimizer step, a
``load_state_dict`` or a ``.to()`` makes it again). A copy or a pickle of the owner starts without it
(some kept values, e.g. oneDNN's packed weights, cannot be copied; all are remade on demand).

    >>> weight, bias = kept(self, "_qkv", params, lambda: (torch.cat(ws), torch.cat(bs)))
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import TypeVar

import torch
from torch import nn

T = TypeVar("T")


def kept(
    owner: nn.Module, slot: str, tensors: Sequence[torch.Tensor], make: Callable[[], T], extra: Hashable = ()
) -> T:
    """``make()``, kept in ``owner.<slot>`` while ``tensors`` (and ``extra``, e.g. a length) are unchanged.

    With autograd on for any of ``tensors`` nothing is kept: ``make()`` runs afresh, so the value carries
    gradients. A kept value is made outside inference mode and without autograd: a plain tensor (or
    container of them) that any later mode can use."""
    if torch.is_grad_enabled() and any(t.requires_grad for t in tensors):
        return make()
    key = (tuple((t._version, t.data_ptr(), t.device, t.dtype) for t in tensors), extra)
    held = owner.__dict__.get(slot)
    if held is None or held.key != key:
        with torch.inference_mode(False), torch.no_grad():
            held = owner.__dict__[slot] = Held(key, make())
    return held.value


class Held:
    """A kept value and the key it was made for. ``copy.deepcopy`` and pickling give None in its place."""

    __slots__ = ("key", "value")

    def __init__(self, key: Hashable, value: object):
        self.key, self.value = key, value

    def __deepcopy__(self, memo) -> None:
        return None

    def __reduce__(self):
        return (_nothing, ())


def _nothing() -> None:
    return None
