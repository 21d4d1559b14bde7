"""Server-side voice activity detection for the Realtime API (``turn_detection: server_vad``), with the
packaged WebRTC detector (``webrtcvad-wheels``): 30 ms frames, 16 kHz."""

from __future__ import annotations

import numpy as np
import webrtcvad

FRAME_MS = 30
RATE = 16000
MIN_SPEECH_MS = 90  # this much speech in a row starts a turn (a click does not)


class SpeechDetector:
    """Feed 24 kHz samples as they come; ``push`` says where speech starts and stops, in milliseconds
    from the start of the audio.

    threshold: 0..1, how sure the detector must be (mapped onto WebRTC's aggressiveness 0..3);
    silence_duration_ms: silence that ends speech; prefix_padding_ms: audio kept before the start."""

    def __init__(self, threshold: float = 0.5, silence_duration_ms: int = 500, prefix_padding_ms: int = 300):
        if not 0 <= threshold <= 1:
            raise ValueError(f"threshold must lie in [0, 1], got {threshold}")
        if silence_duration_ms < FRAME_MS or prefix_padding_ms < 0:
            raise ValueError(
                f"silence_duration_ms must be >= {FRAME_MS} and prefix_padding_ms >= 0, got "
                f"{silence_duration_ms} and {prefix_padding_ms}"
            )
        self._vad = webrtcvad.Vad(min(3, int(threshold * 4)))
        self.silence_ms, self.prefix_ms = silence_duration_ms, prefix_padding_ms
        self._pending = np.zeros(0, dtype=np.float32)
        self._frames = 0  # 30 ms frames seen
        self._run = 0  # speech frames in a row (before a start) or silent frames in a row (after)
        self.speaking = False

    def push(self, samples_24k: np.ndarray) -> list[tuple[str, int]]:
        """New samples (float32, 24 kHz) -> ``[("started" | "stopped", ms), ...]``."""
        self._pending = np.concatenate([self._pending, samples_24k.astype(np.float32)])
        step = 24000 * FRAME_MS // 1000
        events = []
        while self._pending.shape[0] >= step:
            frame, self._pending = self._pending[:step], self._pending[step:]
            events += self._frame(frame)
        return events

    def _frame(self, frame: np.ndarray) -> list[tuple[str, int]]:
        # linear interpolation to 16 kHz is enough for a detector, and keeps torch (whose threads the
        # engine's steps use) off the event loop
        pcm = np.interp(np.arange(RATE * FRAME_MS // 1000) * 1.5, np.arange(frame.shape[0]), frame)
        speech = self._vad.is_speech((np.clip(pcm, -1, 1) * 32767).astype(np.int16).tobytes(), RATE)
        self._frames += 1
        now = self._frames * FRAME_MS
        if not self.speaking:
            self._run = self._run + 1 if speech else 0
            if self._run * FRAME_MS >= MIN_SPEECH_MS:
                self.speaking, self._run = True, 0
                return [("started", max(0, now - MIN_SPEECH_MS - self.prefix_ms))]
            return []
        self._run = 0 if speech else self._run + 1
        if self._run * FRAME_MS >= self.silence_ms:
            self.speaking, self._run = False, 0
            return [("stopped", now - self.silence_ms)]
        return []
