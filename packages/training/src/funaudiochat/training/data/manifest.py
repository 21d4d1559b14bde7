"""Our own manifest: one spoken question -> answer pair per JSONL line, simpler than the official format.

Fields (one JSON object per line; paths relative to the manifest's folder, or absolute)::

    {"id": "qa-00001",                         # required, unique in the file
     "audio": "audio/q00001.wav",              # required: the spoken question (any WAV/FLAC/OGG, any rate)
     "text": "What is two plus three?",        # optional: its transcript (the official user ref_text)
     "answer_text": "Five.",                   # required: the reply text ("" allowed)
     "answer_codes": [12, 873, 6560],          # 25 Hz S3 codes 0..6560 of the spoken reply, and/or
     "answer_audio": "audio/a00001.wav",       # the spoken reply, tokenized on the fly (CodesCache)
     "duration": 1.84,                         # optional: seconds of "audio", checked against the file
     "system": "You are asked to ..."}         # optional: system prompt (default: the template's)

At least one of ``answer_codes`` / ``answer_audio`` is required; other keys are errors (typos are caught).
``read_manifest`` validates the whole file up front in the style of ``read_sharegpt`` (one
``DataValidationError`` listing ``file:line: field: what (allowed)``). ``ManifestEntry.to_conversation``
gives the same ``Conversation`` an official record would: the question as a user audio whose frame count
is ``int(duration_s * 25)`` at 16 kHz (as the processor counts it), the reply as assistant speech with the
official 10-token delay.

Example:
    >>> entries = read_manifest("manifest.jsonl")
    >>> conversations = [e.to_conversation() for e in entries]
    >>> write_manifest("copy.jsonl", entries, relative_to=".")
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from funaudiochat.drsr.text_tokenizer import AUDIO_TEMPLATE
from funaudiochat.tokenizer import DEFAULT_MAX_SECONDS

from ..atomic import atomic_write_text
from .audio_probe import READABLE, AudioInfo, AudioProber, probe_audio
from .errors import ProblemLog
from .jsonl import json_type, parse_json_object, read_lines, relative_path, resolve_path
from .records import AssistantSpeech, Conversation, Turn, UserAudio
from .speech_tokens import NUM_CODES, SPEECH_DELAY, TOKEN_RATE

FIELDS = ("id", "audio", "text", "answer_text", "answer_codes", "answer_audio", "duration", "system")
DURATION_TOLERANCE = 1 / TOKEN_RATE  # seconds: one 25 Hz frame


@dataclass(eq=False)
class ManifestEntry:
    """One manifest line. ``answer_codes``: int16 ``[n]`` in 0..6560 or None; ``answer_audio``: "" when
    absent. ``audio_info`` / ``answer_info``: the files' headers when the reader read them (not written)."""

    id: str
    audio: str
    answer_text: str
    text: str = ""
    answer_codes: np.ndarray | None = None
    answer_audio: str = ""
    duration: float | None = None
    system: str | None = None
    audio_info: AudioInfo | None = field(default=None, repr=False)
    answer_info: AudioInfo | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.answer_codes is not None:
            codes = np.asarray(self.answer_codes).reshape(-1)
            if codes.size == 0 or codes.min() < 0 or codes.max() >= NUM_CODES:
                raise ValueError(
                    f"{self.id}: answer_codes must be a non-empty list of codes 0..{NUM_CODES - 1}"
                )
            self.answer_codes = codes.astype(np.int16)
        elif not self.answer_audio:
            raise ValueError(f"{self.id}: give answer_codes or answer_audio")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ManifestEntry):
            return NotImplemented
        a, b = self.answer_codes, other.answer_codes
        same_codes = (a is None and b is None) or (a is not None and b is not None and np.array_equal(a, b))
        return same_codes and manifest_entry_to_dict(self, with_codes=False) == manifest_entry_to_dict(
            other, with_codes=False
        )

    def to_conversation(self, delay: int = SPEECH_DELAY) -> Conversation:
        """The single-turn ``Conversation`` of this entry (reads the question's header if not known)."""
        info = self.audio_info or probe_audio(self.audio, max_seconds=None)
        answer_duration = self.answer_info.duration if self.answer_info is not None else None
        return Conversation(
            turns=[Turn("user", AUDIO_TEMPLATE), Turn("assistant", AUDIO_TEMPLATE)],
            audios=[
                UserAudio(path=self.audio, num_frames=info.speech_frames_16k, ref_text=self.text),
                AssistantSpeech(
                    text=self.answer_text,
                    codes=self.answer_codes,
                    delay=delay,
                    ref_path=self.answer_audio,
                    ref_duration=answer_duration,
                ),
            ],
            system=self.system,
            source=self.id,
        )

    @classmethod
    def from_conversation(cls, conv: Conversation, id: str) -> ManifestEntry:
        """The entry of a single-turn conversation (one user audio, one assistant speech)."""
        audios = conv.audios
        if (
            len(conv.turns) != 2
            or len(audios) != 2
            or not isinstance(audios[0], UserAudio)
            or not isinstance(audios[1], AssistantSpeech)
            or conv.turns[0].content != AUDIO_TEMPLATE
            or conv.turns[1].content != AUDIO_TEMPLATE
        ):
            raise ValueError(
                f"{conv.source or id}: the manifest holds single-turn spoken Q/A only (user audio, then "
                "assistant speech, each turn exactly the audio placeholder)"
            )
        user, answer = audios
        return cls(
            id=id,
            audio=user.path,
            text=user.ref_text,
            answer_text=answer.text,
            answer_codes=answer.codes,
            answer_audio=answer.ref_path,
            duration=user.duration,
            system=conv.system,
        )


