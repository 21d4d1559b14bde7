"""HiFT: 80-bin mel (50 Hz) -> 24 kHz waveform, CosyVoice3's causal ``CausalHiFTGenerator``.

    mel [B, 80, T]
      -> F0 predictor (causal convs + ELU, |linear|)         f0 [B, T]
      -> neural-source-filter: 9 harmonics of f0 at 24 kHz,  source [B, 1, 480 T]
         phase accumulated at the frame rate, noise added, tanh(linear(9 -> 1))
      -> conv_pre (look-ahead 4 frames) and 3 causal up-sampling stages x8, x5, x3 with residual blocks
         (Snake activations), each fused with the STFT of the source, down-sampled to its rate
      -> conv_post -> log-magnitude and phase of a 16-point STFT -> iSTFT (hop 4)   [B, 480 T]

Parameter names and shapes are those of CosyVoice3's ``hift`` state dict (weight-normed convolutions as
``parametrizations.weight.original0/1``), so its weights load unchanged.

The source noise is explicit state: ``SourceNoise`` gives the initial harmonic phases and the additive
noise at every sample position from a seed, so any range of samples can be made again (streaming), or
fixed tensors can be given (the reference draws them once at construction).

Example:
    >>> hift = HiFTGenerator(HiFTConfig.tiny())
    >>> wave = hift.inference(mel)              # [B, 480 * T], in [-0.99, 0.99]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from .weights import check_state_dict


@dataclass
class HiFTConfig:
    """Sizes of HiFT; field names follow CosyVoice3's ``CausalHiFTGenerator`` arguments."""

    in_channels: int = 80
    base_channels: int = 512
    nb_harmonics: int = 8
    sampling_rate: int = 24000
    nsf_alpha: float = 0.1
    nsf_sigma: float = 0.003
    nsf_voiced_threshold: float = 10.0
    upsample_rates: list[int] = field(default_factory=lambda: [8, 5, 3])
    upsample_kernel_sizes: list[int] = field(default_factory=lambda: [16, 11, 7])
    istft_n_fft: int = 16
    istft_hop_len: int = 4
    resblock_kernel_sizes: list[int] = field(default_factory=lambda: [3, 7, 11])
    resblock_dilation_sizes: list[list[int]] = field(default_factory=lambda: [[1, 3, 5]] * 3)
    source_resblock_kernel_sizes: list[int] = field(default_factory=lambda: [7, 7, 11])
    source_resblock_dilation_sizes: list[list[int]] = field(default_factory=lambda: [[1, 3, 5]] * 3)
    lrelu_slope: float = 0.1
    audio_limit: float = 0.99
    conv_pre_look_right: int = 4
    f0_cond_channels: int = 512
    # The F0 predictor runs in float64: the causal source is sensitive to its precision (CosyVoice3 does
    # the same).
    f0_dtype: torch.dtype = torch.float64

    @property
    def samples_per_frame(self) -> int:
        """Output samples per mel frame: prod(upsample_rates) * hop (480 at 24 kHz, 50 Hz mel)."""
        return math.prod(self.upsample_rates) * self.istft_hop_len

    @classmethod
    def tiny(cls) -> HiFTConfig:
        return cls(base_channels=32, f0_cond_channels=32)


class Snake(nn.Module):
    """``x + sin^2(alpha x) / (alpha + 1e-9)`` with one ``alpha`` per channel; ``[B, C, T]``."""

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.ones(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        alpha = self.alpha[None, :, None]
        return x + (1.0 / (alpha + 1e-9)) * torch.sin(x * alpha).pow(2)


class CausalConv1d(nn.Conv1d):
    """Stride-1 convolution padded on one side only: ``left`` (causal) or ``right`` (look-ahead).

    ``forward(x, context)``: ``context [B, C, pad]`` replaces the zero padding (past frames for ``left``,
    future frames for ``right``); the output has as many frames as ``x``.
    """

    def __init__(self, in_channels, out_channels, kernel_size, dilation=1, side: str = "left"):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.pad = (kernel_size - 1) * dilation
        self.side = side

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        if context is None:
            context = x.new_zeros(x.shape[0], x.shape[1], self.pad)
        x = torch.cat([context, x] if self.side == "left" else [x, context], dim=2)
        return super().forward(x)

    def _conv_forward(self, x, weight, bias):
        # Runs in the input's precision (the F0 predictor is evaluated in float64).
        return super()._conv_forward(x, weight.to(x.dtype), None if bias is None else bias.to(x.dtype))


class CausalDownsample(nn.Conv1d):
    """Strided convolution with ``stride - 1`` zeros of left padding."""

    def __init__(self, in_channels, out_channels, kernel_size, stride):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride)
        self.pad = stride - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(F.pad(x, (self.pad, 0)))


