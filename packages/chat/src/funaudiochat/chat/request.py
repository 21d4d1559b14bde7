"""What one spoken-chat request asks for: the user's input, the history, the mode, the voice and the
sampling settings, each checked with an error that names what was wrong and what is allowed.

Modes (reference §4.3, §8):

- ``s2s``: text and speech at once (the official S2M system prompt, the SRH on, ``<|audio_bos|>`` forced
  first);
- ``s2t``: text only (the official S2T prompt, the SRH off); tools switch to the function-calling prompt;
- ``asr``: a transcript of the audio (S2T with the official "Please help me transcribe the audio.").

Example:
    >>> earlier = [Turn("user", text="Hi"), Turn("assistant", "Hello!")]
    >>> request = Request(audio="question.wav", history=earlier)
    >>> request = Request(text="What is two plus two?", mode="s2t", sampling=Sampling(seed=3))
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from funaudiochat.base.constants import SPEECH_CODES
from funaudiochat.drsr import DecodingConfig, SamplingConfig

MODES = ("s2s", "s2t", "asr")
ROLES = ("user", "assistant")
AudioInput = str | os.PathLike | torch.Tensor


@dataclass(frozen=True)
class Sampling:
    """Sampling settings of one request. Text is greedy unless ``text_temperature > 0``; speech follows the
    official settings (temperature 0.8, top-p 0.9, repetition penalty 1.2); ``temperature`` 0 is argmax.

    text_temperature / speech_temperature: >= 0; text_top_k / speech_top_k: >= 0 (0: off);
    text_top_p / speech_top_p: in (0, 1]; repetition_penalty: > 0, for speech (text: ``text_repetition``);
    seed: an int (each request draws from its own generator); max_new_tokens: 5 Hz steps, >= 1;
    repetition_window: the repetition penalties look at the last that many tokens of their stream (0: all,
    the official setting); sil_scale: the text's ``<|sil|>`` probability times this (> 0; 1: unchanged);
    plan_max_silence: a planned spoken reply (``Pipeline``'s ``plan_speech``) waits at most this many 5 Hz
    steps between its words (>= 0; 0: no limit)."""

    text_temperature: float = 0.0
    text_top_k: int = 0
    text_top_p: float = 1.0
    text_repetition: float = 1.0
    speech_temperature: float = 0.8
    speech_top_k: int = 0
    speech_top_p: float = 0.9
    repetition_penalty: float = 1.2
    seed: int = 0
    max_new_tokens: int = 512
    repetition_window: int = 0
    sil_scale: float = 1.0
    plan_max_silence: int = 3

    def __post_init__(self) -> None:
        problems = []
        if not (isinstance(self.repetition_window, int) and self.repetition_window >= 0):
            problems.append(
                f"repetition_window must be an integer >= 0 (0: all), got {self.repetition_window!r}"
            )
        if not (
            isinstance(self.sil_scale, int | float) and math.isfinite(self.sil_scale) and self.sil_scale > 0
        ):
            problems.append(f"sil_scale must be a number > 0 (1: unchanged), got {self.sil_scale!r}")
        for name in ("text_temperature", "speech_temperature"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                problems.append(f"{name} must be a number >= 0, got {value!r}")
        for name in ("text_top_k", "speech_top_k", "plan_max_silence"):
            value = getattr(self, name)
            if not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
                problems.append(f"{name} must be an integer >= 0 (0: off), got {value!r}")
        for name in ("text_top_p", "speech_top_p"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0 < value <= 1):
                problems.append(f"{name} must lie in (0, 1], got {value!r}")
        for name in ("text_repetition", "repetition_penalty"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                problems.append(f"{name} must be a number > 0, got {value!r}")
        if not (isinstance(self.seed, int) and not isinstance(self.seed, bool) and 0 <= self.seed < 2**63):
            problems.append(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        if not (isinstance(self.max_new_tokens, int) and self.max_new_tokens >= 1):
            problems.append(f"max_new_tokens must be an integer >= 1, got {self.max_new_tokens!r}")
        if problems:
            raise ValueError("bad sampling settings: " + "; ".join(problems))

    def decoding(self, speech: bool) -> DecodingConfig:
        """The decoder's settings: ``speech`` False is the S2T setting (SRH off, no forced audio BOS)."""
        text = SamplingConfig(
            do_sample=self.text_temperature > 0,
            temperature=self.text_temperature or 1.0,
            top_k=self.text_top_k,
            top_p=self.text_top_p,
            repetition_penalty=self.text_repetition,
            repetition_window=self.repetition_window,
        )
        spoken = SamplingConfig(
            do_sample=self.speech_temperature > 0,
            temperature=self.speech_temperature or 1.0,
            top_k=self.speech_top_k,
            top_p=self.speech_top_p,
            repetition_penalty=self.repetition_penalty,
            repetition_window=self.repetition_window,
        )
        return DecodingConfig(
            max_new_tokens=self.max_new_tokens,
            text=text,
            speech=spoken,
            force_text_abos=speech,
            disable_speech=not speech,
            seed=self.seed,
            sil_scale=self.sil_scale,
            plan_max_silence=self.plan_max_silence,
        )


@dataclass(frozen=True)
class Turn:
    """One earlier turn of the conversation.

    role: "user" or "assistant"; text: what was said as text; audio (user turns): a path or a 16 kHz
    waveform; speech_codes (assistant turns, optional): the 25 Hz codes it spoke. A prompt holds the
    assistant's text, as the official examples and server do; with ``Request(history_speech=True)`` a turn
    with codes goes in as speech with its text beside it, the layout of the training data."""

    role: str
    text: str | None = None
    audio: AudioInput | None = None
    speech_codes: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"a history turn's role must be one of {ROLES}, got {self.role!r}")
        if self.text is not None and not isinstance(self.text, str):
            raise ValueError(f"a history turn's text must be a string, got {type(self.text).__name__}")
        if self.role == "assistant":
            if self.audio is not None:
                raise ValueError("an assistant turn holds text (and optionally speech_codes), not audio")
            if not self.text:
                raise ValueError("an assistant turn needs its text")
        elif self.audio is None and not self.text:
            raise ValueError("a user turn needs text, audio or both")
        if self.speech_codes is not None:
            codes = tuple(self.speech_codes)
            bad = [c for c in codes if not (isinstance(c, int) and 0 <= c < SPEECH_CODES)]
            if self.role != "assistant" or bad:
                raise ValueError(
                    "speech_codes belong to assistant turns and must be codes 0.."
                    f"{SPEECH_CODES - 1}; got {bad[:5] if bad else 'a user turn'}"
                )
            object.__setattr__(self, "speech_codes", codes)


