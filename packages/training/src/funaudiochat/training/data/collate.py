"""Batch collation: ``EncodedConversation``s -> the padded tensors ``FunAudioChatForConditionalGeneration``
takes in training (``model(**batch)``), in the official layout (see tests/drsr/golden/README.md).

For B conversations holding N audios in all (M of them user audio), right padding:

    input_ids            [B, S] long   pad id (the tokenizer's) past each length
    attention_mask       [B, S] long   1 = token
    position_ids         [B, S] long   0..len-1, then 0
    labels               [B, S] long   -100 outside the assistant replies and on padding
    speech_ids           [N, T] long   one row per audio, in order; pad 6563; T a multiple of group_size
    speech_attention_mask[N, T] long   1 on each row's own frames
    text_ids             [N, L] long   per-audio text ids, pad id past each length
    text_attention_mask  [N]    bool   the audio has a text (assistant replies)
    feature_exist_mask   [N]    bool   the audio has log-mel features (user audio)
    input_features       [M, 128, F] float32, zero past each length (when features were computed)
    feature_attention_mask [M, F] long 1 on each audio's own 100 Hz frames
    waveforms            [M, W] float32 at 16 kHz, zero-padded, and waveform_lengths [M] long
                         (only with ``Collator(return_waveforms=True)``: not model inputs)

Audio keys are left out when the batch has no audio (no user audio: no feature keys).

Example:
    >>> collate = Collator.for_processor(processor)
    >>> batch = collate([encoder.encode(c) for c in conversations])
    >>> out = model(**model_inputs(batch))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from funaudiochat.drsr.processing import GROUP_SIZE, FunAudioChatProcessor

from .encode import IGNORE_INDEX, EncodedConversation
from .speech_tokens import SPEECH_PAD_ID

MODEL_INPUT_KEYS = (
    "input_ids",
    "attention_mask",
    "position_ids",
    "labels",
    "speech_ids",
    "speech_attention_mask",
    "text_ids",
    "text_attention_mask",
    "feature_exist_mask",
    "input_features",
    "feature_attention_mask",
)


def model_inputs(batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keys of ``batch`` that ``FunAudioChatForConditionalGeneration.forward`` takes."""
    return {k: v for k, v in batch.items() if k in MODEL_INPUT_KEYS}


def pad_1d(rows: Sequence[torch.Tensor], value: float | int, multiple_of: int = 1) -> torch.Tensor:
    """Right-pad 1-D tensors into ``[len(rows), W]``, W = the longest rounded up to ``multiple_of``."""
    width = max((int(r.shape[0]) for r in rows), default=0)
    width = -(-width // multiple_of) * multiple_of
    dtype = rows[0].dtype if rows else torch.long
    out = torch.full((len(rows), width), value, dtype=dtype)
    for i, row in enumerate(rows):
        out[i, : row.shape[0]] = row
    return out


def length_mask(lengths: Sequence[int], width: int) -> torch.Tensor:
    """``[len(lengths), width]`` long, 1 where the position is below the row's length."""
    return (torch.arange(width)[None, :] < torch.tensor(list(lengths), dtype=torch.long)[:, None]).long()


@dataclass
class Collator:
    """Pads a list of ``EncodedConversation`` into one training batch (see the module docstring).

    Args:
        pad_token_id: text pad id (the tokenizer's; ``<|endoftext|>`` for Qwen3).
        speech_pad_id: speech pad id (official 6563).
        group_size: 25 Hz speech frames per LLM slot; speech rows are padded to a multiple of it (the
            processor's: ``for_processor``; 5 officially).
        return_waveforms: add ``waveforms`` / ``waveform_lengths`` (needs ``keep_waveforms`` encoding).
    """

    pad_token_id: int
    speech_pad_id: int = SPEECH_PAD_ID
    group_size: int = GROUP_SIZE
    return_waveforms: bool = False

    @classmethod
    def for_processor(cls, processor: FunAudioChatProcessor, **kwargs) -> Collator:
        """A collator with the processor's text pad id, speech pad id and group size."""
        return cls(
            pad_token_id=processor.token_ids.pad,
            speech_pad_id=processor.speech_pad_id,
            group_size=processor.group_size,
            **kwargs,
        )

    def __call__(self, items: Sequence[EncodedConversation]) -> dict[str, torch.Tensor]:
        if not items:
            raise ValueError("cannot collate an empty batch")
        lengths = [int(it.input_ids.shape[0]) for it in items]
        input_ids = pad_1d([it.input_ids for it in items], self.pad_token_id)
        width = input_ids.shape[1]
        attention_mask = length_mask(lengths, width)
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "position_ids": (torch.arange(width)[None, :] * attention_mask).long(),
            "labels": pad_1d([it.labels for it in items], IGNORE_INDEX),
        }
        speech = [row for it in items for row in it.speech_ids]
        if speech:
            batch.update(self._audio(items, speech))
        if self.return_waveforms:
            waves = [w for it in items for w in it.waveforms]
            if len(waves) != sum(sum(it.feature_exist) for it in items):
                raise ValueError(
                    "return_waveforms needs every user audio's waveform; encode with keep_waveforms=True"
                )
            if waves:
                batch["waveforms"] = pad_1d([w.float() for w in waves], 0.0)
                batch["waveform_lengths"] = torch.tensor([int(w.shape[0]) for w in waves], dtype=torch.long)
        return batch

    def _audio(
        self, items: Sequence[EncodedConversation], speech: list[torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        speech_ids = pad_1d(speech, self.speech_pad_id, self.group_size)
        out = {
            "speech_ids": speech_ids,
            "speech_attention_mask": length_mask([int(r.shape[0]) for r in speech], speech_ids.shape[1]),
            "text_ids": pad_1d([t for it in items for t in it.text_ids], self.pad_token_id),
            "text_attention_mask": torch.tensor([m for it in items for m in it.text_mask], dtype=torch.bool),
            "feature_exist_mask": torch.tensor(
                [e for it in items for e in it.feature_exist], dtype=torch.bool
            ),
        }
        features = [f for it in items for f in it.features]
        users = int(out["feature_exist_mask"].sum())
        if users and len(features) == users:
            frames = max(int(f.shape[-1]) for f in features)
            out["input_features"] = torch.stack(
                [F.pad(f.float(), (0, frames - f.shape[-1])) for f in features]
            )
            out["feature_attention_mask"] = length_mask([int(f.shape[-1]) for f in features], frames)
        elif features:
            raise ValueError(f"{len(features)} feature rows for {users} user audios; encode every item alike")
        return out
