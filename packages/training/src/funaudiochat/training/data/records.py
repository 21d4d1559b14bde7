"""Dataclass records of spoken conversations: what one training example is, independent of file format.

A ``Conversation`` is the official sharegpt example (reference §7) in typed form: an optional system
prompt, alternating user / assistant ``Turn``s whose ``content`` holds one ``AUDIO_TEMPLATE``
(``<|audio_bos|><|AUDIO|><|audio_eos|>``) per audio, and ``audios``, one entry per placeholder in order:

- ``UserAudio``: a wav the user speaks. It enters the model through the continuous encoder; its speech row
  is ``num_frames`` x pad (6563), ``num_frames = int(duration_s * 25)``.
- ``AssistantSpeech``: the reply's text and its 25 Hz S3 codes (0..6560), preceded by ``delay`` BOS (6561)
  tokens (10 in the official data). ``codes`` may be None until the speech of ``ref_path`` is tokenized
  (``CodesCache.fill``).

Durations are in seconds; user audio at its 25 Hz frame count, assistant speech at its code count.
``num_slots(group_size)`` is an audio's count of ``<|AUDIO|>`` LLM slots when the LLM groups ``group_size``
25 Hz frames into one position (the processor's ``group_size``: 5 officially, the LLM at 5 Hz; 1 puts the
LLM at 25 Hz, one slot per frame). Records hold no group size of their own: the same data trains any k.

Example:
    >>> conv = Conversation(
    ...     turns=[Turn("user", AUDIO_TEMPLATE), Turn("assistant", AUDIO_TEMPLATE)],
    ...     audios=[UserAudio("/data/q1.wav", num_frames=46, ref_text="What is two plus three?"),
    ...             AssistantSpeech("Five.", codes=np.array([12, 873, 6560]), ref_path="/data/a1.wav")],
    ...     system="You are asked to generate both text and speech tokens at the same time.")
    >>> conv.duration   # 46 / 25 + 3 / 25
    1.96
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from funaudiochat.drsr.processing import audio_slot_count
from funaudiochat.drsr.text_tokenizer import AUDIO_TEMPLATE, AUDIO_TOKEN

from .speech_tokens import NUM_CODES, SPEECH_BOS_ID, SPEECH_DELAY, SPEECH_PAD_ID, TOKEN_RATE

ROLES = ("user", "assistant")

__all__ = ["AUDIO_TEMPLATE", "AUDIO_TOKEN", "ROLES", "AssistantSpeech", "Conversation", "Turn", "UserAudio"]


@dataclass
class UserAudio:
    """User speech (official entry: ``path`` set, ``token`` = ``<|audio_pad|>`` x ``num_frames``).

    Attributes:
        path: the audio file (absolute, or as written when the reader was told not to resolve paths).
        num_frames: 25 Hz frames, ``int(duration_s * 25)`` >= 1; the count of ``<|audio_pad|>``.
        text: the entry's ``text``; "" in the official data (a non-empty text is averaged into the slots).
        ref_path, ref_text: the official extra fields; the data script puts the user's transcript in
            ``ref_text``.
        extra: other keys of the entry, written back unchanged.
    """

    path: str
    num_frames: int
    text: str = ""
    ref_path: str = ""
    ref_text: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.num_frames < 1:
            raise ValueError(f"{self.path}: num_frames must be >= 1 (one 40 ms frame), got {self.num_frames}")

    @property
    def duration(self) -> float:
        """Seconds, at 25 frames per second."""
        return self.num_frames / TOKEN_RATE

    def num_slots(self, group_size: int) -> int:
        """``<|AUDIO|>`` slots, one per LLM position of ``group_size`` 25 Hz frames (25 / group_size Hz):
        ``ceil(num_frames / group_size)`` (group size 5: 5 Hz slots; 1: one slot per frame)."""
        return audio_slot_count(self.num_frames, group_size)

    def speech_ids(self) -> np.ndarray:
        """The speech row ``[num_frames]`` int64: all pad (6563)."""
        return np.full(self.num_frames, SPEECH_PAD_ID, dtype=np.int64)


@dataclass(eq=False)
class AssistantSpeech:
    """Assistant speech (official entry: ``path`` "", ``token`` = BOS x ``delay`` + ``[AU####]`` codes).

    Attributes:
        text: the reply text (its tokens fill the text stream, one per LLM slot, then ``<|sil|>``).
        codes: int16 ``[n]`` S3 codes at 25 Hz in 0..6560, or None until tokenized from ``ref_path``.
        delay: BOS (6561) tokens before the first code (official: 10).
        path: the entry's ``path``; "" in the official data (the official plugin blanks it anyway).
        ref_path: the speech the codes come from; ref_text: the official extra field.
        ref_duration: seconds of ``ref_path`` when known (from the file header); not written to files.
        extra: other keys of the entry, written back unchanged.
    """

    text: str
    codes: np.ndarray | None
    delay: int = SPEECH_DELAY
    path: str = ""
    ref_path: str = ""
    ref_text: str = ""
    ref_duration: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.codes is not None:
            codes = np.asarray(self.codes).reshape(-1)
            if codes.size == 0:
                raise ValueError("assistant speech needs at least one code (or codes=None until tokenized)")
            if not np.issubdtype(codes.dtype, np.integer) or codes.min() < 0 or codes.max() >= NUM_CODES:
                raise ValueError(f"codes must be integers in 0..{NUM_CODES - 1}")
            self.codes = codes.astype(np.int16)
        elif not self.ref_path:
            raise ValueError("assistant speech without codes needs ref_path (the audio to tokenize)")
        if self.delay < 0:
            raise ValueError(f"delay must be >= 0, got {self.delay}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, AssistantSpeech):
            return NotImplemented
        same_codes = (self.codes is None and other.codes is None) or (
            self.codes is not None and other.codes is not None and np.array_equal(self.codes, other.codes)
        )
        return same_codes and (
            self.text,
            self.delay,
            self.path,
            self.ref_path,
            self.ref_text,
            self.extra,
        ) == (
            other.text,
            other.delay,
            other.path,
            other.ref_path,
            other.ref_text,
            other.extra,
        )

    @property
    def num_frames(self) -> int | None:
        """25 Hz positions of the speech row: ``delay + len(codes)`` (None before tokenization)."""
        return None if self.codes is None else self.delay + int(self.codes.shape[0])

    def num_slots(self, group_size: int) -> int | None:
        """``<|AUDIO|>`` slots, one per LLM position of ``group_size`` 25 Hz frames (25 / group_size Hz):
        ``ceil((delay + len(codes)) / group_size)`` (None before tokenization). Each slot also carries one
        token of ``text`` (then ``<|sil|>``) and the SRH emits ``group_size`` codes from it."""
        frames = self.num_frames
        return None if frames is None else audio_slot_count(frames, group_size)

    @property
    def duration(self) -> float:
        """Seconds of speech: ``len(codes) / 25``, else ``ref_duration`` (0.0 when neither is known)."""
        if self.codes is not None:
            return int(self.codes.shape[0]) / TOKEN_RATE
        return self.ref_duration or 0.0

    def speech_ids(self) -> np.ndarray:
        """The speech row ``[delay + n]`` int64: BOS (6561) x delay, then the codes."""
        if self.codes is None:
            raise ValueError(f"assistant speech of {self.ref_path!r} is not tokenized yet (codes is None)")
        return np.concatenate(
            [np.full(self.delay, SPEECH_BOS_ID, dtype=np.int64), self.codes.astype(np.int64)]
        )


@dataclass
class Turn:
    """One message: ``role`` "user" or "assistant"; ``content`` is text with one ``AUDIO_TEMPLATE`` per
    audio of the turn (the official data: exactly ``AUDIO_TEMPLATE``)."""

    role: str
    content: str

    @property
    def num_audios(self) -> int:
        return self.content.count(AUDIO_TEMPLATE)


Audio = UserAudio | AssistantSpeech


@dataclass
class Conversation:
    """One training example: ``turns`` (user first, alternating, assistant last), ``audios`` (one per
    ``AUDIO_TEMPLATE`` of the turns, in order), optional ``system`` prompt (None: the template's default).

    ``source`` says where it was read (``file:line`` or the manifest id) for error messages; ``extra``
    holds other top-level keys of the record, written back unchanged. Neither takes part in ``==``
    except ``extra``.
    """

    turns: list[Turn]
    audios: list[Audio]
    system: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = field(default="", compare=False)

    @property
    def duration(self) -> float:
        """Total seconds of speech: every user audio plus every assistant reply."""
        return float(sum(a.duration for a in self.audios))

    @property
    def user_audios(self) -> list[UserAudio]:
        return [a for a in self.audios if isinstance(a, UserAudio)]

    @property
    def assistant_speech(self) -> list[AssistantSpeech]:
        return [a for a in self.audios if isinstance(a, AssistantSpeech)]

    @property
    def needs_codes(self) -> bool:
        """True while some assistant speech has no codes yet."""
        return any(a.codes is None for a in self.assistant_speech)

    def audios_by_turn(self) -> list[list[Audio]]:
        """``audios`` split by turn (``len(result) == len(turns)``)."""
        out, it = [], iter(self.audios)
        for turn in self.turns:
            out.append([next(it) for _ in range(turn.num_audios)])
        return out
