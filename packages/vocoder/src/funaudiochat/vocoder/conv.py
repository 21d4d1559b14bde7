"""One-dimensional convolution tuned for a vocoder's long, narrow signals on the CPU.

HiFT's last stages are 16 and 32 channels wide at 2000 and 6000 frames per second of audio. oneDNN handles
them poorly in PyTorch's channels-first layout ``[B, C, T]`` and spreads a convolution's work over the
batch, which leaves all but one thread idle at batch size 1. ``conv1d`` picks, per call:

- narrow layers (at most ``NARROW_CHANNELS`` in and out, float32 on the CPU): the channels-last layout
  (each frame's channels side by side), 2-2.5x faster here. The output is a ``[B, C, T]`` view of
  channels-last memory, which the next such convolution takes without a copy, and which elementwise ops
  keep;
- other long signals in a batch smaller than the thread count: cut into overlapping pieces, one per idle
  thread, run as one batch;
- a short dilated signal, which PyTorch would hand to its own slow kernel: oneDNN.

Each output frame is the same dot product in every case; the results agree to float rounding.

    >>> y = conv1d(x, weight, bias, dilation=3)   # == F.conv1d(x, weight, bias, dilation=3)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
) -> torch.Tensor:
    """``F.conv1d(F.pad(x, pad), weight, bias, stride, 0, dilation, groups)`` for ``x [B, C_in, T]``:
    ``[B, C_out, (T + left + right - span) // stride + 1]`` with ``span = dilation * (kernel - 1) + 1``
    (``pad = (left, right)`` zeros; with ``right > left`` only at stride 1).

    ``channels_last``: convolve in the channels-last layout (None: for narrow float32 CPU layers, see the
    module docstring); ``pieces``: otherwise cut each signal into this many pieces run as one batch (None:
    one per idle thread when the work is large enough, see ``pieces_for``)."""
    left, right = pad
    if right > left and stride != 1:
        raise ValueError(f"conv1d: more padding on the right than the left needs stride 1, got {stride}")
    batch, channels, length = x.shape
    out_channels, in_per_group, kernel = weight.shape
    span = dilation * (kernel - 1) + 1
    padded = length + left + right
    out_frames = (padded - span) // stride + 1 if padded >= span else 0
    if channels_last is None:
        channels_last = (
            x.device.type == "cpu"
            and x.dtype == torch.float32
            and groups == 1
            and max(channels, out_channels) <= NARROW_CHANNELS
            and out_frames >= MIN_CHANNELS_LAST_FRAMES
        )
    if channels_last and out_frames > 0:
        return _conv1d_channels_last(x, weight, bias, stride, dilation, groups, left, right, out_frames)
    if left or right:
        x, length = F.pad(x, (left, right)), padded
    if pieces is None:
        pieces = pieces_for(batch, out_frames, in_per_group * out_channels * kernel)
    if pieces <= 1 or out_frames < pieces:
        if _native_dilated(x, weight, dilation, groups):
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
    """Whether ``F.conv1d`` would run this dilated convolution on PyTorch's own CPU kernel, which is 2-3x
    slower than oneDNN's: it keeps oneDNN for one short float32 signal with ungrouped weights (a stream's
    chunk at HiFT's first stage)."""
    return (
        dilation > 1
        and groups == 1
        and x.device.type == "cpu"
        and x.dtype == torch.float32
        and x.shape[0] == 1
        and x.numel() <= 20480
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
        and x.is_contiguous()
    )
