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
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from funaudiochat.base.streaming import Cohorts, StreamState, row, shared
from funaudiochat.base.weights import check_state_dict
from torch import nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from .conv import Conv1d
from .kept import kept
from .nsf import HarmonicSource, SourceNoise
from .streaming import stream_conv


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
        alpha, inverse = self._terms()
        if torch.is_grad_enabled() and (x.requires_grad or self.alpha.requires_grad):
            wave = torch.sin(x * alpha)
            return torch.addcmul(x, wave, wave * inverse)
        # inference: one fresh tensor instead of four (fewer large allocations, fewer page faults)
        out = torch.mul(x, alpha).sin_()
        out.mul_(out)
        return torch.addcmul(x, out, inverse, out=out)

    def _terms(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``alpha`` and ``1 / (alpha + 1e-9)`` as ``[1, C, 1]``; without autograd they are kept until alpha
        changes (a stream calls each Snake once per chunk)."""

        def make():
            alpha = self.alpha[None, :, None]
            return alpha, 1.0 / (alpha + 1e-9)

        return kept(self, "_kept_terms", (self.alpha,), make)


Contexts = dict[str, torch.Tensor] | None  # a stream's carried conv inputs by layer name; None: offline


class StreamingConv(Conv1d):
    """A convolution that runs a whole signal or the next piece of a stream with the same weights and
    arithmetic: ``run(x, contexts, finalize)`` pads the signal itself when ``contexts`` is None, and
    otherwise takes the carried input frames from ``contexts[stream_name]`` and leaves the new ones
    there (``streaming.stream_conv``). ``left`` / ``right``: zero padding on each side offline (a stream's
    context starts as the left padding; the right padding, the look-ahead, comes with ``finalize``)."""

    left: int = 0
    right: int = 0
    stream_name: str = ""  # set by the model that owns the layer (HiFTGenerator names every conv)

    def fresh_context(self, batch_size: int, dtype, device) -> torch.Tensor:
        """The context of a stream at its start: ``left`` zeros ``[B, C_in, left]``."""
        return torch.zeros(batch_size, self.in_channels, self.left, dtype=dtype, device=device)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """The layer's input from the previous layer's output (identity; up-sampling repeats frames)."""
        return x

    def run(self, x: torch.Tensor, contexts: Contexts = None, finalize: bool = True) -> torch.Tensor:
        """``x [B, C_in, n]`` -> every output frame it determines ``[B, C_out, m]``.

        contexts: None for a whole signal, or a stream's contexts (this layer's entry is updated in
        place); finalize: the signal ends here (the right padding is applied)."""
        x = self.prepare(x)
        if contexts is None:
            return self.convolve(x, (self.left, self.right if finalize else 0))
        if finalize and self.right:
            x = F.pad(x, (0, self.right))
        y, contexts[self.stream_name] = stream_conv(self, x, contexts[self.stream_name])
        return y


class CausalConv1d(StreamingConv):
    """Stride-1 convolution padded on one side only: ``left`` (causal) or ``right`` (look-ahead)."""

    def __init__(self, in_channels, out_channels, kernel_size, dilation=1, side: str = "left"):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.pad = (kernel_size - 1) * dilation
        self.side = side
        self.left, self.right = (self.pad, 0) if side == "left" else (0, self.pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)


class CausalDownsample(StreamingConv):
    """Strided convolution with ``stride - 1`` zeros of left padding."""

    def __init__(self, in_channels, out_channels, kernel_size, stride):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride)
        self.pad = self.left = stride - 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)


class CausalUpsample(StreamingConv):
    """Nearest up-sampling by ``stride``, then a causal convolution of ``kernel_size``."""

    def __init__(self, in_channels, out_channels, kernel_size, stride):
        super().__init__(in_channels, out_channels, kernel_size)
        self.stride_up = stride
        self.pad = self.left = kernel_size - 1

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(self.stride_up, dim=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.run(x)


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

    def forward(self, x: torch.Tensor, contexts: Contexts = None) -> torch.Tensor:
        """``x [B, C, n]`` -> ``[B, C, n]``; ``contexts``: a stream's (see ``StreamingConv.run``)."""
        in_place = not torch.is_grad_enabled()  # after the first sum, x is this block's own tensor
        for i, (conv1, conv2, act1, act2) in enumerate(
            zip(self.convs1, self.convs2, self.activations1, self.activations2, strict=True)
        ):
            h = conv2.run(act2(conv1.run(act1(x), contexts)), contexts)
            x = x.add_(h) if in_place and i else x + h
        return x


