"""The data of the speech-LLM stages: spoken conversations -> padded official-layout batches.

``train`` / ``val``: an official sharegpt JSONL (``read_sharegpt``) or our manifest (``read_manifest``;
``format: auto`` tells them apart by the first line's keys). Everything is validated when the data module
is set up, so a bad file stops the run before the first step with every problem listed. Batches come from
a ``DurationBucketSampler`` (at most ``max_seconds`` of audio and ``max_batch_size`` conversations per
batch; buckets of similar audio seconds, or with ``bucket_by: tokens`` of similar ``input_ids`` lengths,
so that a long system prompt, such as the function-calling one, does not pad a batch of short chats to its
length; shuffled per epoch from ``seed``; split across DDP ranks), so recipes set
``trainer.use_distributed_sampler: false``. The sampler's position is part of Lightning's checkpoint: a
resumed run continues the epoch with the batches it had not seen.

``processor``: a folder written by ``FunAudioChatProcessor.save_pretrained`` (the text tokenizer and the
audio settings; it must be the one the model was built with). ``group_size``: 25 Hz speech frames per LLM
``<|AUDIO|>`` slot; None (default) takes the processor folder's (``audio_group_size``, 5 officially: the
LLM at 5 Hz), a number overrides it (1: the LLM at 25 Hz, one slot and one reply-text token per frame), so
a k = 1 run can use the saved k = 5 folder. It must equal the model's ``audio_config.group_size``: the
speech-LLM modules refuse to fit otherwise, naming both. ``speech_tokenizer``: safetensors weights
used to tokenize assistant audio that has no codes yet (manifest ``answer_audio``), cached in
``codes_cache``.

Example:
    >>> data = SpokenChatDataModule(train="spoken/train.jsonl", processor="model/", max_seconds=60)
    >>> data_25hz = SpokenChatDataModule(train="spoken/train.jsonl", processor="model/", group_size=1)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..data import (
    CodesCache,
    Collator,
    ConversationEncoder,
    DurationBucketSampler,
    SpokenChatDataset,
    read_manifest_conversations,
    read_sharegpt,
)
from ..datamodule import BucketedDataModule

FORMATS = ("auto", "sharegpt", "manifest")
BUCKET_BY = ("seconds", "tokens")


def detect_format(path: str | os.PathLike) -> str:
    """``sharegpt`` when the first JSON line has ``messages``/``conversations``, ``manifest`` when it has
    ``answer_text``; otherwise a ``ValueError``."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                first = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not JSON ({err.msg})") from err
            if isinstance(first, dict) and ("messages" in first or "conversations" in first):
                return "sharegpt"
            if isinstance(first, dict) and "answer_text" in first:
                return "manifest"
            raise ValueError(
                f"{path}:{number}: neither sharegpt (messages/conversations) nor manifest (answer_text); "
                "set data.format"
            )
    raise ValueError(f"{path}: the file has no data lines")


def read_conversations(path: str | os.PathLike, fmt: str = "auto"):
    if fmt not in FORMATS:
        raise ValueError(f"data.format must be one of {list(FORMATS)}, got {fmt!r}")
    if not Path(path).is_file():
        raise ValueError(f"{path}: data file not found")
    fmt = detect_format(path) if fmt == "auto" else fmt
    return read_sharegpt(path) if fmt == "sharegpt" else read_manifest_conversations(path)


def check_group_size(group_size: int | None) -> None:
    """``data.group_size`` is None or an integer >= 1, else a ``ValueError``."""
    if group_size is not None and (
        isinstance(group_size, bool) or not isinstance(group_size, int) or group_size < 1
    ):
        raise ValueError(
            f"data.group_size must be an integer >= 1 (25 Hz frames per LLM slot) or null, got {group_size!r}"
        )


def load_processor(folder: str | os.PathLike, group_size: int | None = None):
    """The ``FunAudioChatProcessor`` of ``folder`` for training (right padding); ``group_size`` (not
    None) replaces the folder's ``audio_group_size``."""
    from funaudiochat.drsr.processing import FunAudioChatProcessor

    if not Path(folder).is_dir():
        raise ValueError(f"data.processor {folder}: not a folder (FunAudioChatProcessor)")
    overrides = {} if group_size is None else {"group_size": group_size}
    return FunAudioChatProcessor.from_pretrained(folder, padding_side="right", **overrides)


class SpokenChatDataModule(BucketedDataModule):
    """Spoken conversations for ``SpeechLLMModule`` / ``CoreCocktailModule`` (see the module docstring)."""

    def __init__(
        self,
        train: str = "???",
        processor: str = "???",
        val: str | None = None,
        format: str = "auto",
        max_seconds: float | None = 120.0,
        max_batch_size: int | None = 16,
        num_buckets: int = 10,
        seed: int = 0,
        num_workers: int = 0,
        max_length: int | None = None,
        speech_tokenizer: str | None = None,
        codes_cache: str | None = None,
        group_size: int | None = None,
        bucket_by: str = "seconds",
    ):
        super().__init__()
        if format not in FORMATS:
            raise ValueError(f"data.format must be one of {list(FORMATS)}, got {format!r}")
        if bucket_by not in BUCKET_BY:
            raise ValueError(f"data.bucket_by must be one of {list(BUCKET_BY)}, got {bucket_by!r}")
        if max_seconds is None and max_batch_size is None:
            raise ValueError("give data.max_seconds or data.max_batch_size (or both) to bound a batch")
        check_group_size(group_size)
        self.save_hyperparameters()

    def _processor(self):
        return load_processor(self.hparams.processor, self.hparams.group_size)

    @property
    def group_size(self) -> int:
        """25 Hz speech frames per ``<|AUDIO|>`` slot of this data: ``data.group_size``, else the
        processor folder's."""
        if hasattr(self, "processor"):
            return self.processor.group_size
        if self.hparams.group_size is not None:
            return self.hparams.group_size
        return self._processor().group_size

    def _cache(self) -> CodesCache | None:
        h = self.hparams
        if h.speech_tokenizer is None:
            return None
        from funaudiochat.tokenizer import SpeechTokenizer

        root = h.codes_cache or str(Path(h.speech_tokenizer).with_suffix("")) + "_codes"
        return CodesCache(root, SpeechTokenizer.from_safetensors(h.speech_tokenizer))

    def setup(self, stage: str | None = None) -> None:
        if hasattr(self, "train_set"):
            return
        h = self.hparams
        self.processor = self._processor()
        encoder = ConversationEncoder(self.processor)
        cache = self._cache()
        self.collate = Collator.for_processor(self.processor)
        self.train_set = SpokenChatDataset(
            read_conversations(h.train, h.format), encoder, codes_cache=cache, max_length=h.max_length
        )
        self.val_set = None
        if h.val is not None:
            self.val_set = SpokenChatDataset(
                read_conversations(h.val, h.format), encoder, codes_cache=cache, max_length=h.max_length
            )

    def _sampler(self, dataset: SpokenChatDataset, shuffle: bool) -> DurationBucketSampler:
        h = self.hparams
        trainer = self.trainer
        replicas = trainer.world_size if trainer is not None else 1
        rank = trainer.global_rank if trainer is not None else 0
        return DurationBucketSampler(
            dataset.durations,
            max_seconds=h.max_seconds,
            max_batch_size=h.max_batch_size,
            num_buckets=h.num_buckets,
            shuffle=shuffle,
            seed=h.seed,
            num_replicas=replicas,
            rank=rank,
            sort_by=dataset.lengths if h.bucket_by == "tokens" else None,
        )