@dataclass(frozen=True)
class Request:
    """One request: ``audio`` and/or ``text`` from the user now, the ``history`` before it, the ``mode``,
    an optional ``system`` prompt (default: the mode's official one), ``tools`` (OpenAI-style function
    schemas; S2T with the official function-calling prompt), a ``voice`` (a speaker-table name or a
    clip's path; None: the table's first) and ``sampling``. ``history_speech``: assistant turns of the
    history that have ``speech_codes`` go into the prompt as speech (with their text beside it) instead
    of as text alone (the official examples' choice, the default)."""

    audio: AudioInput | None = None
    text: str | None = None
    history: Sequence[Turn] = ()
    mode: str = "s2s"
    system: str | None = None
    tools: Sequence[dict[str, Any]] | None = None
    voice: str | os.PathLike | None = None
    sampling: Sampling = field(default_factory=Sampling)
    history_speech: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; use one of {', '.join(MODES)}")
        if self.text is not None and not isinstance(self.text, str):
            raise ValueError(f"text must be a string, got {type(self.text).__name__}")
        if self.audio is None and not (self.text and self.text.strip()):
            raise ValueError("a request needs audio, or text that is not empty")
        if self.mode == "asr" and self.audio is None:
            raise ValueError("mode 'asr' transcribes audio: give audio")
        if not isinstance(self.history_speech, bool):
            raise ValueError(f"history_speech must be True or False, got {self.history_speech!r}")
        if not isinstance(self.sampling, Sampling):
            raise ValueError(f"sampling must be a Sampling, got {type(self.sampling).__name__}")
        turns = tuple(self.history)
        for i, turn in enumerate(turns):
            if not isinstance(turn, Turn):
                raise ValueError(f"history[{i}] must be a Turn, got {type(turn).__name__}")
        object.__setattr__(self, "history", turns)
        if self.tools is not None:
            object.__setattr__(self, "tools", check_tools(self.tools))
            if self.mode == "s2s":
                object.__setattr__(self, "mode", "s2t")  # function calling runs in S2T (reference §8)

    @property
    def speaks(self) -> bool:
        """Whether the reply has speech."""
        return self.mode == "s2s"

    def with_seed(self, seed: int) -> Request:
        return replace(self, sampling=replace(self.sampling, seed=seed))


def check_tools(tools: Any) -> list[dict[str, Any]]:
    """OpenAI-style function schemas: a list of objects, each naming its function."""
    if not isinstance(tools, list | tuple) or not tools:
        raise ValueError("tools must be a non-empty list of function schemas")
    checked = []
    for i, tool in enumerate(tools):
        function = tool.get("function", tool) if isinstance(tool, dict) else None
        if (
            not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not function["name"]
        ):
            raise ValueError(
                f'tools[{i}] must be an object with a "name" (or {{"type": "function", "function": '
                f'{{"name": ...}}}}), got {tool!r}'
            )
        checked.append(tool)
    return checked


def read_json(path: str | os.PathLike, what: str) -> Any:
    """A JSON file, with the file named in any error."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{path}: {what} file not found")
    try:
        return json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: {what} file is not valid JSON ({err})") from err


def history_from_json(data: Any, source: str = "history") -> list[Turn]:
    """Turns from a JSON list of ``{"role", "text", "audio", "speech_codes"}`` objects (audio: a path,
    relative paths taken from the folder of ``source`` when it is a file)."""
    if not isinstance(data, list):
        raise ValueError(f"{source}: the history must be a JSON list of turns, got {type(data).__name__}")
    base = Path(source).parent if Path(source).is_file() else Path(".")
    turns = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ValueError(f"{source}: turn {i} must be an object, got {item!r}")
        unknown = set(item) - {"role", "text", "audio", "speech_codes"}
        if unknown:
            raise ValueError(
                f"{source}: turn {i} has unknown keys {sorted(unknown)} (allowed: role, text, audio, "
                "speech_codes)"
            )
        audio = item.get("audio")
        if audio is not None:
            if not isinstance(audio, str):
                raise ValueError(f"{source}: turn {i}: audio must be a path string, got {audio!r}")
            audio = str(base / audio) if not Path(audio).is_absolute() else audio
        try:
            turns.append(Turn(item.get("role"), item.get("text"), audio, item.get("speech_codes")))
        except (ValueError, TypeError) as err:
            raise ValueError(f"{source}: turn {i}: {err}") from err
    return turns
