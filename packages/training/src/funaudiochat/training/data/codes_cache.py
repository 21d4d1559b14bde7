"""On-the-fly speech tokenization of assistant audio (25 Hz S3 codes) with a content-addressed disk cache.

A cache entry is keyed by the SHA-256 of the audio file's bytes and of the tokenizer's weights
(``tokenizer_fingerprint``), so a changed file or a retrained tokenizer never returns stale codes, and the
same audio under another name is a hit. Entries are ``.npy`` int16 arrays ``[n]`` (codes 0..6560), read
with ``allow_pickle=False``, written atomically (temporary file + ``os.replace``): any number of
DataLoader workers or ranks can read and fill the cache at once. A file that does not hold valid codes
is treated as a miss and rewritten.

Example:
    >>> cache = CodesCache("cache/codes", SpeechTokenizer.from_safetensors("tokenizer.safetensors"))
    >>> codes = cache.codes_for("answer.wav")                # np.int16 [ceil(len_16k / 640)]
    >>> conversations = cache.fill(conversations)            # codes for every AssistantSpeech lacking them
    >>> cache.hits, cache.misses
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from funaudiochat.tokenizer import SpeechTokenizer, load_audio

from ..atomic import atomic_write
from .records import AssistantSpeech, Conversation
from .speech_tokens import NUM_CODES

CACHE_FORMAT = "funaudiochat-codes-v1"  # part of every key: bump it when the entry layout changes
_CHUNK = 1 << 20


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of the file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tokenizer_fingerprint(tokenizer: SpeechTokenizer) -> str:
    """SHA-256 (hex) of the tokenizer's config and every tensor of its state dict (name, dtype, shape,
    bytes): equal fingerprints give equal codes."""
    digest = hashlib.sha256()
    digest.update(json.dumps(dataclasses.asdict(tokenizer.config), sort_keys=True).encode())
    for name, tensor in sorted(tokenizer.state_dict().items()):
        plain = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{plain.dtype}|{tuple(plain.shape)}|".encode())
        digest.update(plain.view(torch.uint8).numpy().tobytes() if plain.numel() else b"")
    return digest.hexdigest()


class CodesCache:
    """25 Hz codes of audio files, computed by ``tokenizer`` once and kept under ``root``.

    Args:
        root: cache folder (created); entries live at ``root/<key[:2]>/<key>.npy``.
        tokenizer: the ``SpeechTokenizer`` that makes the codes (kept in eval mode, on its device).
        weights_id: identifies the tokenizer's weights in keys; default ``tokenizer_fingerprint``.
        batch_size: files tokenized per ``encode`` call when filling many at once.
        max_seconds: longest audio accepted by ``load_audio``.

    ``hits`` / ``misses`` count lookups in this process.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        tokenizer: SpeechTokenizer,
        *,
        weights_id: str | None = None,
        batch_size: int = 16,
        max_seconds: float | None = None,
    ):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.tokenizer = tokenizer.eval()
        self.weights_id = weights_id if weights_id is not None else tokenizer_fingerprint(tokenizer)
        self.batch_size = max(1, int(batch_size))
        self.max_seconds = max_seconds
        self.hits = 0
        self.misses = 0
        self._digests: dict[tuple[str, int, int], str] = {}

    def key(self, path: str | os.PathLike) -> str:
        """The cache key of an audio file: SHA-256 of (format, weights id, file digest). The file digest is
        remembered per (path, size, mtime) in this process."""
        try:
            stat = os.stat(path)
            memo = (os.fspath(path), stat.st_size, stat.st_mtime_ns)
            digest = self._digests.get(memo)
            if digest is None:
                digest = self._digests[memo] = file_digest(path)
        except OSError as err:
            raise ValueError(
                f"{path}: cannot read the audio file to tokenize ({err.strerror or err})"
            ) from err
        text = f"{CACHE_FORMAT}|{self.weights_id}|{digest}"
        return hashlib.sha256(text.encode()).hexdigest()

    def entry_path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def lookup(self, path: str | os.PathLike) -> np.ndarray | None:
        """The cached codes of ``path``, or None (a miss; nothing is computed)."""
        return self._read(self.entry_path(self.key(path)))

    def codes_for(self, path: str | os.PathLike) -> np.ndarray:
        """Codes of one file: int16 ``[n]`` in 0..6560, from the cache or computed and stored."""
        return self.codes_for_many([path])[0]

    def codes_for_many(self, paths: Sequence[str | os.PathLike]) -> list[np.ndarray]:
        """Codes of each file, in order; misses are tokenized ``batch_size`` files at a time.

        Raises:
            ValueError: a file ``load_audio`` rejects (missing, unreadable, empty, too long), or one too
                short for a single code.
        """
        keys = [self.key(p) for p in paths]
        results: list[np.ndarray | None] = [self._read(self.entry_path(k)) for k in keys]
        todo = [i for i, r in enumerate(results) if r is None]
        self.hits += len(paths) - len(todo)
        self.misses += len(todo)
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            waves = [load_audio(paths[i], max_seconds=self.max_seconds) for i in chunk]
            codes = self.tokenizer.encode(waves)
            for i, c in zip(chunk, codes, strict=True):
                values = c.to("cpu").numpy().astype(np.int16)
                if values.size == 0:
                    raise ValueError(f"{paths[i]}: too short for one 25 Hz speech code (40 ms)")
                self._write(self.entry_path(keys[i]), values)
                results[i] = values
        return [r for r in results if r is not None]

    def fill(self, conversations: Sequence[Conversation]) -> list[Conversation]:
        """Copies of ``conversations`` whose assistant speech without codes gets the codes of its
        ``ref_path`` (conversations that need nothing are returned as they are)."""
        wanted = sorted(
            {a.ref_path for conv in conversations for a in conv.assistant_speech if a.codes is None}
        )
        codes = dict(zip(wanted, self.codes_for_many(wanted), strict=True))
        out = []
        for conv in conversations:
            if not conv.needs_codes:
                out.append(conv)
                continue
            audios = [
                dataclasses.replace(a, codes=codes[a.ref_path])
                if isinstance(a, AssistantSpeech) and a.codes is None
                else a
                for a in conv.audios
            ]
            out.append(dataclasses.replace(conv, audios=audios))
        return out

    # ------------------------------------------------------------------------------------------ files

    @staticmethod
    def _read(entry: Path) -> np.ndarray | None:
        try:
            values = np.load(entry, allow_pickle=False)
        except (FileNotFoundError, ValueError, OSError, EOFError):
            return None
        valid = (
            values.dtype == np.int16
            and values.ndim == 1
            and values.size > 0
            and int(values.min()) >= 0
            and int(values.max()) < NUM_CODES
        )
        return values if valid else None

    @staticmethod
    def _write(entry: Path, values: np.ndarray) -> None:
        atomic_write(entry, lambda handle: np.save(handle, values, allow_pickle=False))
