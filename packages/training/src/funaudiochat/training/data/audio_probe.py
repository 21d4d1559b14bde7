"""Audio file facts read from the header (no decoding): length, rate, duration, official frame counts.

The number of ``<|audio_pad|>`` tokens a user audio must carry follows from its duration (reference §3, §7):
``int(num_samples / sample_rate * 25)``. The official data script counts samples at the file's own rate;
the processor counts them after resampling to 16 kHz; the two can differ by one frame, and both are
accepted (``AudioInfo.accepted_frame_counts``). Any other count is the official issue #30: token and
feature lengths that disagree crash training mid-run; here it is caught before training.

Example:
    >>> info = probe_audio("q.wav")          # 22050 Hz, 40572 samples
    >>> round(info.duration, 3), info.speech_frames, sorted(info.accepted_frame_counts)
    (1.84, 46, [45, 46])
"""

from __future__ import annotations

import math
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
from funaudiochat.drsr.processing import SAMPLE_RATE, speech_frame_count
from funaudiochat.tokenizer import DEFAULT_MAX_SECONDS

READABLE = "a readable WAV/FLAC/OGG file"


@dataclass(frozen=True)
class AudioInfo:
    """Header facts of one audio file: ``num_samples`` per channel at ``sample_rate`` Hz."""

    path: str
    num_samples: int
    sample_rate: int

    @property
    def duration(self) -> float:
        """Seconds."""
        return self.num_samples / self.sample_rate

    @property
    def num_samples_16k(self) -> int:
        """Samples after resampling to 16 kHz (torchaudio's ``resample`` length: ceil of the ratio)."""
        if self.sample_rate == SAMPLE_RATE:
            return self.num_samples
        g = math.gcd(self.sample_rate, SAMPLE_RATE)
        return math.ceil(SAMPLE_RATE // g * self.num_samples / (self.sample_rate // g))

    @property
    def speech_frames(self) -> int:
        """25 Hz frames by the official data script: ``int(num_samples / sample_rate * 25)``."""
        return speech_frame_count(self.num_samples, self.sample_rate)

    @property
    def speech_frames_16k(self) -> int:
        """25 Hz frames as the processor counts them, after resampling to 16 kHz."""
        return speech_frame_count(self.num_samples_16k, SAMPLE_RATE)

    @property
    def accepted_frame_counts(self) -> frozenset[int]:
        """The ``<|audio_pad|>`` counts that match this audio."""
        return frozenset({self.speech_frames, self.speech_frames_16k})


def probe_audio(path: str | os.PathLike, max_seconds: float | None = DEFAULT_MAX_SECONDS) -> AudioInfo:
    """Read the header of ``path``.

    Raises:
        ValueError: missing file, not a regular file, a header libsndfile cannot read, no samples, or
            longer than ``max_seconds`` (``load_audio`` would refuse it at training time). The message
            says which, without the file name (the caller names the file and field).
    """
    p = Path(path)
    if not p.exists():
        raise ValueError(f"file not found: {p}")
    if not p.is_file():
        raise ValueError(f"not a regular file: {p}")
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise ValueError(f"cannot read audio {p}: {err}") from err
    if info.frames <= 0 or info.samplerate <= 0:
        raise ValueError(f"empty audio (no samples): {p}")
    result = AudioInfo(str(p), int(info.frames), int(info.samplerate))
    if max_seconds is not None and result.duration > max_seconds:
        raise ValueError(f"audio is {result.duration:.2f} s long, longer than {max_seconds:g} s: {p}")
    return result


class AudioProber:
    """``probe_audio`` with a per-path memo (thread safe): a dataset that reuses a file reads it once.

    ``__call__`` returns the ``AudioInfo`` or raises the cached ``ValueError`` again.
    """

    def __init__(self, max_seconds: float | None = DEFAULT_MAX_SECONDS):
        self.max_seconds = max_seconds
        self._memo: dict[str, AudioInfo | ValueError] = {}
        self._lock = threading.Lock()

    def __call__(self, path: str | os.PathLike) -> AudioInfo:
        key = os.fspath(path)
        with self._lock:
            known = self._memo.get(key)
        if known is None:
            try:
                known = probe_audio(key, self.max_seconds)
            except ValueError as err:
                known = err
            with self._lock:
                self._memo[key] = known
        if isinstance(known, ValueError):
            raise ValueError(str(known))
        return known
