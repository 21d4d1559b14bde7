"""Streaming convolution: run a ``Conv1d`` over a signal that arrives in pieces, with the same outputs as
one run over the whole signal.

The carried *context* of a convolution is the tail of its input that later outputs still need. Every
convolution of the vocoder is written without implicit padding (it pads explicitly, on one side), so a
streamed run is: prepend the context to the new input, convolve without padding, keep the new tail.

- causal (left-padded) convolution: the context starts as the left padding (``pad`` zeros) and every
  input frame gives one output frame at once;
- look-ahead (right-padded) convolution: the context starts empty; outputs lag ``pad`` frames behind
  the input until the end of the stream, when the right padding (zeros) is appended;
- strided convolution (stride ``s``, kernel ``k``): outputs start every ``s`` input frames once ``k`` are
  there; the context keeps what the next window needs.
"""

from __future__ import annotations

import torch

from .conv import Conv1d


def conv_span(conv: Conv1d) -> int:
    """Input frames one output frame covers: ``dilation * (kernel - 1) + 1``."""
    return conv.dilation[0] * (conv.kernel_size[0] - 1) + 1


def stream_conv(conv: Conv1d, x: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``x [B, C, n]`` (the next input frames) and the carried ``context [B, C, c]`` -> ``(y, context)``.

    ``y [B, C_out, m]`` holds every output frame that the input so far determines (m = 0 when the window
    is not yet full). The convolution runs in the input's dtype (HiFT's F0 predictor runs in float64)."""
    z = join_frames(context, x) if context.shape[2] else x
    span, stride = conv_span(conv), conv.stride[0]
    if z.shape[2] < span:
        return z.new_zeros(z.shape[0], conv.out_channels, 0), z
    count = (z.shape[2] - span) // stride + 1
    return conv.convolve(z), z[:, :, count * stride :]


def join_frames(first: torch.Tensor, then: torch.Tensor) -> torch.Tensor:
    """``torch.cat((first, then), dim=2)`` for ``[B, C, *]`` signals, in channels-last memory when ``then``
    has it (so that a channels-last convolution reads the result without a copy)."""
    if then.shape[1] > 1 and then.transpose(1, 2).is_contiguous():
        return torch.cat((first.transpose(1, 2), then.transpose(1, 2)), dim=1).transpose(1, 2)
    return torch.cat((first, then), dim=2)