def mean_of(tensors: Iterable[torch.Tensor]) -> torch.Tensor:
    """The mean of freshly made tensors (resblock outputs); without autograd, summed into the first."""
    items = iter(tensors)
    total, count = next(items), 1
    in_place = not torch.is_grad_enabled()
    for item in items:
        total = total.add_(item) if in_place else total + item
        count += 1
    return total.div_(count) if in_place else total / count


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

    def forward(self, mel: torch.Tensor, finalize: bool = True, contexts: Contexts = None) -> torch.Tensor:
        """mel ``[B, 80, T]`` -> f0 ``[B, T']``; ``contexts``: a stream's (its f0 comes as soon as the
        look-ahead is there)."""
        x = mel
        for layer in self.condnet:
            x = layer.run(x, contexts, finalize) if isinstance(layer, StreamingConv) else layer(x)
        w, b = self.classifier.weight.to(x.dtype), self.classifier.bias.to(x.dtype)
        return F.linear(x.transpose(1, 2), w, b).squeeze(-1).abs()


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
        for name, module in self.named_modules():  # a stream keeps each conv's context under its name
            if isinstance(module, StreamingConv):
                module.stream_name = name

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
        magnitude, phase = magnitude.float().clamp(max=1e2), phase.float()  # no bf16 complex (autocast)
        spec = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
        return torch.istft(spec, n_fft, hop, n_fft, window=self.stft_window)

    def decode(self, mel: torch.Tensor, source: torch.Tensor, finalize: bool = True) -> torch.Tensor:
        """Mel ``[B, 80, T]`` and source ``[B, 1, 480 T]`` -> waveform ``[B, 480 T]``. Without ``finalize``
        the last ``conv_pre_look_right`` mel frames are look-ahead only and the last 480 samples of the
        rest are held back: ``[B, 480 (T - look - 1)]``."""
        cfg = self.config
        source_spec = self._stft(source.squeeze(1))
        if not finalize:
            source_spec = source_spec[:, :, : -math.prod(cfg.upsample_rates) * cfg.conv_pre_look_right]
        x = self._generate(mel, source_spec, None, finalize)
        half = cfg.istft_n_fft // 2 + 1
        wave = self._istft(torch.exp(x[:, :half]), torch.sin(x[:, half:]))
        if not finalize:  # the last frame's samples still depend on the look-ahead: held back
            wave = wave[:, : -cfg.samples_per_frame]
        return wave.clamp(-cfg.audio_limit, cfg.audio_limit)

    def _generate(
        self, mel: torch.Tensor, source_spec: torch.Tensor, state: HiFTState | None, finalize: bool
    ) -> torch.Tensor:
        """The filter path shared by ``decode`` (``state`` None: whole signals) and ``step`` (the next
        pieces of a stream; ``state``'s contexts, source queue and frame count are updated in place):
        mel ``[B, 80, n]`` and the source's STFT frames ``[B, n_fft + 2, m]`` -> conv_post output
        ``[B, n_fft + 2, m']`` (log-magnitude and phase of the output's STFT frames)."""
        cfg = self.config
        contexts = None if state is None else state.context
        # each stage's source branch; in a stream it runs ahead of the main path, its frames wait in a queue
        pending = [None] * len(self.ups) if state is None else state.source_pending
        for i, (down, block) in enumerate(zip(self.source_downs, self.source_resblocks, strict=True)):
            branch = block(down.run(source_spec, contexts), contexts)
            pending[i] = branch if pending[i] is None else torch.cat((pending[i], branch), dim=2)
        x = self.conv_pre.run(mel, contexts, finalize)
        kernels = len(cfg.resblock_kernel_sizes)
        main_frames = 0 if state is None else state.main_frames
        for i, up in enumerate(self.ups):
            x = up.run(F.leaky_relu(x, cfg.lrelu_slope), contexts)
            if i == len(self.ups) - 1:
                if main_frames == 0 and x.shape[2]:  # a reflection pad of one frame at the very start
                    x = torch.cat((x[:, :, 1:2], x), dim=2)
                main_frames += x.shape[2]
            n = x.shape[2]
            if pending[i].shape[2] < n:
                raise RuntimeError(f"HiFT: the source branch of stage {i} fell behind the main path")
            x, pending[i] = x + pending[i][:, :, :n], pending[i][:, :, n:]
            x = mean_of(self.resblocks[i * kernels + j](x, contexts) for j in range(kernels))
        if state is not None:
            state.source_pending, state.main_frames = pending, main_frames
        return self.conv_post.run(F.leaky_relu(x), contexts)

    def source(
        self,
        mel: torch.Tensor,
        noise: SourceNoise,
        finalize: bool = True,
        start: int = 0,
        detach_f0: bool = False,
    ):
        """f0 ``[B, T']`` and the excitation ``[B, 1, 480 T']`` of ``mel`` (T' = T, or T - 3 without
        ``finalize``); ``start`` is the sample position of the first frame (for the noise). ``detach_f0``
        (training, as CosyVoice does): the excitation does not pass gradients back into the F0 predictor,
        which then learns from a loss on the returned f0 alone."""
        f0 = self.f0_predictor(mel.to(self.config.f0_dtype), finalize=finalize)
        excitation, _ = self.m_source(f0.detach() if detach_f0 else f0, noise, start)
        return f0.to(mel.dtype), excitation.transpose(1, 2)

    @torch.inference_mode()
    def inference(self, mel: torch.Tensor, finalize: bool = True, noise: SourceNoise | None = None):
        """Mel ``[B, 80, T]`` -> ``(waveform [B, 480 T], source [B, 1, 480 T])`` with ``finalize``; without,
        the last 3 frames are the F0 predictor's look-ahead and the next 4 conv_pre's (see ``decode``)."""
        noise = noise or SourceNoise(self.config.nb_harmonics + 1)
        with parametrize.cached():  # each weight-normed kernel is computed once per call
            _, source = self.source(mel, noise, finalize)
            if finalize:
                return self.decode(mel, source, True), source
            return self.decode(mel[:, :, : -self.f0_predictor.look_ahead], source, False), source

    # -- streaming ------------------------------------------------------------------------------------------

    def init_state(self, batch_size: int = 1, noise: SourceNoise | None = None) -> HiFTState:
        """A fresh streaming state for ``batch_size`` streams that advance together (see ``step``)."""
        param = self.conv_post.bias
        context = {}
        for name, module in self.named_modules():
            if isinstance(module, StreamingConv):
                dtype = self.config.f0_dtype if name.startswith("f0_predictor.") else param.dtype
                context[name] = module.fresh_context(batch_size, dtype, param.device)
        harmonics = self.config.nb_harmonics + 1
        overlap = self.config.istft_n_fft - self.config.istft_hop_len
        return HiFTState(
            context=context,
            noise=noise or SourceNoise(harmonics),
            phase=param.new_zeros(batch_size, harmonics, dtype=self.config.f0_dtype),
            source_pending=[
                param.new_zeros(batch_size, block.convs1[0].in_channels, 0) for block in self.source_resblocks
            ],
            stft_input=param.new_zeros(batch_size, 0),
            ola=param.new_zeros(batch_size, overlap),
            ola_envelope=param.new_zeros(overlap),
            istft_position=-(self.config.istft_n_fft // 2),
        )

    @torch.inference_mode()
    def step(
        self, mel: torch.Tensor | Sequence[torch.Tensor], state: HiFTState | Cohorts, finalize: bool = False
    ):
        """Stream the next mel frames of every row -> per row the waveform samples they complete ``[m]``;
        ``state`` is updated in place (the streaming contract of ``funaudiochat.base``).

        mel: ``[B, 80, n]`` (n >= 0), or for a ``Cohorts`` state one ``[80, n]`` tensor per row; state: a
        lockstep ``HiFTState`` from ``init_state``, or ``Cohorts`` of them (sessions at different
        positions). Every sample that the frames so far determine comes out at once: the F0 predictor
        waits for 3 frames of look-ahead and ``conv_pre`` for 4, so a stream lags 4 frames (+ 4 samples of
        iSTFT overlap) until ``finalize=True``, which ends the stream and flushes the rest. The samples of
        all steps joined equal ``inference(all frames)`` (float64 F0, the default: to ~1e-5; the phase of
        the harmonic source is accumulated across steps), by the same filter code (``_generate``)."""
        if isinstance(state, Cohorts):
            return state.run(list(mel), lambda part, group: self._step_lockstep(part, group, finalize))
        return list(self._step_lockstep(mel, state, finalize).unbind(0))

    def _step_lockstep(
        self, mel: torch.Tensor, state: HiFTState, finalize: bool, starts: list[int] | None = None
    ) -> torch.Tensor:
        """``step`` for one lockstep state: mel ``[B, 80, n]`` -> waveform ``[B, m]``; ``starts``: each row's
        own sample position (states joined by ``hift_batch``), instead of the state's shared one."""
        if state.finished:
            raise ValueError("this HiFT stream is finalized; start a new one with init_state()")
        cfg = self.config
        if mel.ndim != 3 or mel.shape[1] != cfg.in_channels or mel.shape[0] != state.batch_size:
            raise ValueError(
                f"mel must be [B={state.batch_size}, {cfg.in_channels}, frames], got {list(mel.shape)}"
            )
        if mel.shape[2] == 0 and not finalize:  # nothing new: the state stays as it is (~60 ops saved)
            return mel.new_zeros(mel.shape[0], 0)
        with parametrize.cached():
            f0 = self.f0_predictor(mel.to(cfg.f0_dtype), finalize, state.context)
            started = state.source_samples > 0
            position = state.source_samples if starts is None else starts
            source, phase = self.m_source(f0, state.noise, position, state.phase if started else None)
            spec, stft_input = self._stream_stft(source.squeeze(-1), state, finalize)
            x = self._generate(mel, spec, state, finalize)
            wave, ola, envelope, position = self._stream_istft(x, state, finalize)
        state.phase = phase.to(state.phase.dtype) if source.shape[1] else state.phase
        state.stft_input, state.ola, state.ola_envelope = stft_input, ola, envelope
        state.istft_position = position
        state.source_samples += source.shape[1]
        state.finished = finalize
        return wave.clamp(-cfg.audio_limit, cfg.audio_limit)

    def _stream_stft(self, source: torch.Tensor, state: HiFTState, finalize: bool):
        """New source samples ``[B, L]`` -> the STFT frames they complete ``[B, n_fft + 2, m]`` and the
        samples kept for the next frames. As ``torch.stft(center=True)``: the first and last ``n_fft / 2``
        samples are reflected."""
        n_fft, hop, half = self.config.istft_n_fft, self.config.istft_hop_len, self.config.istft_n_fft // 2
        buffer = state.stft_input
        if state.source_samples == 0 and source.shape[1]:
            buffer = source[:, 1 : half + 1].flip(1)
        buffer = torch.cat((buffer, source), dim=1)
        if finalize:
            buffer = torch.cat((buffer, buffer[:, -half - 1 : -1].flip(1)), dim=1)
        if buffer.shape[1] < n_fft:
            return buffer.new_zeros(buffer.shape[0], n_fft + 2, 0), buffer
        spec = torch.stft(
            buffer, n_fft, hop, n_fft, window=self.stft_window, center=False, return_complex=True
        )
        return torch.cat((spec.real, spec.imag), dim=1), buffer[:, spec.shape[2] * hop :]

    def _stream_istft(self, x: torch.Tensor, state: HiFTState, finalize: bool):
        """conv_post frames ``[B, n_fft + 2, m]`` -> the waveform samples they complete, by overlap-add
        with the tail carried in the state (as ``torch.istft(center=True)``, whose first and last
        ``n_fft / 2`` samples are cut)."""
        n_fft, hop = self.config.istft_n_fft, self.config.istft_hop_len
        half, overlap = n_fft // 2 + 1, n_fft - hop
        b, m = x.shape[0], x.shape[2]
        size = hop * m + overlap
        added, envelope = x.new_zeros(b, size), x.new_zeros(size)
        if m:
            magnitude = torch.exp(x[:, :half]).clamp(max=1e2)
            phase = torch.sin(x[:, half:])
            spec = torch.complex(magnitude * torch.cos(phase), magnitude * torch.sin(phase))
            frames = torch.fft.irfft(spec, n_fft, dim=1) * self.stft_window[:, None]
            added = F.fold(frames, (1, size), (1, n_fft), stride=(1, hop)).reshape(b, size)
            window_sq = (self.stft_window**2)[None, :, None].expand(1, n_fft, m)
            envelope = F.fold(window_sq, (1, size), (1, n_fft), stride=(1, hop)).reshape(size)
        added[:, :overlap] += state.ola
        envelope[:overlap] += state.ola_envelope
        ready = hop * m + (n_fft // 2 - hop if finalize else 0)
        wave = added[:, :ready] / envelope[:ready]
        start = state.istft_position
        wave = wave[:, max(0, -start) :]
        return wave, added[:, ready:][:, :overlap], envelope[ready:][:overlap], start + ready


@dataclass
class HiFTState(StreamState):
    """What ``HiFTGenerator.step`` carries from one mel chunk to the next, for B streams in lockstep (a
    ``StreamState``; sessions at different positions are joined as ``Cohorts`` of these).

    Per row: ``context``: per convolution (by module name), the input frames later outputs still need
    ``[B, C, n]``; ``phase``: accumulated harmonic phase ``[B, H]``; ``source_pending``: per up-sampling
    stage, source-branch frames the main path has not reached yet; ``stft_input``: source samples not yet
    in a complete STFT frame ``[B, n]``; ``ola``: iSTFT overlap-add sums of positions later frames still
    add to. Shared by the batch: the ``noise`` source, ``ola_envelope`` (window-square sums of those
    positions), ``istft_position`` (the output sample of the next overlap-add position; negative: centre
    padding), ``source_samples`` (excitation samples made so far: the noise position), ``main_frames``
    (frames of the main path at the last stage's rate) and ``finished``."""

    context: dict[str, torch.Tensor] = row()
    phase: torch.Tensor = row()
    source_pending: list[torch.Tensor] = row()
    stft_input: torch.Tensor = row()
    ola: torch.Tensor = row()
    noise: SourceNoise | None = shared(default=None)
    ola_envelope: torch.Tensor | None = shared(default=None)
    istft_position: int = shared(default=0)
    source_samples: int = shared(default=0)
    main_frames: int = shared(default=0)
    finished: bool = shared(default=False)

    @property
    def batch_size(self) -> int:
        return self.ola.shape[0]