class CausalUpsample(nn.Conv1d):
    """Nearest up-sampling by ``stride``, then a causal convolution of ``kernel_size``."""

    def __init__(self, in_channels, out_channels, kernel_size, stride):
        super().__init__(in_channels, out_channels, kernel_size)
        self.stride_up = stride
        self.pad = kernel_size - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=self.stride_up, mode="nearest")
        return super().forward(F.pad(x, (self.pad, 0)))


class ResBlock(nn.Module):
    """HiFi-GAN residual block with Snake activations and causal dilated convolutions."""

    def __init__(self, channels: int, kernel_size: int, dilations: list[int]):
        super().__init__()
        self.convs1 = nn.ModuleList(
            weight_norm(CausalConv1d(channels, channels, kernel_size, dilation=d)) for d in dilations
        )
        self.convs2 = nn.ModuleList(
            weight_norm(CausalConv1d(channels, channels, kernel_size)) for _ in dilations
        )
        self.activations1 = nn.ModuleList(Snake(channels) for _ in dilations)
        self.activations2 = nn.ModuleList(Snake(channels) for _ in dilations)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv1, conv2, act1, act2 in zip(
            self.convs1, self.convs2, self.activations1, self.activations2, strict=True
        ):
            x = x + conv2(act2(conv1(act1(x))))
        return x


class F0Predictor(nn.Module):
    """``CausalConvRNNF0Predictor``: mel ``[B, 80, T]`` -> f0 ``[B, T]`` (Hz, non-negative).

    The first convolution looks 3 frames ahead; with ``finalize=False`` the last 3 input frames serve as
    that look-ahead only, and the output has ``T - 3`` frames.
    """

    def __init__(self, in_channels: int, cond_channels: int):
        super().__init__()
        self.condnet = nn.Sequential(
            weight_norm(CausalConv1d(in_channels, cond_channels, 4, side="right")),
            nn.ELU(),
            weight_norm(CausalConv1d(cond_channels, cond_channels, 3)),
            nn.ELU(),
            weight_norm(CausalConv1d(cond_channels, cond_channels, 3)),
            nn.ELU(),
            weight_norm(CausalConv1d(cond_channels, cond_channels, 3)),
            nn.ELU(),
            weight_norm(CausalConv1d(cond_channels, cond_channels, 3)),
            nn.ELU(),
        )
        self.classifier = nn.Linear(cond_channels, 1)

    @property
    def look_ahead(self) -> int:
        return self.condnet[0].pad

    def forward(self, mel: torch.Tensor, finalize: bool = True) -> torch.Tensor:
        if finalize:
            x = self.condnet[0](mel)
        else:
            x = self.condnet[0](mel[:, :, : -self.look_ahead], mel[:, :, -self.look_ahead :])
        for layer in self.condnet[1:]:
            x = layer(x)
        w, b = self.classifier.weight.to(x.dtype), self.classifier.bias.to(x.dtype)
        return F.linear(x.transpose(1, 2), w, b).squeeze(-1).abs()


class SourceNoise:
    """The random parts of the harmonic source, reproducible per sample position.

    ``phases()`` ``[H]``: initial phase offsets (cycles in [0, 1)) of the H harmonics, the fundamental's 0.
    ``noise(start, length)`` ``[length, H]``: uniform [0, 1) noise at samples ``start .. start+length``,
    drawn in fixed blocks from ``seed`` so that any range is the same whichever way it is asked for.
    Fixed tensors (``phases``, ``noise``) can be given instead, e.g. to reproduce a reference run.
    """

    BLOCK = 24000

    def __init__(
        self,
        harmonics: int,
        seed: int = 0,
        phases: torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ):
        self.harmonics = harmonics
        self.seed = seed
        if phases is None:
            phases = torch.rand(harmonics, generator=torch.Generator().manual_seed(seed))
            phases[0] = 0.0
        self._phases = phases.reshape(harmonics).float()
        self._noise = None if noise is None else noise.reshape(-1, harmonics).float()
        self._blocks: dict[int, torch.Tensor] = {}

    def phases(self) -> torch.Tensor:
        return self._phases

    def _block(self, index: int) -> torch.Tensor:
        if index not in self._blocks:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + index + 1)
            self._blocks[index] = torch.rand(self.BLOCK, self.harmonics, generator=g)
        return self._blocks[index]

    def noise(self, start: int, length: int) -> torch.Tensor:
        if self._noise is not None:
            if start + length > self._noise.shape[0]:
                raise ValueError(
                    f"fixed source noise covers {self._noise.shape[0]} samples, asked for {start + length}"
                )
            return self._noise[start : start + length]
        first, last = (
            start // self.BLOCK,
            (start + length - 1) // self.BLOCK if length else start // self.BLOCK,
        )
        joined = torch.cat([self._block(i) for i in range(first, last + 1)])
        offset = start - first * self.BLOCK
        return joined[offset : offset + length]


