"""HiFT's discriminators: multi-period (HiFi-GAN) plus multi-resolution spectrogram (UnivNet / CosyVoice).

    MultiPeriodDiscriminator       periods 2, 3, 5, 7, 11: the waveform [B, L] is folded to [B, 1, L/p, p]
                                   and read by 2-D convs with (5, 1) kernels, stride (3, 1) (HiFi-GAN MPD)
    MultiResolutionDiscriminator   3 STFT magnitudes (n_fft, hop, win) = (1024, 120, 600), (2048, 240, 1200),
                                   (512, 50, 240) read by 2-D convs over [frames, bins] (CosyVoice's
                                   ``MultiResSpecDiscriminator``, UnivNet's MRD)

Every sub-discriminator returns logits (flattened to ``[B, n]``) and its feature maps (each layer's output
after the activation, then the logits map), for the LSGAN and feature-matching losses of ``losses.py``.
Convolutions are weight-normalised and activations are leaky ReLU (slope 0.1), as in HiFi-GAN. Channel
widths are configurable so tests can run tiny discriminators.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

LRELU_SLOPE = 0.1


@dataclass
class DiscriminatorConfig:
    """Sizes of the combined discriminator (defaults: HiFi-GAN's MPD and CosyVoice's MRD)."""

    periods: list[int] = field(default_factory=lambda: [2, 3, 5, 7, 11])
    period_channels: list[int] = field(default_factory=lambda: [32, 128, 512, 1024, 1024])
    period_kernel_size: int = 5
    period_stride: int = 3
    resolutions: list[list[int]] = field(
        default_factory=lambda: [[1024, 120, 600], [2048, 240, 1200], [512, 50, 240]]
    )
    resolution_channels: int = 32
    channels_last: bool = True  # run the 2-D convs channels-last (``conv_channels_last``); same values

    def __post_init__(self) -> None:
        if any(not isinstance(p, int) or p < 1 for p in self.periods):
            raise ValueError(f"periods must be positive integers, got {self.periods}")
        if len(self.period_channels) < 2 or any(c < 1 for c in self.period_channels):
            raise ValueError(f"period_channels needs at least 2 positive widths, got {self.period_channels}")
        if self.period_kernel_size < 1 or self.period_kernel_size % 2 == 0 or self.period_stride < 1:
            raise ValueError("period_kernel_size must be odd and positive, period_stride positive")
        for res in self.resolutions:
            if len(res) != 3 or not 0 < res[2] <= res[0] or res[1] < 1:
                raise ValueError(f"each resolution is [n_fft, hop, win] with 0 < win <= n_fft, got {res}")
        if self.resolution_channels < 1:
            raise ValueError(f"resolution_channels must be positive, got {self.resolution_channels}")
        if not self.periods and not self.resolutions:
            raise ValueError("the discriminator needs at least one period or one resolution")

    @classmethod
    def tiny(cls) -> DiscriminatorConfig:
        """Few channels, same structure: for tests."""
        return cls(period_channels=[4, 8, 16, 16, 16], resolution_channels=4)


Output = tuple[torch.Tensor, list[torch.Tensor]]  # (logits [B, n], feature maps)


def run_conv(conv: nn.Conv2d, x: torch.Tensor, channels_last: bool) -> torch.Tensor:
    """``conv(x)``, through ``conv_channels_last`` when ``channels_last``."""
    return conv_channels_last(conv, x) if channels_last else conv(x)


def conv_channels_last(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """``conv(x)`` computed channels-last (the same values, laid out ``[B, H, W, C]`` in memory).

    oneDNN runs these narrow (4-32 channel) convolutions and their gradients 2-3x as fast channels-last
    on a CPU. A one-channel input is the same in both layouts, so oneDNN would pick the slow one for the
    layer and its gradient; ``_OneChannelConv`` keeps its output and gradients channels-last instead."""
    plain = conv.groups == 1 and conv.padding_mode == "zeros" and not isinstance(conv.padding, str)
    if x.shape[1] == 1 and plain:
        return _OneChannelConv.apply(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation)
    return conv(x).contiguous(memory_format=torch.channels_last)


class _OneChannelConv(torch.autograd.Function):
    """``F.conv2d`` of a ``[B, 1, H, W]`` input with a channels-last output; its input gradient is the
    transposed convolution of the channels-last output gradient (oneDNN's own backward of this layer
    takes 8x as long on a CPU)."""

    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding, dilation):
        ctx.save_for_backward(x, weight)
        ctx.has_bias, ctx.geometry = bias is not None, (stride, padding, dilation)
        out = F.conv2d(x, weight, bias, stride, padding, dilation)
        return out.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.geometry
        grad = grad.contiguous(memory_format=torch.channels_last)
        # under autocast the forward ran in bf16/fp16: the gradients are computed in that dtype, returned
        # in the inputs' own
        x_dtype, w_dtype = x.dtype, weight.dtype
        x, weight = x.to(grad.dtype), weight.to(grad.dtype)
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            made = [
                (grad.shape[2 + i] - 1) * stride[i]
                - 2 * padding[i]
                + dilation[i] * (weight.shape[2 + i] - 1)
                + 1
                for i in range(2)
            ]
            extra = [x.shape[2 + i] - made[i] for i in range(2)]  # rows a stride skipped at the end
            grad_x = F.conv_transpose2d(grad, weight, None, stride, padding, extra, 1, dilation).to(x_dtype)
        if ctx.needs_input_grad[1] or ctx.needs_input_grad[2]:
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad,
                x,
                weight,
                [weight.shape[0]] if ctx.has_bias else None,
                list(stride),
                list(padding),
                list(dilation),
                False,
                [0, 0],
                1,
                [False, ctx.needs_input_grad[1], ctx.has_bias and ctx.needs_input_grad[2]],
            )
        grad_w = None if grad_w is None else grad_w.to(w_dtype)
        grad_b = None if grad_b is None else grad_b.to(w_dtype)
        return grad_x, grad_w, grad_b, None, None, None


class PeriodDiscriminator(nn.Module):
    """One period ``p``: waveform ``[B, L]`` (reflect-padded to a multiple of p) -> ``[B, 1, L/p, p]`` ->
    strided (k, 1) convs over the folded time axis; the last width layer has stride 1."""

    def __init__(
        self,
        period: int,
        channels: list[int],
        kernel_size: int = 5,
        stride: int = 3,
        channels_last: bool = True,
    ):
        super().__init__()
        self.period, self.channels_last = period, channels_last
        widths = [1, *channels]
        pad = (kernel_size // 2, 0)
        self.convs = nn.ModuleList(
            weight_norm(
                nn.Conv2d(
                    widths[i],
                    widths[i + 1],
                    (kernel_size, 1),
                    (stride if i < len(channels) - 1 else 1, 1),
                    pad,
                )
            )
            for i in range(len(channels))
        )
        self.conv_post = weight_norm(nn.Conv2d(channels[-1], 1, (3, 1), 1, (1, 0)))

    def forward(self, wave: torch.Tensor) -> Output:
        b, length = wave.shape
        extra = (-length) % self.period
        if extra:
            mode = "reflect" if length > extra else "replicate"
            wave = F.pad(wave.unsqueeze(1), (0, extra), mode=mode).squeeze(1)
        x = wave.view(b, 1, -1, self.period)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(run_conv(conv, x, self.channels_last), LRELU_SLOPE)
            features.append(x)
        x = self.conv_post(x)
        features.append(x)
        return x.flatten(1), features


class ResolutionDiscriminator(nn.Module):
    """One STFT resolution: waveform ``[B, L]`` -> magnitude ``[B, 1, frames, n_fft/2 + 1]`` -> a (3, 9)
    conv, three (3, 9) convs striding the frequency axis by 2, a (3, 3) conv, then a (3, 3) logits conv."""

    def __init__(
        self, n_fft: int, hop_length: int, win_length: int, channels: int = 32, channels_last: bool = True
    ):
        super().__init__()
        self.n_fft, self.hop_length, self.win_length = n_fft, hop_length, win_length
        self.channels_last = channels_last
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        c = channels
        self.convs = nn.ModuleList(
            [
                weight_norm(nn.Conv2d(1, c, (3, 9), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 9), stride=(1, 2), padding=(1, 4))),
                weight_norm(nn.Conv2d(c, c, (3, 3), padding=(1, 1))),
            ]
        )
        self.conv_post = weight_norm(nn.Conv2d(c, 1, (3, 3), padding=(1, 1)))

    def magnitude(self, wave: torch.Tensor) -> torch.Tensor:
        """``[B, L]`` -> ``[B, frames, n_fft/2 + 1]``: STFT magnitude, kept away from 0 for the gradient."""
        spec = torch.stft(
            wave,
            self.n_fft,
            self.hop_length,
            self.win_length,
            self.window.to(wave.dtype),
            return_complex=True,
        )
        return (spec.real.pow(2) + spec.imag.pow(2)).clamp(min=1e-7).sqrt().transpose(1, 2)

    def forward(self, wave: torch.Tensor) -> Output:
        x = self.magnitude(wave).unsqueeze(1)
        features = []
        for conv in self.convs:
            x = F.leaky_relu(run_conv(conv, x, self.channels_last), LRELU_SLOPE)
            features.append(x)
        x = self.conv_post(x)
        features.append(x)
        return x.flatten(1), features


class MultiPeriodDiscriminator(nn.Module):
    """HiFi-GAN's MPD: one ``PeriodDiscriminator`` per period."""

    def __init__(
        self,
        periods: list[int],
        channels: list[int],
        kernel_size: int = 5,
        stride: int = 3,
        channels_last: bool = True,
    ):
        super().__init__()
        self.discriminators = nn.ModuleList(
            PeriodDiscriminator(p, channels, kernel_size, stride, channels_last) for p in periods
        )

    def forward(self, wave: torch.Tensor) -> list[Output]:
        return [d(wave) for d in self.discriminators]