def read_manifest(
    path: str | os.PathLike,
    *,
    audio_root: str | os.PathLike | None = None,
    check_audio: bool = True,
    max_audio_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> list[ManifestEntry]:
    """Read and validate a manifest; paths are resolved against ``audio_root`` (default: its folder).

    With ``check_audio`` every ``audio`` and ``answer_audio`` must be a readable file of at most
    ``max_audio_seconds``, and a given ``duration`` must match the file within one 25 Hz frame.

    Raises:
        DataValidationError: listing every problem of the file (a ``ValueError``).
    """
    file = Path(path)
    root = Path(audio_root) if audio_root is not None else file.parent
    log = ProblemLog(str(file))
    prober = AudioProber(max_audio_seconds)
    limit = f" of at most {max_audio_seconds:g} s" if max_audio_seconds is not None else ""
    seen: dict[str, int] = {}
    entries = []
    for number, text in read_lines(file, log):
        obj = parse_json_object(text, number, log)
        if obj is None:
            continue
        entry = _parse_entry(obj, number, log, root, seen)
        if entry is None:
            continue
        if check_audio:
            entry = _check_files(entry, number, log, prober, READABLE + limit)
        if entry is not None:
            entries.append(entry)
    log.raise_if_any()
    return entries


def read_manifest_conversations(path: str | os.PathLike, **kwargs: Any) -> list[Conversation]:
    """``read_manifest`` then ``to_conversation`` for each entry."""
    return [entry.to_conversation() for entry in read_manifest(path, **kwargs)]


def _parse_entry(
    obj: Any, line: int, log: ProblemLog, root: Path, seen: dict[str, int]
) -> ManifestEntry | None:
    before = len(log)
    for key in obj:
        if key not in FIELDS:
            log.add(line, key, "unknown field", f"fields: {', '.join(FIELDS)}")

    def string(name: str, required: bool, non_empty: bool = False) -> str | None:
        value = obj.get(name)
        if value is None:
            if required:
                log.add(line, name, "missing", "a non-empty string" if non_empty else "a string")
            return None
        if not isinstance(value, str) or (non_empty and not value):
            what = "an empty string" if isinstance(value, str) else f"a JSON {json_type(value)}"
            log.add(line, name, what, "a non-empty string" if non_empty else "a string")
            return None
        return value

    id_ = string("id", required=True, non_empty=True)
    if id_ is not None:
        if id_ in seen:
            log.add(
                line, "id", f"duplicate {id_!r} (first on line {seen[id_]})", "ids are unique in a manifest"
            )
        else:
            seen[id_] = line
    audio = string("audio", required=True, non_empty=True)
    text = string("text", required=False)
    answer_text = string("answer_text", required=True)
    answer_audio = string("answer_audio", required=False, non_empty=True)
    system = string("system", required=False)
    codes = _parse_codes(obj.get("answer_codes"), line, log)
    if obj.get("answer_codes") is None and obj.get("answer_audio") is None:
        log.add(
            line,
            "answer_codes",
            "missing, and no answer_audio",
            f"answer_codes (a list of 25 Hz codes 0..{NUM_CODES - 1}) or answer_audio (a file to tokenize)",
        )
    duration = obj.get("duration")
    if duration is not None and (
        isinstance(duration, bool)
        or not isinstance(duration, (int, float))
        or not math.isfinite(duration)
        or duration <= 0
    ):
        log.add(line, "duration", f"{duration!r}", "a positive number of seconds, or absent")
        duration = None
    if len(log) > before:
        return None
    assert id_ is not None and audio is not None and answer_text is not None
    return ManifestEntry(
        id=id_,
        audio=resolve_path(audio, root),
        answer_text=answer_text,
        text=text or "",
        answer_codes=codes,
        answer_audio=resolve_path(answer_audio or "", root),
        duration=float(duration) if duration is not None else None,
        system=system,
    )


def _parse_codes(value: Any, line: int, log: ProblemLog) -> np.ndarray | None:
    allowed = f"a non-empty list of integer codes 0..{NUM_CODES - 1} (25 Hz)"
    if value is None:
        return None
    if not isinstance(value, list) or not value:
        log.add(
            line,
            "answer_codes",
            "an empty list" if isinstance(value, list) else f"a JSON {json_type(value)}",
            allowed,
        )
        return None
    bad = [
        i
        for i, c in enumerate(value)
        if isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < NUM_CODES
    ]
    if bad:
        first = bad[0]
        what = (
            f"{value[first]!r} out of range"
            if isinstance(value[first], int) and not isinstance(value[first], bool)
            else f"{value[first]!r} is not an integer"
        )
        more = f" ({len(bad)} bad codes in all)" if len(bad) > 1 else ""
        log.add(line, f"answer_codes[{first}]", what + more, allowed)
        return None
    return np.asarray(value, dtype=np.int16)


def _check_files(
    entry: ManifestEntry, line: int, log: ProblemLog, prober: AudioProber, allowed: str
) -> ManifestEntry | None:
    ok = True
    try:
        entry.audio_info = prober(entry.audio)
    except ValueError as err:
        log.add(line, "audio", str(err), allowed)
        ok = False
    if entry.answer_audio:
        try:
            entry.answer_info = prober(entry.answer_audio)
        except ValueError as err:
            log.add(line, "answer_audio", str(err), allowed)
            ok = False
    info = entry.audio_info
    if info is not None:
        if info.speech_frames_16k < 1:
            log.add(
                line, "audio", f"{info.duration * 1000:.1f} ms of audio", "at least one 40 ms speech frame"
            )
            ok = False
        if entry.duration is not None and abs(entry.duration - info.duration) > DURATION_TOLERANCE:
            log.add(
                line,
                "duration",
                f"{entry.duration:.3f} s but {entry.audio} is {info.duration:.3f} s",
                f"the file's duration, within {DURATION_TOLERANCE:.2f} s",
            )
            ok = False
    return entry if ok else None


# ------------------------------------------------------------------------------------------------ write


def manifest_entry_to_dict(
    entry: ManifestEntry, relative_to: str | os.PathLike | None = None, *, with_codes: bool = True
) -> dict[str, Any]:
    """The JSON object of ``entry`` (fields in ``FIELDS`` order; absent optional fields left out)."""
    out: dict[str, Any] = {"id": entry.id, "audio": relative_path(entry.audio, relative_to)}
    if entry.text:
        out["text"] = entry.text
    out["answer_text"] = entry.answer_text
    if with_codes and entry.answer_codes is not None:
        out["answer_codes"] = [int(c) for c in entry.answer_codes]
    if entry.answer_audio:
        out["answer_audio"] = relative_path(entry.answer_audio, relative_to)
    if entry.duration is not None:
        out["duration"] = round(float(entry.duration), 6)
    if entry.system is not None:
        out["system"] = entry.system
    return out


def write_manifest(
    path: str | os.PathLike, entries: Iterable[ManifestEntry], *, relative_to: str | os.PathLike | None = None
) -> Path:
    """Write ``entries`` as manifest JSONL (atomically); returns the path."""
    lines = [json.dumps(manifest_entry_to_dict(e, relative_to), ensure_ascii=False) for e in entries]
    return atomic_write_text(path, "".join(line + "\n" for line in lines))


__all__ = [
    "FIELDS",
    "ManifestEntry",
    "manifest_entry_to_dict",
    "read_manifest",
    "read_manifest_conversations",
    "write_manifest",
]
