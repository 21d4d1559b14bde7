"""The official ``token`` string of one audio entry, and the speech ids it stands for.

Each audio entry of the official training data (reference §7) carries a ``token`` string that the speech
tokenizer turns into one row of ``speech_ids`` (25 Hz):

- user audio: ``<|audio_pad|>`` x ``num_frames``, ``num_frames = int(duration_s * 25)``; ids 6563 (pad),
  later replaced by the continuous encoder's features;
- assistant speech: ``<|audio_bos|>`` x ``delay`` (10: the speech lags the text by 2 LLM steps) followed by
  the S3 codes written ``[AU%04d]`` (``[AU0000]`` .. ``[AU6560]``); ids 6561 (BOS) then the codes.

Example:
    >>> assistant_token([12, 6560], delay=2)
    '<|audio_bos|><|audio_bos|>[AU0012][AU6560]'
    >>> parse_speech_token("<|audio_pad|>" * 3)
    ParsedToken(num_pads=3, delay=0, codes=None)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from funaudiochat.base.constants import SPEECH_BOS, SPEECH_DELAY, SPEECH_EOS
from funaudiochat.drsr.processing import SPEECH_FRAME_RATE, SPEECH_PAD_ID
from funaudiochat.tokenizer import CODEBOOK_SIZE

AUDIO_PAD_TOKEN = "<|audio_pad|>"
AUDIO_BOS_TOKEN = "<|audio_bos|>"
SPEECH_BOS_ID = SPEECH_BOS  # speech-vocabulary ids of the specials (reference §2.1)
SPEECH_EOS_ID = SPEECH_EOS
NUM_CODES = CODEBOOK_SIZE  # 6561: codes 0..6560
TOKEN_RATE = SPEECH_FRAME_RATE  # 25 codes / pads per second

__all__ = [
    "AUDIO_BOS_TOKEN",
    "AUDIO_PAD_TOKEN",
    "NUM_CODES",
    "SPEECH_BOS_ID",
    "SPEECH_DELAY",
    "SPEECH_EOS_ID",
    "SPEECH_PAD_ID",
    "TOKEN_RATE",
    "ParsedToken",
    "TokenStringError",
    "assistant_token",
    "parse_speech_token",
    "user_token",
]

_PIECE = re.compile(r"<\|audio_pad\|>|<\|audio_bos\|>|\[AU(\d*)\]")
ALLOWED_FORMS = (
    f"{AUDIO_PAD_TOKEN} x int(duration_s * 25) for user audio, or {AUDIO_BOS_TOKEN} x {SPEECH_DELAY} "
    f"then codes [AU0000]..[AU{NUM_CODES - 1:04d}] for assistant speech"
)


class TokenStringError(ValueError):
    """A ``token`` string that is not one of the two official forms; ``str()`` says what and where."""


@dataclass(frozen=True)
class ParsedToken:
    """A parsed ``token`` string: ``num_pads`` > 0 for user audio, else ``delay`` BOS tokens and ``codes``
    (int16 ``[n]``, n >= 1) for assistant speech."""

    num_pads: int
    delay: int
    codes: np.ndarray | None

    @property
    def is_user(self) -> bool:
        return self.num_pads > 0


def user_token(num_frames: int) -> str:
    """``<|audio_pad|>`` x ``num_frames`` (the user entry's ``token``)."""
    if num_frames < 1:
        raise ValueError(f"a user audio needs at least one 25 Hz frame, got num_frames={num_frames}")
    return AUDIO_PAD_TOKEN * num_frames


def assistant_token(codes: Sequence[int] | np.ndarray, delay: int = SPEECH_DELAY) -> str:
    """``<|audio_bos|>`` x ``delay`` then ``[AU%04d]`` per code (the assistant entry's ``token``)."""
    values = np.asarray(codes, dtype=np.int64).reshape(-1)
    if values.size == 0:
        raise ValueError("assistant speech needs at least one code")
    if values.min() < 0 or values.max() >= NUM_CODES:
        raise ValueError(f"codes must lie in 0..{NUM_CODES - 1}, got range {values.min()}..{values.max()}")
    if delay < 0:
        raise ValueError(f"delay must be >= 0, got {delay}")
    return AUDIO_BOS_TOKEN * delay + "".join(f"[AU{int(c):04d}]" for c in values)


def parse_speech_token(token: str) -> ParsedToken:
    """Parse an official ``token`` string.

    Raises:
        TokenStringError: empty string, text that is none of ``<|audio_pad|>``, ``<|audio_bos|>``,
            ``[AU####]`` (4 digits), pads mixed with codes, BOS after a code, BOS without codes, or a code
            outside 0..6560. The message names the character offset and what is allowed.
    """
    if not isinstance(token, str):
        raise TokenStringError(f"must be a string, got {type(token).__name__} ({ALLOWED_FORMS})")
    if not token:
        raise TokenStringError(f"is empty ({ALLOWED_FORMS})")
    if token == AUDIO_PAD_TOKEN * (len(token) // len(AUDIO_PAD_TOKEN)):  # fast path: user audio
        return ParsedToken(num_pads=len(token) // len(AUDIO_PAD_TOKEN), delay=0, codes=None)

    pads = bos = 0
    codes: list[int] = []
    position = 0
    for match in _PIECE.finditer(token):
        if match.start() != position:
            raise TokenStringError(_unexpected(token, position, match.start()))
        piece, digits = match.group(0), match.group(1)
        if piece == AUDIO_PAD_TOKEN:
            if bos or codes:
                raise TokenStringError(
                    f"{AUDIO_PAD_TOKEN} at character {position} after speech tokens; user audio is "
                    f"{AUDIO_PAD_TOKEN} only, assistant speech has none ({ALLOWED_FORMS})"
                )
            pads += 1
        elif piece == AUDIO_BOS_TOKEN:
            if pads or codes:
                where = "after a code" if codes else f"after {AUDIO_PAD_TOKEN}"
                raise TokenStringError(
                    f"{AUDIO_BOS_TOKEN} at character {position} {where}; the BOS delay comes first, once "
                    f"({ALLOWED_FORMS})"
                )
            bos += 1
        else:
            if pads:
                raise TokenStringError(
                    f"code {piece} at character {position} in a {AUDIO_PAD_TOKEN} string; user audio has "
                    f"no codes ({ALLOWED_FORMS})"
                )
            if len(digits) != 4:
                raise TokenStringError(
                    f"malformed code {piece!r} at character {position} (codes are written [AU%04d], "
                    f"[AU0000]..[AU{NUM_CODES - 1:04d}])"
                )
            value = int(digits)
            if value >= NUM_CODES:
                raise TokenStringError(
                    f"code {piece} (code #{len(codes)}, character {position}) out of range "
                    f"(codes 0..{NUM_CODES - 1})"
                )
            codes.append(value)
        position = match.end()
    if position != len(token):
        raise TokenStringError(_unexpected(token, position, len(token)))
    if pads:
        return ParsedToken(num_pads=pads, delay=0, codes=None)
    if not codes:
        raise TokenStringError(
            f"{bos} {AUDIO_BOS_TOKEN} but no [AU####] code; assistant speech needs at least one code "
            f"({ALLOWED_FORMS})"
        )
    return ParsedToken(num_pads=0, delay=bos, codes=np.asarray(codes, dtype=np.int16))


def _unexpected(token: str, start: int, end: int) -> str:
    snippet = token[start:end]
    shown = snippet if len(snippet) <= 24 else snippet[:21] + "..."
    return f"unexpected text {shown!r} at character {start} ({ALLOWED_FORMS})"