class MultiResolutionDiscriminator(nn.Module):
    """One ``ResolutionDiscriminator`` per ``[n_fft, hop, win]``."""

    def __init__(self, resolutions: list[list[int]], channels: int = 32, channels_last: bool = True):
        super().__init__()
        self.discriminators = nn.ModuleList(
            ResolutionDiscriminator(n_fft, hop, win, channels, channels_last)
            for n_fft, hop, win in resolutions
        )

    def forward(self, wave: torch.Tensor) -> list[Output]:
        return [d(wave) for d in self.discriminators]


class VocoderDiscriminator(nn.Module):
    """MPD + MRD. ``forward(wave [B, L])`` -> ``(logits, features)``: one ``[B, n]`` logits tensor and one
    list of feature maps per sub-discriminator (periods first, then resolutions)."""

    def __init__(self, config: DiscriminatorConfig | None = None):
        super().__init__()
        self.config = c = config or DiscriminatorConfig()
        self.mpd = MultiPeriodDiscriminator(
            c.periods, c.period_channels, c.period_kernel_size, c.period_stride, c.channels_last
        )
        self.mrd = MultiResolutionDiscriminator(c.resolutions, c.resolution_channels, c.channels_last)

    def forward(self, wave: torch.Tensor) -> tuple[list[torch.Tensor], list[list[torch.Tensor]]]:
        if wave.ndim != 2 or not wave.dtype.is_floating_point:
            raise ValueError(f"wave must be a float tensor [B, L], got {list(wave.shape)} {wave.dtype}")
        outputs = self.mpd(wave) + self.mrd(wave)
        return [logits for logits, _ in outputs], [features for _, features in outputs]
