"""``FunAudioChatProcessor``: chat prompt + user audio -> the model's input tensors.

It follows the official processor (``funaudiochat/processing_funaudiochat.py``):

- every audio (16 kHz) has ``num_frames = int(duration_s * 25)`` speech frames, and its ``<|AUDIO|>``
  placeholder (in order, across the batch) becomes ``ceil(num_frames / 5)`` copies, one per 5 Hz LLM slot,
  wrapped in ``<|audio_bos|> ... <|audio_eos|>`` unless already wrapped;
- ``speech_ids`` are all the speech pad id (6563): user speech is never tokenized at inference, its slots
  are filled by the continuous encoder, and ``speech_attention_mask`` marks the ``num_frames`` real frames;
- ``input_features`` are the Whisper log-mel of each audio, ``feature_exist_mask`` is all True.

Beyond the official processor: an audio may also be a ``SpokenReply``, an earlier assistant turn's speech
(its codes and text), laid out as the training data lays out assistant speech (reference §7): its
``speech_ids`` row is ``SPEECH_DELAY`` BOS ids then the codes, it has no log-mel (``feature_exist_mask``
False, ``input_features`` holds the user audios only), and ``text_ids`` / ``text_attention_mask`` carry
its text, one token per 5 Hz slot (the model averages it in).

Differences, on purpose: the log-mel is not padded to 30 s (the official ``WhisperFeatureExtractor`` call
uses ``padding="max_length"``, i.e. 3000 frames, and truncates longer audio), because the encoder here
takes lengths; it is padded to the longest audio of the batch, zero past each length. Each audio's frames
are the official ones (``ceil(len / 160)`` of them, the last seeing the zeros after the audio:
``WhisperFrontend(tail="zeros")``). A placeholder wrapped
on one side only gets the missing side (the official code then adds neither). Audio shorter than one 40 ms
speech frame is an error (the official code gives it zero slots). Audio comes in as waveforms or paths
(the official JSON ``{"path", "token"}`` strings of the training data are for the training package).

Example:
    >>> processor = FunAudioChatProcessor(tokenizer)
    >>> text = processor.apply_chat_template([{"role": "user", "content": [{"type": "audio"}]}])
    >>> batch = processor(text, audio=["question.wav"])
    >>> batch["input_ids"].shape, batch["input_features"].shape, batch["speech_ids"].shape
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from funaudiochat.base.constants import (
    GROUP_SIZE,
    SPEECH_BOS,
    SPEECH_CODES,
    SPEECH_DELAY,
    SPEECH_PAD,
    TOKEN_RATE,
    TOKENIZER_SAMPLE_RATE,
)
from funaudiochat.tokenizer import DEFAULT_MAX_SECONDS, WhisperFrontend, load_audio
from transformers import AutoTokenizer, PreTrainedTokenizerBase
from transformers.feature_extraction_utils import BatchFeature

from .text_tokenizer import AUDIO_BOS, AUDIO_EOS, AUDIO_TOKEN, CHAT_TEMPLATE, special_token_ids

SAMPLE_RATE = TOKENIZER_SAMPLE_RATE
SPEECH_FRAME_RATE = TOKEN_RATE  # S3 speech tokens per second
SPEECH_PAD_ID = SPEECH_PAD  # <|audio_pad|> of the speech vocabulary
PROCESSOR_CONFIG_NAME = "processor_config.json"
# a Hugging Face tokenizer folder holds at least one of these
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")


@dataclass(frozen=True)
class SpokenReply:
    """An earlier assistant turn's speech, to be put in a prompt as the model was trained on it.

    codes: its 25 Hz speech codes (0..6560, at least one); text: what it said (one token per 5 Hz slot
    goes in beside the speech, as in training)."""

    codes: tuple[int, ...]
    text: str

    def __post_init__(self) -> None:
        codes = tuple(int(c) for c in self.codes)
        if not codes:
            raise ValueError("a SpokenReply needs at least one speech code")
        bad = [c for c in codes if not 0 <= c < SPEECH_CODES]
        if bad:
            raise ValueError(f"a SpokenReply's codes must lie in 0..{SPEECH_CODES - 1}, got {bad[:5]}")
        if not isinstance(self.text, str):
            raise ValueError(f"a SpokenReply's text must be a string, got {type(self.text).__name__}")
        object.__setattr__(self, "codes", codes)

    @property
    def num_frames(self) -> int:
        """Speech frames of its row: the BOS delay, then the codes."""
        return SPEECH_DELAY + len(self.codes)

    def speech_ids(self) -> list[int]:
        return [SPEECH_BOS] * SPEECH_DELAY + list(self.codes)


AudioInput = str | os.PathLike | np.ndarray | torch.Tensor | SpokenReply


def speech_frame_count(num_samples: int, sample_rate: int = SAMPLE_RATE) -> int:
    """``int(num_samples / sample_rate * 25)``: the official formula, float rounding included.

    The float product lands just below an integer for some lengths (e.g. 18560 samples gives 28, not 29);
    the checkpoint was trained with this count, so it is kept as is.
    """
    return int(num_samples / sample_rate * SPEECH_FRAME_RATE)


def audio_slot_count(num_frames: int, group_size: int = GROUP_SIZE) -> int:
    """Number of ``<|AUDIO|>`` slots for ``num_frames`` speech frames: ``ceil(num_frames / group_size)``."""
    return -(-num_frames // group_size)


class FunAudioChatProcessor:
    """Chat formatting, placeholder expansion, tokenization and audio features for Fun-Audio-Chat.

    Args:
        tokenizer: the Qwen3 tokenizer of the checkpoint, or one from ``train_text_tokenizer``; it must hold
            the Fun-Audio-Chat special tokens (``special_token_ids`` raises otherwise).
        frontend: the log-mel frontend (default ``WhisperFrontend(tail="zeros")``, 128 bins: the official
            processor's ``WhisperFeatureExtractor`` frames).
        group_size: speech frames per LLM slot (5: 25 Hz -> 5 Hz).
        speech_pad_id: the speech-vocabulary pad id that fills ``speech_ids`` (6563).
        padding_side: ``"left"`` (default, for batched generation: every prompt ends at the last column) or
            ``"right"`` (for training); ``__call__`` can override it.
        chat_template: Jinja template for ``apply_chat_template`` (default ``CHAT_TEMPLATE``, ChatML). The
            tokenizer's own template is not used: Qwen3's adds thinking tags the checkpoint was not trained
            with.
        sample_rate: the rate audio is loaded at (16 kHz).
        max_audio_seconds: longest accepted audio, passed to ``load_audio``.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        frontend: WhisperFrontend | None = None,
        group_size: int = GROUP_SIZE,
        speech_pad_id: int = SPEECH_PAD_ID,
        *,
        padding_side: str = "left",
        chat_template: str | None = None,
        sample_rate: int = SAMPLE_RATE,
        max_audio_seconds: float | None = DEFAULT_MAX_SECONDS,
    ):
        if group_size < 1:
            raise ValueError(f"group_size must be positive, got {group_size}")
        _check_padding_side(padding_side)
        self.tokenizer = tokenizer
        self.token_ids = special_token_ids(tokenizer)
        self.frontend = frontend if frontend is not None else WhisperFrontend(tail="zeros")
        self.group_size = group_size
        self.speech_pad_id = speech_pad_id
        self.padding_side = padding_side
        self.chat_template = chat_template if chat_template is not None else CHAT_TEMPLATE
        self.sample_rate = sample_rate
        self.max_audio_seconds = max_audio_seconds

    # ----------------------------------------------------------------------------------------- chat text

    def apply_chat_template(
        self,
        messages: Sequence[dict[str, Any]],
        add_generation_prompt: bool = True,
        system_prompt: str | None = None,
    ) -> str:
        """The ChatML prompt text of ``messages`` (``{"role", "content"}`` dicts).

        ``content`` is a string (it may hold ``AUDIO_TEMPLATE`` itself, as the official examples do) or a
        list of ``{"type": "text", "text": ...}`` / ``{"type": "audio", "audio": ...}`` items; each audio item
        becomes ``<|audio_bos|><|AUDIO|><|audio_eos|>``. ``system_prompt`` is put first when the messages
        have no system turn; without either, the template inserts "You are a helpful assistant.".
        ``add_generation_prompt`` appends ``<|im_start|>assistant\\n``.
        """
        messages = list(messages)
        if not messages:
            raise ValueError("messages is empty; give at least one {'role': ..., 'content': ...} message")
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                raise ValueError(f"message {i} must be a dict with 'role' and 'content', got {message!r}")
        if system_prompt is not None and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": system_prompt}, *messages]
        return self.tokenizer.apply_chat_template(
            messages,
            chat_template=self.chat_template,
            add_generation_prompt=add_generation_prompt,
            tokenize=False,
        )

    @staticmethod
    def audios_from_messages(messages: Sequence[dict[str, Any]]) -> list[AudioInput]:
        """The audio of every audio item of ``messages`` (its ``audio``, else ``audio_url``), in prompt order.

        Items are matched as the chat template matches them, so the result pairs with the placeholders.
        """
        audios = []
        for message in messages:
            content = message.get("content")
            if isinstance(content, str) or content is None:
                continue
            for item in content:
                if not isinstance(item, dict):
                    continue
                if item.get("type") == "audio" or "audio" in item or "audio_url" in item:
                    value = item.get("audio", item.get("audio_url"))
                    if value is None:
                        raise ValueError(f"an audio item of a {message.get('role')!r} message has no 'audio'")
                    audios.append(value)
        return audios

    # -------------------------------------------------------------------------------------------- call

    def __call__(
        self,
        text: str | Sequence[str],
        audio: Sequence[AudioInput] | AudioInput | None = None,
        *,
        sampling_rate: int | None = None,
        padding_side: str | None = None,
    ) -> BatchFeature:
        """Model inputs for ``text`` (one prompt or a batch) and the audios of its ``<|AUDIO|>`` placeholders.

        Args:
            text: prompt(s), each with one ``<|AUDIO|>`` per audio (bare or already wrapped in
                ``<|audio_bos|>``/``<|audio_eos|>``).
            audio: one waveform or path per placeholder, in order across the batch: paths are read with
                ``load_audio``; 1-D arrays / tensors are at ``sampling_rate`` (default 16 kHz).
            sampling_rate: the rate of array audio, resampled to 16 kHz.
            padding_side: override of the processor's ``padding_side``.

        Returns a ``BatchFeature`` (``.to(device)`` works) with, for B prompts and N audios:
            input_ids [B, L] long, padded with the pad id; attention_mask [B, L] long (1 = token).
            With audio: input_features [N, 128, F] float32 (F = the longest audio's frames, 100 per second,
            zero past each length); feature_attention_mask [N, F] long; speech_ids [N, T] long, all
            ``speech_pad_id``, T = the most speech frames rounded up to a multiple of ``group_size``;
            speech_attention_mask [N, T] long, 1 for the first num_frames; feature_exist_mask [N] bool, True.
            With a ``SpokenReply`` among the audios: its speech_ids row is ``SPEECH_DELAY`` BOS ids then its
            codes, its feature_exist_mask False, input_features / feature_attention_mask have rows for the
            other (user) audios only (absent when there are none); text_ids [N, L] long (each reply's text
            tokens, the pad id elsewhere) and text_attention_mask [N] bool (True for replies) are added.

        Raises:
            ValueError: empty text, placeholder count != audio count, an audio ``load_audio`` rejects (its
                message is passed on) or too short for one speech frame, or a tokenizer that splits
                ``<|AUDIO|>``.
        """
        texts = self._check_text(text)
        side = _check_padding_side(padding_side if padding_side is not None else self.padding_side)
        audios = self._as_audio_list(audio)
        num_placeholders = sum(t.count(AUDIO_TOKEN) for t in texts)
        if num_placeholders != len(audios):
            raise ValueError(
                f"found {num_placeholders} {AUDIO_TOKEN} placeholder(s) in the text but received "
                f"{len(audios)} audio(s); give exactly one audio per placeholder, in order"
            )

        loaded = [
            a if isinstance(a, SpokenReply) else self._load(i, a, sampling_rate) for i, a in enumerate(audios)
        ]
        num_frames = [
            a.num_frames if isinstance(a, SpokenReply) else speech_frame_count(a.shape[0], self.sample_rate)
            for a in loaded
        ]
        slot_counts = [audio_slot_count(n, self.group_size) for n in num_frames]
        expanded = self.expand_audio_placeholders(texts, slot_counts)

        data = self._tokenize(expanded, texts, slot_counts, side)
        if loaded:
            data.update(self._audio_tensors(loaded, num_frames))
        return BatchFeature(data=data)

    def expand_audio_placeholders(self, texts: Sequence[str], slot_counts: Sequence[int]) -> list[str]:
        """Replace the k-th ``<|AUDIO|>`` (across ``texts``) by ``slot_counts[k]`` copies, wrapped in
        ``<|audio_bos|>``/``<|audio_eos|>`` where a side is missing."""
        total = sum(t.count(AUDIO_TOKEN) for t in texts)
        if total != len(slot_counts):
            raise ValueError(
                f"found {total} {AUDIO_TOKEN} placeholder(s) but {len(slot_counts)} slot count(s)"
            )
        counts = iter(slot_counts)
        expanded = []
        for text in texts:
            pieces = text.split(AUDIO_TOKEN)
            parts = [pieces[0]]
            for before, after in zip(pieces[:-1], pieces[1:], strict=True):
                run = AUDIO_TOKEN * next(counts)
                if not before.endswith(AUDIO_BOS):
                    run = AUDIO_BOS + run
                if not after.startswith(AUDIO_EOS):
                    run = run + AUDIO_EOS
                parts += [run, after]
            expanded.append("".join(parts))
        return expanded

    # ------------------------------------------------------------------------------------------ decode

    def batch_decode(self, *args: Any, **kwargs: Any) -> list[str]:
        """``tokenizer.batch_decode``."""
        return self.tokenizer.batch_decode(*args, **kwargs)

    def decode(self, *args: Any, **kwargs: Any) -> str:
        """``tokenizer.decode``."""
        return self.tokenizer.decode(*args, **kwargs)

    # -------------------------------------------------------------------------------------- save / load

    def save_pretrained(self, save_directory: str | os.PathLike) -> None:
        """Write the tokenizer files, ``processor_config.json`` (group size, pad id, padding side) and what
        vLLM reads besides (``serving_files``: ``preprocessor_config.json``, ``speech_tokenizer/``)."""
        from .serving_files import write_serving_files

        folder = Path(save_directory)
        folder.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save_pretrained(folder)
        write_serving_files(folder, self.frontend.n_mels)
        config = {
            "processor_class": type(self).__name__,
            "audio_group_size": self.group_size,
            "speech_pad_id": self.speech_pad_id,
            "padding_side": self.padding_side,
            "sample_rate": self.sample_rate,
            "chat_template": self.chat_template,
        }
        (folder / PROCESSOR_CONFIG_NAME).write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, **overrides: Any) -> FunAudioChatProcessor:
        """Load a folder written by ``save_pretrained`` (or an official checkpoint folder: unknown keys of
        its ``processor_config.json`` are ignored). Local folders only; ``overrides`` go to ``__init__``."""
        folder = Path(directory)
        if not folder.is_dir():
            raise ValueError(f"{folder}: not a directory (only local processor folders are supported)")
        if not any((folder / name).is_file() for name in TOKENIZER_FILES):
            raise ValueError(
                f"{folder}: no text tokenizer (none of {', '.join(TOKENIZER_FILES)}); a processor folder is "
                "written by FunAudioChatProcessor.save_pretrained (a checkpoint folder holds one when it "
                "was saved with its processor)"
            )
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        kwargs: dict[str, Any] = {}
        config_path = folder / PROCESSOR_CONFIG_NAME
        if config_path.is_file():
            config = json.loads(config_path.read_text())
            renamed = {"audio_group_size": "group_size"}
            for key in ("audio_group_size", "speech_pad_id", "padding_side", "sample_rate", "chat_template"):
                if key in config:
                    kwargs[renamed.get(key, key)] = config[key]
        kwargs.update(overrides)
        return cls(tokenizer, **kwargs)

    # ----------------------------------------------------------------------------------------- helpers

    @staticmethod
    def _check_text(text: str | Sequence[str]) -> list[str]:
        texts = [text] if isinstance(text, str) else list(text) if isinstance(text, (list, tuple)) else None
        if texts is None:
            raise ValueError(f"text must be a string or a list of strings, got {type(text).__name__}")
        if not texts:
            raise ValueError("text is an empty list; give at least one prompt")
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ValueError(f"text {i} must be a string, got {type(t).__name__}")
            if not t.strip():
                raise ValueError(f"text {i} is empty; give a prompt (see apply_chat_template)")
        return texts

    @staticmethod
    def _as_audio_list(audio: Sequence[AudioInput] | AudioInput | None) -> list[AudioInput]:
        if audio is None:
            return []
        if isinstance(audio, (list, tuple)):
            return list(audio)
        is_waveform = isinstance(audio, (np.ndarray, torch.Tensor)) and audio.ndim == 1
        if isinstance(audio, (str, os.PathLike, SpokenReply)) or is_waveform:
            return [audio]
        raise ValueError(
            "audio must be a list of waveforms / paths (one per placeholder) or a single path or 1-D "
            f"waveform, got {type(audio).__name__}"
            + (f" of shape {tuple(audio.shape)}" if isinstance(audio, (np.ndarray, torch.Tensor)) else "")
        )

    def _load(self, index: int, audio: AudioInput, sampling_rate: int | None) -> torch.Tensor:
        if isinstance(audio, (np.ndarray, torch.Tensor)) and audio.ndim != 1:
            raise ValueError(f"audio {index}: expected a 1-D waveform, got shape {tuple(audio.shape)}")
        try:
            wav = load_audio(
                audio,
                self.sample_rate,
                source_rate=sampling_rate if sampling_rate is not None else self.sample_rate,
                max_seconds=self.max_audio_seconds,
            )
        except ValueError as err:
            raise ValueError(f"audio {index}: {err}") from err
        if speech_frame_count(wav.shape[0], self.sample_rate) == 0:
            raise ValueError(
                f"audio {index}: {wav.shape[0] / self.sample_rate * 1000:.1f} ms is shorter than one "
                f"{1000 // SPEECH_FRAME_RATE} ms speech frame"
            )
        return wav

    def _tokenize(
        self, expanded: list[str], texts: list[str], slot_counts: list[int], side: str
    ) -> dict[str, torch.Tensor]:
        rows = self.tokenizer(expanded, add_special_tokens=False)["input_ids"]
        audio_id = self.token_ids.audio_token_index
        counts = iter(slot_counts)
        for i, (row, text) in enumerate(zip(rows, texts, strict=True)):
            expected = sum(next(counts) for _ in range(text.count(AUDIO_TOKEN)))
            found = sum(1 for tok in row if tok == audio_id)
            if found != expected:
                raise ValueError(
                    f"text {i}: expected {expected} {AUDIO_TOKEN} ids (id {audio_id}) after tokenization but "
                    f"found {found}; the tokenizer must keep {AUDIO_TOKEN} a single special token"
                )
        width = max(len(row) for row in rows)
        input_ids = torch.full((len(rows), width), self.token_ids.pad, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, row in enumerate(rows):
            span = slice(width - len(row), width) if side == "left" else slice(0, len(row))
            input_ids[i, span] = torch.tensor(row, dtype=torch.long)
            attention_mask[i, span] = 1
        return {"input_ids": input_ids, "attention_mask": attention_mask}

    def _audio_tensors(
        self, audios: list[torch.Tensor | SpokenReply], num_frames: list[int]
    ) -> dict[str, torch.Tensor]:
        waveforms = [a for a in audios if not isinstance(a, SpokenReply)]
        replies = [isinstance(a, SpokenReply) for a in audios]
        data: dict[str, torch.Tensor] = {}
        if waveforms:
            with torch.no_grad():
                mel, mel_lengths = self.frontend.batch(waveforms)
            frames = torch.arange(mel.shape[-1])
            data["input_features"] = mel.float()
            data["feature_attention_mask"] = (frames.unsqueeze(0) < mel_lengths.unsqueeze(1)).long()

        frames_tensor = torch.tensor(num_frames, dtype=torch.long)
        width = self.group_size * math.ceil(max(num_frames) / self.group_size)
        speech_ids = torch.full((len(audios), width), self.speech_pad_id, dtype=torch.long)
        for row, audio in enumerate(audios):
            if isinstance(audio, SpokenReply):
                speech_ids[row, : audio.num_frames] = torch.tensor(audio.speech_ids(), dtype=torch.long)
        data["speech_ids"] = speech_ids
        data["speech_attention_mask"] = (torch.arange(width).unsqueeze(0) < frames_tensor.unsqueeze(1)).long()
        data["feature_exist_mask"] = ~torch.tensor(replies, dtype=torch.bool)
        if any(replies):
            texts = [a.text if isinstance(a, SpokenReply) else "" for a in audios]
            rows = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
            text_ids = torch.full(
                (len(audios), max(1, *map(len, rows))), self.token_ids.pad, dtype=torch.long
            )
            for row, ids in enumerate(rows):
                text_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
            data["text_ids"] = text_ids
            data["text_attention_mask"] = torch.tensor(replies, dtype=torch.bool)
        return data


def _check_padding_side(side: str) -> str:
    if side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {side!r}")
    return side