class HarmonicSource(nn.Module):
    """Neural source filter: f0 at the output rate ``[B, L]`` -> excitation ``[B, L, 1]``.

    Harmonics 1..H of f0; phase accumulated at frame rate (linear down-sampling by ``frame``, cumulative
    sum, nearest up-sampling), amplitude ``alpha`` where voiced (f0 > threshold), plus noise of amplitude
    ``sigma`` (voiced) or ``alpha / 3`` (unvoiced); merged by ``tanh(l_linear(.))``.
    """

    def __init__(self, config: HiFTConfig):
        super().__init__()
        self.harmonics = config.nb_harmonics + 1
        self.sampling_rate = config.sampling_rate
        self.frame = config.samples_per_frame
        self.alpha = config.nsf_alpha
        self.sigma = config.nsf_sigma
        self.threshold = config.nsf_voiced_threshold
        self.l_linear = nn.Linear(self.harmonics, 1)

    def forward(self, f0: torch.Tensor, noise: SourceNoise, start: int = 0) -> torch.Tensor:
        b, length = f0.shape
        multiples = torch.arange(1, self.harmonics + 1, device=f0.device, dtype=f0.dtype)
        freqs = f0[:, :, None] * multiples  # [B, L, H]
        cycles = (freqs / self.sampling_rate) % 1
        cycles[:, 0, :] = cycles[:, 0, :] + noise.phases().to(cycles)
        per_frame = F.interpolate(cycles.transpose(1, 2), scale_factor=1 / self.frame, mode="linear")
        phase = torch.cumsum(per_frame, dim=2) * 2 * math.pi
        phase = F.interpolate(phase * self.frame, scale_factor=self.frame, mode="nearest").transpose(1, 2)
        sines = torch.sin(phase) * self.alpha
        voiced = (f0 > self.threshold).to(sines.dtype)[:, :, None]
        amplitude = voiced * self.sigma + (1 - voiced) * self.alpha / 3
        sines = sines * voiced + amplitude * noise.noise(start, length).to(sines)[None]
        return torch.tanh(self.l_linear(sines))


