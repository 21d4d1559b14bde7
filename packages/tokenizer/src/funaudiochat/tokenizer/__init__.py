"""funaudiochat.tokenizer: audio in, log-mel features, 25 Hz speech codes, continuous audio features.

Depends on nothing else of ours. Main entry points:

- ``load_audio``: any file or array -> validated 16 kHz mono float32.
- ``WhisperFrontend`` / ``log_mel_spectrogram``: the Whisper/S3 128-bin log-mel, batched and exact.
- ``SpeechTokenizer``: S3Tokenizer V2/V3-compatible 25 Hz FSQ tokenizer (6561 codes), long audio included.
- ``ContinuousAudioEncoder``: the chunked Whisper-style ``continuous_audio_tower``.
"""

from .audio import DEFAULT_MAX_SECONDS, DEFAULT_SAMPLE_RATE, load_audio
from .audio_encoder import AudioEncoderConfig, ContinuousAudioEncoder, EncoderStreamState, output_length
from .frontend import WhisperFrontend, log_mel_spectrogram, mel_frame_count
from .speech_tokenizer import (
    CODEBOOK_SIZE,
    SpeechTokenizer,
    SpeechTokenizerConfig,
    codes_to_levels,
    levels_to_codes,
)
from .windowing import Window, code_count, plan_windows

__all__ = [
    "CODEBOOK_SIZE",
    "DEFAULT_MAX_SECONDS",
    "DEFAULT_SAMPLE_RATE",
    "AudioEncoderConfig",
    "ContinuousAudioEncoder",
    "EncoderStreamState",
    "SpeechTokenizer",
    "SpeechTokenizerConfig",
    "WhisperFrontend",
    "Window",
    "code_count",
    "codes_to_levels",
    "levels_to_codes",
    "load_audio",
    "log_mel_spectrogram",
    "mel_frame_count",
    "output_length",
    "plan_windows",
]
