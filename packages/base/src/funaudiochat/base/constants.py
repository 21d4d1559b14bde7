"""Facts shared by every package: the speech-code vocabulary, its special ids, and the rates.

The speech tokenizer (S3, FSQ 3^8) gives codes ``0 .. SPEECH_CODES - 1`` at 25 Hz. The model's speech
vocabulary appends four special ids: BOS (the 10-token speech delay), EOS, pad (user-audio slots, padding)
and one unused id, so ``SPEECH_VOCAB = 6565`` (the official ``codebook_size``).
"""

from __future__ import annotations

SPEECH_CODES = 6561  # real speech codes: 0 .. 6560
SPEECH_BOS = 6561  # speech delay / start of speech
SPEECH_EOS = 6562  # end of speech
SPEECH_PAD = 6563  # user-audio slots and padding
SPEECH_UNUSED = 6564
SPEECH_VOCAB = 6565  # codes + the four special ids (the official ``codebook_size``)
SPECIAL_IDS = range(SPEECH_CODES, SPEECH_VOCAB)
SPEECH_DELAY = 10  # BOS tokens before the first code of an assistant reply

TOKEN_RATE = 25  # speech codes per second
GROUP_SIZE = 5  # speech codes per shared-LLM position (25 Hz -> 5 Hz)
TOKENIZER_SAMPLE_RATE = 16000  # audio into the speech tokenizer and the audio encoder
VOCODER_SAMPLE_RATE = 24000  # audio out of the vocoder


def is_speech_code(token: int) -> bool:
    """Whether ``token`` is a real speech code (not a special id)."""
    return 0 <= token < SPEECH_CODES