class HiFTGenerator(nn.Module):
    """CosyVoice3's causal HiFT generator (see the module docstring)."""

    def __init__(self, config: HiFTConfig | None = None):
        super().__init__()
        self.config = config = config or HiFTConfig()
        n_fft, base = config.istft_n_fft, config.base_channels
        self.m_source = HarmonicSource(config)
        self.conv_pre = weight_norm(
            CausalConv1d(config.in_channels, base, config.conv_pre_look_right + 1, side="right")
        )
        self.ups = nn.ModuleList(
            weight_norm(CausalUpsample(base // 2**i, base // 2 ** (i + 1), k, u))
            for i, (u, k) in enumerate(zip(config.upsample_rates, config.upsample_kernel_sizes, strict=True))
        )
        down_rates = [1] + config.upsample_rates[::-1][:-1]
        cumulative = [math.prod(down_rates[: i + 1]) for i in range(len(down_rates))][::-1]
        self.source_downs = nn.ModuleList()
        self.source_resblocks = nn.ModuleList()
        for i, (u, k, d) in enumerate(
            zip(
                cumulative,
                config.source_resblock_kernel_sizes,
                config.source_resblock_dilation_sizes,
                strict=True,
            )
        ):
            channels = base // 2 ** (i + 1)
            self.source_downs.append(
                CausalConv1d(n_fft + 2, channels, 1)
                if u == 1
                else CausalDownsample(n_fft + 2, channels, 2 * u, u)
            )
            self.source_resblocks.append(ResBlock(channels, k, d))
        self.resblocks = nn.ModuleList()
        for i in range(len(self.ups)):
            channels = base // 2 ** (i + 1)
            for k, d in zip(config.resblock_kernel_sizes, config.resblock_dilation_sizes, strict=True):
                self.resblocks.append(ResBlock(channels, k, d))
        self.conv_post = weight_norm(CausalConv1d(channels, n_fft + 2, 7))
        self.f0_predictor = F0Predictor(config.in_channels, config.f0_cond_channels)
        self.register_buffer("stft_window", torch.hann_window(n_fft, periodic=True), persistent=False)

    @classmethod
    def from_state_dict(
        cls, state_dict: dict[str, torch.Tensor], config: HiFTConfig | None = None, source: str = "state dict"
    ) -> HiFTGenerator:
        """Build from a CosyVoice3 ``hift`` state dict (keys as saved, ``generator.`` prefix allowed);
        any missing, unexpected or mis-shaped key is a ``ValueError`` that lists them."""
        state_dict = {k.removeprefix("generator."): v for k, v in state_dict.items()}
        model = cls(config)
        check_state_dict(model, state_dict, source)
        model.load_state_dict(state_dict)
        return model

    def _stft(self, x: torch.Tensor) -> torch.Tensor:
        n_fft, hop = self.config.istft_n_fft, self.config.istft_hop_len
        spec = torch.stft(x, n_fft, hop, n_fft, window=self.stft_window, return_complex=True)
        return torch.cat([spec.real, spec.imag], dim=1)

    def _istft(self, magnitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
        n_fft, hop = self.config.istft_n_fft, self.config.istft_hop_len
        magnitude = magnitude.clamp(max=1e2)
        spec = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
        return torch.istft(spec, n_fft, hop, n_fft, window=self.stft_window)

    def decode(self, mel: torch.Tensor, source: torch.Tensor, finalize: bool = True) -> torch.Tensor:
        """Mel ``[B, 80, T]`` and source ``[B, 1, 480 T]`` -> waveform ``[B, 480 T]``. Without ``finalize``
        the last ``conv_pre_look_right`` mel frames are look-ahead only and the last 480 samples of the
        rest are held back: ``[B, 480 (T - look - 1)]``."""
        cfg = self.config
        source_spec = self._stft(source.squeeze(1))
        if finalize:
            x = self.conv_pre(mel)
        else:
            look = cfg.conv_pre_look_right
            x = self.conv_pre(mel[:, :, :-look], mel[:, :, -look:])
            source_spec = source_spec[:, :, : -math.prod(cfg.upsample_rates) * look]
        kernels = len(cfg.resblock_kernel_sizes)
        for i, up in enumerate(self.ups):
            x = up(F.leaky_relu(x, cfg.lrelu_slope))
            if i == len(self.ups) - 1:
                x = F.pad(x, (1, 0), mode="reflect")
            x = x + self.source_resblocks[i](self.source_downs[i](source_spec))
            x = sum(self.resblocks[i * kernels + j](x) for j in range(kernels)) / kernels
        x = self.conv_post(F.leaky_relu(x))
        half = cfg.istft_n_fft // 2 + 1
        wave = self._istft(torch.exp(x[:, :half]), torch.sin(x[:, half:]))
        if not finalize:  # the last frame's samples still depend on the look-ahead: held back
            wave = wave[:, : -cfg.samples_per_frame]
        return wave.clamp(-cfg.audio_limit, cfg.audio_limit)

    def source(self, mel: torch.Tensor, noise: SourceNoise, finalize: bool = True, start: int = 0):
        """f0 ``[B, T']`` and the excitation ``[B, 1, 480 T']`` of ``mel`` (T' = T, or T - 3 without
        ``finalize``); ``start`` is the sample position of the first frame (for the noise)."""
        f0 = self.f0_predictor(mel.to(self.config.f0_dtype), finalize=finalize).to(mel.dtype)
        f0_up = f0.repeat_interleave(self.config.samples_per_frame, dim=1)
        return f0, self.m_source(f0_up, noise, start).transpose(1, 2)

    @torch.inference_mode()
    def inference(self, mel: torch.Tensor, finalize: bool = True, noise: SourceNoise | None = None):
        """Mel ``[B, 80, T]`` -> ``(waveform [B, 480 T], source [B, 1, 480 T])`` with ``finalize``; without,
        the last 3 frames are the F0 predictor's look-ahead and the next 4 conv_pre's (see ``decode``)."""
        noise = noise or SourceNoise(self.config.nb_harmonics + 1)
        _, source = self.source(mel, noise, finalize)
        if finalize:
            return self.decode(mel, source, True), source
        return self.decode(mel[:, :, : -self.f0_predictor.look_ahead], source, False), source
