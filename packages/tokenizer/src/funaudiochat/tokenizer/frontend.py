"""The Whisper / S3 log-mel frontend (16 kHz in, 100 frames per second out).

Numerics are those of ``whisper.log_mel_spectrogram`` and ``s3tokenizer.log_mel_spectrogram``:
STFT (n_fft 400, hop 160, periodic Hann, centred with reflect padding) with the last frame dropped,
power spectrum, Slaney-normalised Slaney-scale mel filters (librosa's, built here by torchaudio),
``log10(clamp(x, 1e-10))``, ``max(x, max(x) - 8)`` per utterance, then ``(x + 4) / 4``.

Batches are exact: every item gets the frames it would get alone (its own reflect padding and its own
maximum), and frames past an item's length are zero.

Two ends of a signal (``tail``): ``"reflect"`` (the default) is the S3 tokenizer's, an utterance STFT'd
alone: reflect padding at both ends and ``len // 160`` frames. ``"zeros"`` is Hugging Face's
``WhisperFeatureExtractor`` called with ``padding="max_length"``, as the official processor (and vLLM)
call it for the continuous encoder: the audio is followed by zeros (the 30 s padding), so the frames that
overhang its end see zeros, there are ``ceil(len / 160)`` of them (the extractor's attention mask), and
the maximum is taken over every frame that reaches the audio (the extractor's, over its 3000 frames).

Example:
    >>> frontend = WhisperFrontend()
    >>> mel, mel_lengths = frontend(waves, wave_lengths)   # [B, 128, T], [B]
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from funaudiochat.base.constants import TOKENIZER_SAMPLE_RATE
from torch import nn

SAMPLE_RATE = TOKENIZER_SAMPLE_RATE
N_FFT = 400
HOP_LENGTH = 160
FRAMES_PER_SECOND = SAMPLE_RATE // HOP_LENGTH  # 100


TAILS = ("reflect", "zeros")


def mel_frame_count(num_samples: int | torch.Tensor, tail: str = "reflect") -> int | torch.Tensor:
    """Number of log-mel frames for ``num_samples`` samples at 16 kHz: ``num_samples // 160`` (``tail``
    "reflect": the last STFT frame is dropped) or ``ceil(num_samples / 160)`` ("zeros": the Whisper
    feature extractor's attention mask)."""
    if tail == "zeros":
        return -(-num_samples // HOP_LENGTH)
    return num_samples // HOP_LENGTH


def slaney_mel_filters(n_mels: int) -> torch.Tensor:
    """Librosa's (Whisper's) mel filterbank ``[n_mels, 201]`` for 16 kHz and n_fft 400, float32.

    torchaudio builds it; in float64, as librosa does, so it agrees with Whisper's table to ~4e-9 (in
    float32 the low-energy bins of the log spectrum drift by ~7e-5).
    """
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        with torch.device("cpu"):  # also when a model is being built on the meta device
            filters = AF.melscale_fbanks(
                n_freqs=N_FFT // 2 + 1,
                f_min=0.0,
                f_max=SAMPLE_RATE / 2,
                n_mels=n_mels,
                sample_rate=SAMPLE_RATE,
                norm="slaney",
                mel_scale="slaney",
            )
    finally:
        torch.set_default_dtype(default)
    return filters.T.to(torch.float32).contiguous()


class WhisperFrontend(nn.Module):
    """Batched Whisper log-mel spectrogram.

    ``forward(waveforms [B, N] float, lengths [B] long)`` returns ``(mel [B, n_mels, T], mel_lengths [B])``
    with ``mel_lengths = mel_frame_count(lengths, tail)`` and ``T = max(mel_lengths)``.

    n_mels: mel bins (128); tail: "reflect" or "zeros", what follows the audio (module docstring).
    """

    def __init__(self, n_mels: int = 128, tail: str = "reflect"):
        super().__init__()
        if tail not in TAILS:
            raise ValueError(f"tail must be one of {TAILS}, got {tail!r}")
        self.n_mels = n_mels
        self.tail = tail
        self.register_buffer("mel_filters", slaney_mel_filters(n_mels), persistent=False)  # [n_mels, 201]
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)

    def forward(
        self, waveforms: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if waveforms.ndim != 2:
            raise ValueError(f"waveforms must be [batch, samples], got shape {tuple(waveforms.shape)}")
        batch, width = waveforms.shape
        if lengths is None:
            lengths = torch.full((batch,), width, dtype=torch.long)
        lengths = lengths.to(torch.long).cpu()
        if (lengths < 0).any() or (lengths > width).any():
            raise ValueError(f"lengths must lie in [0, {width}], got {lengths.tolist()}")

        pad = N_FFT // 2
        zeros = self.tail == "zeros"
        # "zeros": frames up to one whole window past the end still reach the audio (and its maximum)
        overhang = pad + 2 * HOP_LENGTH if zeros else 0
        framed = waveforms.new_zeros(batch, width + 2 * pad + overhang, dtype=torch.float32)
        for i, n in enumerate(lengths.tolist()):
            if n == 0:
                continue
            item = waveforms[i, :n].float().view(1, 1, n)
            # Reflect padding needs more samples than the pad; shorter inputs are zero-padded instead.
            mode = "reflect" if n > pad else "constant"
            framed[i, : n + (1 if zeros else 2) * pad] = F.pad(
                item, (pad, 0 if zeros else pad), mode=mode
            ).view(-1)
        spec = torch.stft(
            framed, N_FFT, HOP_LENGTH, window=self.window.to(framed.device), center=False, return_complex=True
        )
        power = spec[..., :-1].abs() ** 2  # [B, 201, T]
        mel = self.mel_filters.to(power.device) @ power
        log_mel = torch.clamp(mel, min=1e-10).log10()

        mel_lengths = mel_frame_count(lengths, self.tail)
        frames = int(mel_lengths.max()) if batch else 0
        index = torch.arange(log_mel.shape[-1]).unsqueeze(0)
        valid = (index < mel_lengths.unsqueeze(1)).to(log_mel.device).unsqueeze(1)  # [B, 1, T']
        if frames == 0:
            return log_mel[..., :0], mel_lengths
        # the maximum: over the item's frames, or ("zeros") every frame whose window reaches its audio
        counted = valid
        if zeros:
            counted = (index * HOP_LENGTH - pad < lengths.unsqueeze(1)).to(log_mel.device).unsqueeze(1)
        peak = log_mel.masked_fill(~counted, float("-inf")).amax(dim=(1, 2), keepdim=True)
        log_mel = torch.maximum(log_mel, peak - 8.0)
        log_mel = (log_mel + 4.0) / 4.0
        return log_mel.masked_fill(~valid, 0.0)[..., :frames], mel_lengths

    def batch(self, waveforms: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-mel of a list of 1-D waveforms: ``(mel [B, n_mels, T], mel_lengths [B])``."""
        if not waveforms:
            raise ValueError("waveforms is empty; give at least one 1-D waveform")
        for i, w in enumerate(waveforms):
            if w.ndim != 1:
                raise ValueError(f"waveform {i} must be 1-D [samples], got shape {tuple(w.shape)}")
        lengths = torch.tensor([w.shape[0] for w in waveforms], dtype=torch.long)
        padded = torch.nn.utils.rnn.pad_sequence([w.float() for w in waveforms], batch_first=True)
        return self(padded, lengths)


_DEFAULT_FRONTENDS: dict[int, WhisperFrontend] = {}


def log_mel_spectrogram(waveform: torch.Tensor, n_mels: int = 128) -> torch.Tensor:
    """Log-mel of one 1-D 16 kHz waveform: ``[n_mels, len // 160]``."""
    if waveform.ndim != 1:
        raise ValueError(f"waveform must be 1-D [samples], got shape {tuple(waveform.shape)}")
    frontend = _DEFAULT_FRONTENDS.setdefault(n_mels, WhisperFrontend(n_mels))
    mel, _ = frontend(waveform.unsqueeze(0))
    return mel[0]
