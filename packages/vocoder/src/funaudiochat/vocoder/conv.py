"""One-dimensional convolution tuned for a vocoder's long, narrow signals on the CPU.

HiFT's last stages are 16 and 32 channels wide at 2000 and 6000 frames per second of audio. oneDNN handles
them poorly in PyTorch's channels-first layout ``[B, C, T]`` and spreads a convolution's work over the
batch, which leaves all but one thread idle at batch size 1. ``conv1d`` picks, per call:

- narrow layers (at most ``NARROW_CHANNELS`` in and out, float32 on the CPU): the channels-last layout
  (each frame's channels side by side), faster here (see docs/benchmarks.md). The output is a
  ``[B, C, T]`` view of channels-last memory, which the next such convolution takes without a copy, and
  which elementwise ops keep;
- other long signals in a batch smaller than the thread count: cut into overlapping pieces, one per idle
  thread, run as one batch;
- a short dilated signal, which PyTorch would hand to its own slow kernel: oneDNN.

In inference, a ``Conv1d`` layer also keeps its weight in oneDNN's own blocked layout (``pack_weight``) and
convolves with it directly (``packed=``): PyTorch's convolution reorders the weight at every call, which at
a stream's chunk sizes costs as much as the convolution (figures in docs/benchmarks.md). Outputs are then in
channels-last memory.

Each output frame is the same dot product in every case; the results agree to float rounding.

    >>> y = conv1d(x, weight, bias, dilation=3)   # == F.conv1d(x, weight, bias, dilation=3)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils import parametrize

from .kept import kept

NARROW_CHANNELS = 32
MIN_CHANNELS_LAST_FRAMES = 128
# a piece below this many multiply-adds costs more to cut out and stitch back than it saves
MIN_PIECE_MACS = 4_000_000
MIN_PIECE_FRAMES = 256


def pieces_for(batch: int, out_frames: int, macs_per_frame: int, threads: int | None = None) -> int:
    """How many pieces to cut each signal of a batch into (1: convolve as it is)."""
    threads = torch.get_num_threads() if threads is None else threads
    if batch >= threads:
        return 1
    by_work = out_frames * macs_per_frame // MIN_PIECE_MACS
    return max(1, min(threads // batch, by_work, out_frames // MIN_PIECE_FRAMES))


def conv1d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    dilation: int = 1,
    groups: int = 1,
    pad: tuple[int, int] = (0, 0),
    pieces: int | None = None,
    channels_last: bool | None = None,
    packed: torch.Tensor | None = None,
) -> torch.Tensor:
    """``F.conv1d(F.pad(x, pad), weight, bias, stride, 0, dilation, groups)`` for ``x [B, C_in, T]``:
    ``[B, C_out, (T + left + right - span) // stride + 1]`` with ``span = dilation * (kernel - 1) + 1``
    (``pad = (left, right)`` zeros; with ``right > left`` only at stride 1).

    ``channels_last``: convolve in the channels-last layout (None: for narrow float32 CPU layers, see the
    module docstring); ``pieces``: otherwise cut each signal into this many pieces run as one batch (None:
    one per idle thread when the work is large enough, see ``pieces_for``); ``packed``: ``weight`` in
    oneDNN's layout (``pack_weight``), used when ``packable(x, weight, bias)``. Neither oneDNN path is
    taken with both stride and dilation above 1, which oneDNN mishandles."""
    left, right = pad
    if right > left and stride != 1:
        raise ValueError(f"conv1d: more padding on the right than the left needs stride 1, got {stride}")
    batch, channels, length = x.shape
    out_channels, in_per_group, kernel = weight.shape
    span = dilation * (kernel - 1) + 1
    padded = length + left + right
    out_frames = (padded - span) // stride + 1 if padded >= span else 0
    # oneDNN (torch 2.14) reads out of bounds when stride and dilation are both above 1 on a short padded
    # signal (a segfault); no vocoder layer has both, and such calls stay on PyTorch's own kernel.
    onednn_safe = stride == 1 or dilation == 1
    if packed is not None and out_frames > 0 and onednn_safe and packable(x, weight, bias):
        both = max(left, right)
        y = torch.ops.mkldnn._convolution_pointwise(
            x.unsqueeze(2), packed, bias, [0, both], [1, stride], [1, dilation], groups, "none", [], ""
        ).squeeze(2)
        first = (both - left) // stride  # left < both only at stride 1
        return y[:, :, first : first + out_frames]
    if channels_last is None:
        channels_last = (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and groups == 1
            and max(channels, out_channels) <= NARROW_CHANNELS
            and out_frames >= MIN_CHANNELS_LAST_FRAMES
        )
    if channels_last and out_frames > 0 and onednn_safe:
        return _conv1d_channels_last(x, weight, bias, stride, dilation, groups, left, right, out_frames)
    if left or right:
        x, length = F.pad(x, (left, right)), padded
    if pieces is None:
        pieces = pieces_for(batch, out_frames, in_per_group * out_channels * kernel)
    if pieces <= 1 or out_frames < pieces:
        if onednn_safe and _native_dilated(x, weight, dilation, groups):
            return torch.ops.aten.mkldnn_convolution(x, weight, bias, [0], [stride], [dilation], groups)
        return F.conv1d(x, weight, bias, stride, 0, dilation, groups)
    per_piece = -(-out_frames // pieces)  # output frames per piece; the last piece is padded on the right
    window = (per_piece - 1) * stride + span  # input frames one piece needs
    needed = (pieces - 1) * per_piece * stride + window
    if needed > length:
        x = F.pad(x, (0, needed - length))
    cut = x.unfold(2, window, per_piece * stride)  # [B, C_in, pieces, window]
    cut = cut.permute(0, 2, 1, 3).reshape(batch * pieces, channels, window)
    y = F.conv1d(cut, weight, bias, stride, 0, dilation, groups)  # [B * pieces, C_out, per_piece]
    y = y.reshape(batch, pieces, out_channels, per_piece).permute(0, 2, 1, 3)
    return y.reshape(batch, out_channels, pieces * per_piece)[:, :, :out_frames]


def _conv1d_channels_last(
    x, weight, bias, stride: int, dilation: int, groups: int, left: int, right: int, out_frames: int
) -> torch.Tensor:
    """The convolution as a height-1 ``conv2d`` on channels-last memory; returns ``[B, C_out, T']`` whose
    memory is ``[B, T', C_out]``. One-sided padding is the kernel's own (both sides, the larger amount)
    with the outputs of the surplus side cut off: no padded copy of the input."""
    frames_first = x.transpose(1, 2)  # [B, T, C]: free when x already has channels-last memory
    if not frames_first.is_contiguous():
        frames_first = frames_first.contiguous()
    x4 = frames_first.unsqueeze(1).permute(0, 3, 1, 2)  # [B, C, 1, T], channels-last strides
    w4 = weight.unsqueeze(2).contiguous(memory_format=torch.channels_last)
    both = max(left, right)
    y = F.conv2d(x4, w4, bias, (1, stride), (0, both), (1, dilation), groups).squeeze(2)
    first = (both - left) // stride  # left < both only at stride 1
    return y[:, :, first : first + out_frames]


def _native_dilated(x: torch.Tensor, weight: torch.Tensor, dilation: int, groups: int) -> bool:
    """Whether ``F.conv1d`` would run this dilated convolution on PyTorch's own CPU kernel, which is slower
    than oneDNN's (docs/benchmarks.md): it keeps oneDNN for one short float32 signal with ungrouped
    weights (a stream's chunk at HiFT's first stage)."""
    return (
        dilation > 1
        and groups == 1
        and x.shape[0] == 1
        and x.numel() <= 20480
        and x.is_contiguous()
        and packable(x, weight)  # float32 on the CPU with oneDNN, no gradient wanted
    )


def packable(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> bool:
    """Whether a packed weight can serve this call: float32 on the CPU with oneDNN, and no gradient
    wanted (the packed path has no backward)."""
    tensors = (x, weight) if bias is None else (x, weight, bias)
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and weight.dtype == torch.float32
        and not (torch.is_grad_enabled() and any(t.requires_grad for t in tensors))
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


def pack_weight(weight: torch.Tensor, stride: int = 1, dilation: int = 1, groups: int = 1) -> torch.Tensor:
    """A conv1d weight ``[C_out, C_in / groups, K]`` in oneDNN's blocked layout (an opaque tensor that only
    ``conv1d(packed=...)`` reads), for this stride, dilation and groups."""
    as_2d = weight.detach().unsqueeze(2).contiguous().to_mkldnn()
    return torch._C._nn.mkldnn_reorder_conv2d_weight(as_2d, [0, 0], [1, stride], [1, dilation], groups)


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` (same parameters and state-dict names) without implicit padding, that runs in the
    input's precision (HiFT's F0 predictor is evaluated in float64) through ``conv1d``.

    In inference it keeps its kernel (weight-normed or not) and that kernel packed for oneDNN until a
    parameter changes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convolve(x)

    def convolve(self, x: torch.Tensor, pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
        """``x [B, C_in, T]`` with ``pad = (left, right)`` zeros -> ``[B, C_out, T']``."""
        weight = self.kernel().to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        packed = self.packed_kernel() if packable(x, weight, bias) else None
        return conv1d(x, weight, bias, self.stride[0], self.dilation[0], self.groups, pad, packed=packed)

    def _sources(self) -> tuple[torch.Tensor, ...]:
        if parametrize.is_parametrized(self, "weight"):
            norm = self.parametrizations.weight
            return (norm.original0, norm.original1)
        return (self.weight,)

    def kernel(self) -> torch.Tensor:
        """The weight. Without autograd, a weight-normed kernel is kept until its parameters change (a
        stream would otherwise normalise every kernel at every step)."""
        if not parametrize.is_parametrized(self, "weight"):
            return self.weight
        return kept(self, "_kept_kernel", self._sources(), lambda: self.weight)

    def packed_kernel(self) -> torch.Tensor:
        """``kernel()`` in oneDNN's layout (``pack_weight``), kept until a parameter changes."""
        return kept(
            self,
            "_kept_packed",
            self._sources(),
            lambda: pack_weight(self.kernel(), self.stride[0], self.dilation[0], self.groups),
        )
