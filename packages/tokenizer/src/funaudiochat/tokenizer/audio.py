"""Audio input: read, validate, mix to mono and resample.

Every model in this project takes mono float32 waveforms in [-1, 1] at a known rate (16 kHz for the
tokenizer and encoder). ``load_audio`` is the one place where user audio enters, so every rule about
what is acceptable lives here and fails with a ``ValueError`` that names the source and the rule.

Example:
    >>> wav = load_audio("question.wav")            # 1-D float32 tensor at 16 kHz
    >>> wav = load_audio(array, source_rate=44100)  # numpy / torch input, resampled
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF
from funaudiochat.base.constants import TOKENIZER_SAMPLE_RATE

DEFAULT_SAMPLE_RATE = TOKENIZER_SAMPLE_RATE
DEFAULT_MAX_SECONDS = 600.0

_ALLOWED_ARRAY_DTYPES = (np.float32, np.float64, np.float16, np.int16, np.int32, np.uint8)
_INT_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2147483648.0}


def load_audio(
    audio: str | os.PathLike | np.ndarray | torch.Tensor,
    sample_rate: int = DEFAULT_SAMPLE_RATE,
    *,
    source_rate: int | None = None,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> torch.Tensor:
    """Return ``audio`` as a 1-D float32 tensor at ``sample_rate`` Hz, mono, in [-1, 1].

    Args:
        audio: a path to a file soundfile can read (WAV, FLAC, OGG, ...), or an array / tensor of
            samples shaped ``[time]`` or ``[time, channels]`` (numpy convention) or ``[channels, time]``
            (torch convention, when the first dimension is the smaller one).
        sample_rate: the rate of the result.
        source_rate: the rate of an array input (required for arrays, ignored for files).
        max_seconds: longest accepted duration; ``None`` for no limit.

    Raises:
        ValueError: missing or unreadable file, zero-length audio, NaN/Inf samples, audio longer than
            ``max_seconds``, an unsupported dtype, or an array without ``source_rate``.
    Silence is valid input.
    """
    if isinstance(audio, (str, os.PathLike)):
        name = str(audio)
        samples, rate = _read_file(Path(audio))
    else:
        name = "<array input>"
        if source_rate is None:
            raise ValueError(f"{name}: source_rate is required for array input (the rate of the samples)")
        samples, rate = _array_to_numpy(audio, name), int(source_rate)
        if samples.ndim == 2 and isinstance(audio, torch.Tensor) and samples.shape[0] < samples.shape[1]:
            samples = samples.T
    if rate <= 0:
        raise ValueError(f"{name}: sample rate must be positive, got {rate}")
    if samples.ndim not in (1, 2):
        raise ValueError(f"{name}: expected [time] or [time, channels] samples, got shape {samples.shape}")

    samples = _to_float32(samples, name)
    if samples.shape[0] == 0:
        raise ValueError(f"{name}: zero-length audio (no samples); at least one sample is required")
    if not np.isfinite(samples).all():
        raise ValueError(f"{name}: audio contains NaN or Inf samples; only finite values are allowed")
    duration = samples.shape[0] / rate
    if max_seconds is not None and duration > max_seconds:
        raise ValueError(
            f"{name}: audio is {duration:.2f} s long, longer than the limit of {max_seconds:.2f} s "
            "(raise max_seconds to accept it)"
        )

    wav = torch.from_numpy(np.ascontiguousarray(samples))
    if wav.ndim == 2:
        wav = wav.mean(dim=1)
    if rate != sample_rate:
        wav = AF.resample(wav, rate, sample_rate)
    return wav.clamp_(-1.0, 1.0).contiguous()


def _read_file(path: Path) -> tuple[np.ndarray, int]:
    if not path.exists():
        raise ValueError(f"{path}: file not found")
    if not path.is_file():
        raise ValueError(f"{path}: not a regular file")
    try:
        samples, rate = sf.read(str(path), dtype="float32", always_2d=False)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise ValueError(
            f"{path}: cannot decode audio ({err}); readable formats are those of libsndfile "
            "(WAV, FLAC, OGG/Vorbis, ...)"
        ) from err
    return samples, int(rate)


def _array_to_numpy(audio: np.ndarray | torch.Tensor, name: str) -> np.ndarray:
    if isinstance(audio, torch.Tensor):
        if audio.is_complex() or audio.dtype == torch.bool:
            raise ValueError(f"{name}: unsupported dtype {audio.dtype}; use a real float or integer dtype")
        if audio.dtype in (torch.bfloat16, torch.float16):
            audio = audio.float()
        return audio.detach().cpu().numpy()
    if isinstance(audio, np.ndarray):
        return audio
    raise ValueError(f"{name}: expected a path, numpy array or torch tensor, got {type(audio).__name__}")


def _to_float32(samples: np.ndarray, name: str) -> np.ndarray:
    dtype = samples.dtype
    if dtype in (np.float32, np.float64, np.float16):
        return samples.astype(np.float32, copy=False)
    if dtype in _INT_SCALE:
        return samples.astype(np.float32) / _INT_SCALE[dtype]
    if dtype == np.uint8:  # 8-bit PCM is unsigned with its zero at 128
        return (samples.astype(np.float32) - 128.0) / 128.0
    allowed = ", ".join(np.dtype(d).name for d in _ALLOWED_ARRAY_DTYPES)
    raise ValueError(f"{name}: unsupported sample dtype {dtype}; allowed: {allowed}")
