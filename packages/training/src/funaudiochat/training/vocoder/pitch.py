"""F0 targets for HiFT's F0 predictor: a YIN pitch tracker in PyTorch, one value per mel frame.

CosyVoice trains HiFT's F0 predictor with an L1 loss against ``pyworld`` harvest F0. No such tracker is a
dependency here, so this module implements YIN (de Cheveigne & Kawahara, 2002):

    d(tau)   = sum_{j<W} (x_j - x_{j+tau})^2                 difference function (via FFT correlation)
    d'(tau)  = d(tau) tau / sum_{k=1..tau} d(k),  d'(0) = 1   cumulative-mean normalisation
    tau*     = the minimum of the first dip of d' below ``threshold`` in [sr/f0_max, sr/f0_min]
    f0       = sr / (tau* + parabolic refinement)

A frame is unvoiced (f0 = 0) when d' never dips below the threshold or the frame's RMS is under
``silence_rms``. Frame ``i`` is centred on sample ``i * hop + hop / 2``, the centre of mel frame ``i``
(see ``mel.py``), so ``L`` samples give ``L // hop`` values, aligned with the mel. Units: Hz, samples.

Example:
    >>> f0 = PitchTracker()(wave_24k)       # [B, L] -> [B, L // 480], Hz, 0 where unvoiced
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class PitchConfig:
    sample_rate: int = 24000
    hop_length: int = 480
    window_length: int = 960  # the YIN integration window W (40 ms)
    f0_min: float = 60.0
    f0_max: float = 600.0
    threshold: float = 0.15
    silence_rms: float = 3e-3  # about -50 dBFS

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.hop_length <= 0 or self.window_length <= 0:
            raise ValueError("sample_rate, hop_length and window_length must be positive")
        if not 0 < self.f0_min < self.f0_max <= self.sample_rate / 2:
            raise ValueError(f"need 0 < f0_min < f0_max <= sample_rate / 2, got {self.f0_min}, {self.f0_max}")
        if self.sample_rate / self.f0_max < 2:
            raise ValueError("f0_max is too high for the sample rate (the shortest lag must be >= 2)")
        if not 0 < self.threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {self.threshold}")
        if self.silence_rms < 0:
            raise ValueError(f"silence_rms must be >= 0, got {self.silence_rms}")


class PitchTracker:
    """Waveform ``[L]`` or ``[B, L]`` -> f0 ``[L // hop]`` or ``[B, L // hop]`` (float32, Hz; 0 = unvoiced).

    Computed in float64 without gradient (it makes targets)."""

    def __init__(self, config: PitchConfig | None = None):
        self.config = c = config or PitchConfig()
        self.tau_min = int(c.sample_rate // c.f0_max)
        self.tau_max = int(-(-c.sample_rate // c.f0_min))
        self.frame_length = c.window_length + self.tau_max

    @torch.no_grad()
    def __call__(self, wave: torch.Tensor) -> torch.Tensor:
        c = self.config
        if wave.ndim not in (1, 2) or not wave.dtype.is_floating_point:
            raise ValueError(
                f"wave must be a float tensor [L] or [B, L], got {list(wave.shape)} {wave.dtype}"
            )
        single = wave.ndim == 1
        x = (wave.unsqueeze(0) if single else wave).to(torch.float64)
        b, length = x.shape
        frames = length // c.hop_length
        if frames == 0:
            out = x.new_zeros(b, 0, dtype=torch.float32)
            return out[0] if single else out
        w, size = c.window_length, self.frame_length
        # frame i starts W/2 before the centre i*hop + hop/2 and spans W + tau_max samples
        left = w // 2 - c.hop_length // 2
        right = max(0, (frames - 1) * c.hop_length - left + size - length)
        padded = F.pad(x, (max(left, 0), right))
        start = max(-left, 0)
        chunks = padded[:, start:].unfold(1, size, c.hop_length)[:, :frames]  # [B, T, W + tau_max]

        n = 1 << (size + w - 1).bit_length()
        corr = torch.fft.irfft(torch.fft.rfft(chunks, n) * torch.fft.rfft(chunks[..., :w], n).conj(), n)[
            ..., : self.tau_max + 1
        ]
        energy = F.pad(chunks.pow(2).cumsum(-1), (1, 0))
        lags = torch.arange(self.tau_max + 1, device=x.device)
        shifted = energy[..., lags + w] - energy[..., lags]  # sum_{j<W} x_{j+tau}^2
        diff = (energy[..., w : w + 1] + shifted - 2 * corr).clamp(min=0)

        running = diff[..., 1:].cumsum(-1)
        cmnd = torch.ones_like(diff)
        safe = running > 1e-12
        cmnd[..., 1:] = torch.where(safe, diff[..., 1:] * lags[1:] / running.clamp(min=1e-12), 1.0)

        in_range = (lags >= self.tau_min) & (lags <= self.tau_max)
        below = (cmnd < c.threshold) & in_range
        voiced = below.any(-1)
        first = below.to(torch.int8).argmax(-1, keepdim=True)
        after = lags >= first
        ends = (~below & after).to(torch.int8)
        end = torch.where(ends.any(-1, keepdim=True), ends.argmax(-1, keepdim=True), lags.numel())
        dip = after & (lags < end)
        tau = cmnd.masked_fill(~dip, float("inf")).argmin(-1)

        lo, hi = (tau - 1).clamp(min=1), (tau + 1).clamp(max=self.tau_max)
        y0, y1, y2 = (cmnd.gather(-1, i.unsqueeze(-1)).squeeze(-1) for i in (lo, tau, hi))
        curvature = y0 - 2 * y1 + y2
        shift = torch.where(curvature > 0, 0.5 * (y0 - y2) / curvature.clamp(min=1e-12), 0.0).clamp(-1, 1)
        f0 = c.sample_rate / (tau.to(torch.float64) + shift).clamp(min=1.0)

        rms = chunks[..., :w].pow(2).mean(-1).sqrt()
        f0 = torch.where(voiced & (rms >= c.silence_rms), f0, 0.0).to(torch.float32)
        return f0[0] if single else f0
