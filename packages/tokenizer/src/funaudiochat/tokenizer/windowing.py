"""Long-audio windowing for the 25 Hz speech tokenizer, with no token lost or duplicated.

The tokenizer sees at most ``window_frames`` log-mel frames (30 s) at once. Longer audio is cut into
overlapping windows whose starts are multiples of 4 frames, so every window's tokens lie on the global
25 Hz grid (4 mel frames per token). Each global token is then taken from exactly one window: the one in
whose middle it lies (cuts sit at the middle of each overlap, so every kept token has about half the
overlap of context on both sides). The result has exactly ``code_count(num_samples)`` tokens.

This fixes the defect of s3tokenizer 0.3.0 (S3Tokenizer issue #53), whose last window can be shorter
than the overlap, so that 52.4 s of audio gives 1260 tokens instead of 1310.

Example:
    >>> [(w.start_frame, w.num_frames, w.keep_start, w.keep_end) for w in plan_windows(5240)]
    [(0, 3000, 0, 655), (2240, 3000, 655, 1310)]
"""

from __future__ import annotations

from dataclasses import dataclass

from .frontend import mel_frame_count

FRAMES_PER_TOKEN = 4  # two stride-2 convolutions: 100 mel frames/s -> 25 tokens/s
TOKENS_PER_SECOND = 25
DEFAULT_WINDOW_FRAMES = 3000  # 30 s
DEFAULT_OVERLAP_FRAMES = 400  # 4 s


def token_count_for_frames(num_frames: int) -> int:
    """Tokens produced from ``num_frames`` mel frames: ``ceil(num_frames / 4)``."""
    return (num_frames + FRAMES_PER_TOKEN - 1) // FRAMES_PER_TOKEN


def code_count(num_samples: int) -> int:
    """Tokens produced from ``num_samples`` samples of 16 kHz audio, of any length.

    ``code_count(n) = ceil(floor(n / 160) / 4)``: 25 tokens per second, the last one possibly covering
    less than 40 ms. For example 52.4 s (838400 samples) gives 1310 tokens.
    """
    return token_count_for_frames(int(mel_frame_count(num_samples)))


@dataclass(frozen=True)
class Window:
    """One window of a long utterance.

    ``start_frame``/``num_frames`` select mel frames; of the window's own tokens, global tokens
    ``[keep_start, keep_end)`` are kept (global token ``g`` is window token ``g - start_frame // 4``).
    """

    start_frame: int
    num_frames: int
    keep_start: int
    keep_end: int

    @property
    def start_token(self) -> int:
        return self.start_frame // FRAMES_PER_TOKEN


def plan_windows(
    num_frames: int,
    window_frames: int = DEFAULT_WINDOW_FRAMES,
    overlap_frames: int = DEFAULT_OVERLAP_FRAMES,
) -> list[Window]:
    """Cut ``num_frames`` mel frames into windows that together yield every token exactly once.

    Audio that fits one window gives one window. Otherwise windows start every
    ``window_frames - overlap_frames`` frames; the last one is moved back so that it ends at the end of
    the audio, and so is always a full window (never shorter than the overlap).
    """
    if window_frames % FRAMES_PER_TOKEN or overlap_frames % FRAMES_PER_TOKEN:
        raise ValueError(
            f"window_frames ({window_frames}) and overlap_frames ({overlap_frames}) must be multiples of "
            f"{FRAMES_PER_TOKEN} so windows stay on the token grid"
        )
    if not 0 < overlap_frames < window_frames:
        raise ValueError(
            f"overlap_frames must lie in (0, window_frames={window_frames}), got {overlap_frames}"
        )
    if num_frames < 0:
        raise ValueError(f"num_frames must be >= 0, got {num_frames}")
    total_tokens = token_count_for_frames(num_frames)
    if num_frames <= window_frames:
        return [Window(0, num_frames, 0, total_tokens)]

    stride = window_frames - overlap_frames
    starts = [0]
    while starts[-1] + stride + window_frames < num_frames:
        starts.append(starts[-1] + stride)
    last = num_frames - window_frames
    last += -last % FRAMES_PER_TOKEN  # round up onto the token grid; the window is then <= window_frames
    starts.append(last)

    windows = []
    keep_start = 0
    for i, start in enumerate(starts):
        length = min(window_frames, num_frames - start)
        if i + 1 < len(starts):
            next_start = starts[i + 1]
            overlap_begin = next_start // FRAMES_PER_TOKEN
            overlap_end = (start + length) // FRAMES_PER_TOKEN
            keep_end = (overlap_begin + overlap_end) // 2
        else:
            keep_end = total_tokens
        windows.append(Window(start, length, keep_start, keep_end))
        keep_start = keep_end
    return windows
