"""Weight-only int8 and int4 for the shared LLM and the Speech Refined Head: ``quantize_weights``.

Each ``nn.Linear`` of the LLM's decoder layers and head and of the SRH (its decoder layers and its
pre-matching, input- and output-matching projections; not its head, which is tied to the speech-token
embedding table) becomes a ``WeightOnlyLinear``:

- int8: one symmetric scale per output channel, ``w ~ q * scale`` with ``q`` in [-127, 127];
- int4: one asymmetric scale and offset per group of ``group_size`` inputs of each output channel,
  ``w ~ (q - 8) * scale + zero`` with ``q`` in [0, 15].

The products run in torch's own CPU kernels for packed int8 / int4 weights (``aten._weight_int8pack_mm``,
``aten._weight_int4pack_mm_for_cpu``), which take bfloat16 activations: a layer's input is rounded to
bfloat16 and its output returned in the input's dtype. torchao (0.18) quantizes int8 on the CPU too but
has no CPU kernel for int4, so one mechanism serves both here (``docs/quantization.md``). The audio
encoders, the embedding tables and the norms keep their weights.

Example:
    >>> quantize_weights(model, "int8")          # in place; returns the number of layers replaced
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn

BITS = {"int8": 8, "int4": 4}
GROUP_SIZES = (32, 64, 128, 256)  # inputs per int4 group that torch's CPU packing takes
QUANTIZED_ATTR = "_funaudiochat_quantized"  # set on every module whose layers were replaced


class WeightOnlyLinear(nn.Module):
    """``linear`` with its weight quantized (module docstring); the bias, if any, stays as it was.

    linear: the layer to replace (weight ``[N, K]``); scheme: "int8" or "int4"; group_size: inputs per
    int4 group (one of ``GROUP_SIZES``; ``K`` must be a multiple, ``N`` a multiple of 8)."""

    def __init__(self, linear: nn.Linear, scheme: str, group_size: int = 32):
        super().__init__()
        if scheme not in BITS:
            raise ValueError(f"scheme must be one of {sorted(BITS)}, got {scheme!r}")
        weight = linear.weight.detach().float()
        self.out_features, self.in_features = weight.shape
        self.scheme, self.group_size = scheme, group_size
        if scheme == "int8":
            scale = (weight.abs().amax(1) / 127).clamp(min=1e-12)
            self.register_buffer(
                "qweight", torch.round(weight / scale[:, None]).clamp(-127, 127).to(torch.int8)
            )
            self.register_buffer("scales", scale.to(torch.bfloat16))
        else:
            _check_group_size(group_size)
            if not int4_fits(linear, group_size):
                raise ValueError(
                    f"int4 needs an output size divisible by 8 and an input size divisible by the group "
                    f"size {group_size}, got {self.out_features} x {self.in_features}"
                )
            groups = weight.view(self.out_features, -1, group_size)
            low, high = groups.amin(-1), groups.amax(-1)
            scale = ((high - low) / 15).clamp(min=1e-12)
            q = torch.round((groups - low[..., None]) / scale[..., None]).clamp(0, 15).to(torch.int32)
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q.view(self.out_features, -1), 1)
            self.register_buffer("qweight", packed)
            zero = low + 8 * scale  # the value of q = 8
            self.register_buffer(
                "scales", torch.stack([scale, zero], -1).transpose(0, 1).contiguous().bfloat16()
            )
        self.bias = (
            None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(), requires_grad=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features).to(torch.bfloat16)
        if self.scheme == "int8":
            y = torch.ops.aten._weight_int8pack_mm(rows, self.qweight, self.scales)
        else:
            y = torch.ops.aten._weight_int4pack_mm_for_cpu(rows, self.qweight, self.group_size, self.scales)
        y = y.to(x.dtype).view(*x.shape[:-1], self.out_features)
        return y if self.bias is None else y + self.bias

    def dequantized(self) -> torch.Tensor:
        """The weight the products use, ``[N, K]`` float32 (for checks)."""
        eye = torch.eye(self.in_features, dtype=torch.bfloat16)
        if self.scheme == "int8":
            return torch.ops.aten._weight_int8pack_mm(eye, self.qweight, self.scales).float().T.contiguous()
        return (
            torch.ops.aten._weight_int4pack_mm_for_cpu(eye, self.qweight, self.group_size, self.scales)
            .float()
            .T
        )

    def extra_repr(self) -> str:
        group = f", group_size={self.group_size}" if self.scheme == "int4" else ""
        return (
            f"{self.in_features} -> {self.out_features}, {self.scheme}{group}, bias={self.bias is not None}"
        )


def int4_fits(linear: nn.Linear, group_size: int) -> bool:
    """Whether torch's int4 CPU packing takes ``linear`` (output size a multiple of 8, input size of
    ``group_size``); ``quantize_weights`` gives the others int8 (e.g. a head over a vocabulary of 1055)."""
    out_features, in_features = linear.weight.shape
    return out_features % 8 == 0 and in_features % group_size == 0


def weight_bytes(module: nn.Module) -> int:
    """Bytes of ``module``'s parameters and buffers (each tensor once, tied ones included once)."""
    seen, total = set(), 0
    for tensor in [*module.parameters(), *module.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor.numel() * tensor.element_size()
    return total


def quantize_weights(model: nn.Module, scheme: str, group_size: int = 32) -> int:
    """Replace, in place, the linear layers of ``model``'s shared LLM and SRH (module docstring) by
    ``WeightOnlyLinear`` (``scheme`` "int8" or "int4"; ``group_size`` for int4; a layer int4 cannot pack
    gets int8, ``int4_fits``); returns how many. The model decodes on the CPU afterwards (``fast_decode``
    steps aside for quantized modules)."""
    if scheme not in BITS:
        raise ValueError(f"quantize must be one of {sorted(BITS)}, got {scheme!r}")
    if scheme == "int4":
        _check_group_size(group_size)
    if any(p.device.type != "cpu" for p in model.parameters()):
        raise ValueError("weight-only int8/int4 runs on the CPU here; move the model to the CPU first")
    model.eval()
    layers = list(quantizable_layers(model))
    for parent, name, child in layers:
        fits = scheme == "int8" or int4_fits(child, group_size)
        setattr(parent, name, WeightOnlyLinear(child, scheme if fits else "int8", group_size))
    for root in _roots(model):
        for module in root.modules():
            setattr(module, QUANTIZED_ATTR, True)
    setattr(model, QUANTIZED_ATTR, scheme)
    return len(layers)


def quantizable_layers(model: nn.Module) -> Iterator[tuple[nn.Module, str, nn.Linear]]:
    """``(parent, name, layer)`` of every ``nn.Linear`` that ``quantize_weights`` replaces: those of the
    shared LLM and the SRH whose weight is not tied to an embedding table (works on the meta device)."""
    tied = {id(model.get_input_embeddings().weight)} if hasattr(model, "get_input_embeddings") else set()
    srh = getattr(model, "audio_invert_tower", None)
    if srh is not None:
        tied.add(id(srh.lm_head.weight))
    for root in _roots(model):
        for parent in list(root.modules()):
            for name, child in list(parent.named_children()):
                if type(child) is nn.Linear and id(child.weight) not in tied:
                    yield parent, name, child


def _roots(model: nn.Module) -> list[nn.Module]:
    """The shared LLM and the SRH of ``model`` (those it has)."""
    parts = (getattr(model, "language_model", None), getattr(model, "audio_invert_tower", None))
    return [part for part in parts if part is not None]


def _check_group_size(group_size: int) -> None:
    if group_size not in GROUP_SIZES:
        allowed = ", ".join(map(str, GROUP_SIZES[:-1])) + f" or {GROUP_SIZES[-1]}"
        raise ValueError(f"int4 group_size must be {allowed}, got {group_size}")


def is_quantized(module: nn.Module) -> bool:
    """Whether ``quantize_weights`` replaced layers of (or under) ``module``."""
    return bool(getattr(module, QUANTIZED_ATTR, False))
