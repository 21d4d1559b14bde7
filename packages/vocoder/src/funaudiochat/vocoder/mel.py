"""The vocoder's log-mel spectrogram: 24 kHz audio -> 80 bins at 50 Hz, as CosyVoice3 computes it.

CosyVoice3's ``feat_extractor`` (Matcha-TTS ``mel_spectrogram``, ``cosyvoice3.yaml``): n_fft 1920, hop 480,
window 1920 (periodic Hann), 80 mel bands from 0 Hz to ``f_max = None`` (sample_rate / 2 = 12 kHz; CosyVoice2
used 8 kHz) with librosa's defaults (Slaney mel scale, Slaney area normalisation); the signal is
reflect-padded by (n_fft - hop) / 2 on each side and framed with ``center=False``; magnitude
``sqrt(re^2 + im^2 + 1e-9)``; natural log of ``clamp(mel, min=1e-5)``.

L samples give ``(L - hop) // hop + 1`` frames, exactly ``L / 480`` when L is a multiple of 480. This mel is
the flow's training target, HiFT's input, and the mel of HiFT's reconstruction loss (differentiable).

Example:
    >>> mel = MelSpectrogram()(wave_24k)     # [B, L] -> [B, 80, L // 480]
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio.functional as AF
from torch import nn


@dataclass
class MelConfig:
    """STFT and mel settings; defaults are CosyVoice3's (see the module docstring). Units: Hz and samples."""

    sample_rate: int = 24000
    n_fft: int = 1920
    hop_length: int = 480
    win_length: int = 1920
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float | None = None  # None: sample_rate / 2
    log_floor: float = 1e-5

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.n_fft <= 0 or self.hop_length <= 0 or self.n_mels <= 0:
            raise ValueError("sample_rate, n_fft, hop_length and n_mels must be positive")
        if not 0 < self.win_length <= self.n_fft:
            raise ValueError(f"win_length must be in [1, n_fft={self.n_fft}], got {self.win_length}")
        if self.hop_length > self.n_fft:
            raise ValueError(f"hop_length ({self.hop_length}) must not exceed n_fft ({self.n_fft})")
        top = self.sample_rate / 2 if self.f_max is None else self.f_max
        if not 0 <= self.f_min < top <= self.sample_rate / 2:
            raise ValueError(
                f"need 0 <= f_min < f_max <= sample_rate / 2, got f_min={self.f_min}, f_max={self.f_max}"
            )
        if self.log_floor <= 0:
            raise ValueError(f"log_floor must be positive, got {self.log_floor}")

    @property
    def pad(self) -> int:
        """Reflect padding on each side, in samples: (n_fft - hop) / 2."""
        return (self.n_fft - self.hop_length) // 2

    @property
    def min_samples(self) -> int:
        """The shortest input: reflect padding needs more samples than it pads, and one frame must fit."""
        return max(self.pad + 1, self.n_fft - 2 * self.pad)


class MelSpectrogram(nn.Module):
    """Waveform ``[L]`` or ``[B, L]`` (float, at ``sample_rate``) -> log-mel ``[80, T]`` or ``[B, 80, T]``."""

    def __init__(self, config: MelConfig | None = None):
        super().__init__()
        self.config = c = config or MelConfig()
        f_max = c.sample_rate / 2 if c.f_max is None else c.f_max
        fbank = AF.melscale_fbanks(
            c.n_fft // 2 + 1, c.f_min, f_max, c.n_mels, c.sample_rate, norm="slaney", mel_scale="slaney"
        )
        self.register_buffer("fbank", fbank.T.contiguous(), persistent=False)  # [n_mels, n_freq]
        self.register_buffer("window", torch.hann_window(c.win_length, periodic=True), persistent=False)

    def num_frames(self, samples: int) -> int:
        """Frames made from ``samples`` input samples."""
        c = self.config
        return (samples + 2 * c.pad - c.n_fft) // c.hop_length + 1

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        c = self.config
        if wave.ndim not in (1, 2) or not wave.dtype.is_floating_point:
            raise ValueError(
                f"wave must be a float tensor [L] or [B, L], got {list(wave.shape)} {wave.dtype}"
            )
        if wave.shape[-1] < c.min_samples:
            raise ValueError(
                f"wave has {wave.shape[-1]} samples; the mel needs at least {c.min_samples} "
                f"({c.min_samples / c.sample_rate * 1000:.1f} ms at {c.sample_rate} Hz)"
            )
        single = wave.ndim == 1
        x = wave.unsqueeze(0) if single else wave
        x = torch.nn.functional.pad(x.unsqueeze(1), (c.pad, c.pad), mode="reflect").squeeze(1)
        spec = torch.stft(
            x,
            c.n_fft,
            hop_length=c.hop_length,
            win_length=c.win_length,
            window=self.window.to(x.dtype),
            center=False,
            return_complex=True,
        )
        magnitude = torch.sqrt(spec.real.pow(2) + spec.imag.pow(2) + 1e-9)
        mel = torch.matmul(self.fbank.to(x.dtype), magnitude)
        mel = torch.log(mel.clamp(min=c.log_floor))
        return mel[0] if single else mel
