"""One-dimensional convolution that keeps every CPU thread busy at batch size 1.

oneDNN spreads a convolution's work over the batch, so a single long signal (HiFT's 16-channel layers run
at 6000 frames per second of audio) leaves all but one thread idle. ``conv1d`` cuts such a signal into
overlapping pieces, one per idle thread, and runs them as one batch. Each output frame is the same dot
product as before, so the result is the same up to the kernel's own rounding (usually bit for bit). A short
dilated signal, which PyTorch would hand to its own slow kernel, goes to oneDNN as well.

    >>> y = conv1d(x, weight, bias, dilation=3)   # == F.conv1d(x, weight, bias, dilation=3)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
    pieces: int | None = None,
) -> torch.Tensor:
    """``F.conv1d(x, weight, bias, stride, 0, dilation, groups)`` for ``x [B, C_in, T]`` (no padding:
    ``[B, C_out, (T - span) // stride + 1]`` with ``span = dilation * (kernel - 1) + 1``).

    ``pieces``: cut each signal into this many pieces run as one batch (None: one per idle thread when the
    work is large enough, see ``pieces_for``)."""
    batch, channels, length = x.shape
    out_channels, in_per_group, kernel = weight.shape
    span = dilation * (kernel - 1) + 1
    out_frames = (length - span) // stride + 1 if length >= span else 0
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
