"""Tokenizer training data: (audio, transcript) pairs -> 16 kHz log-mel + CTC target ids.

Sources (``list_pairs``), alone or in a list:
- a folder: every ``.wav``/``.flac``/``.ogg`` below it (sorted), each with a sidecar transcript of the same
  name and the suffix ``.txt`` (``a/utt1.wav`` + ``a/utt1.txt``, UTF-8); a missing sidecar is an error;
- a JSONL manifest (a file ending in ``.jsonl``): one JSON object per line with string fields ``"audio"``
  (a path, relative to the manifest's folder unless absolute) and ``"text"``; blank lines are skipped;
- a single audio file with its sidecar ``.txt``.

Per utterance: ``load_audio`` at 16 kHz (longer than ``max_seconds`` is an error naming the file; the
default 30 s is the tokenizer's window, so training sees what inference sees in one window), optional
augmentation, then the Whisper/S3 log-mel (``WhisperFrontend``, 100 frames/s, ``[n_mels, T]``) and the
transcript's CTC ids (``TranscriptTargets``). The targets are made once, in ``setup``; a transcript that
cannot be mapped (an unknown character under ``unknown="error"``, or nothing left) fails there, naming it.

Augmentation (training only, off by default):
- ``speed_perturb``: a list of factors (e.g. ``[0.9, 1.0, 1.1]``), one drawn per item; the audio is
  resampled so that it plays ``factor`` times faster (Kaldi-style speed perturbation: tempo and pitch);
- ``noise_snr_db``: ``[low, high]``; with probability ``noise_prob`` white Gaussian noise is added at an SNR
  drawn uniformly in that range (dB);
- ``mel_augment``: on the log-mel, frequency warping and SpecAugment masks (``mel_augment.MelAugment``: a
  mapping of its fields, e.g. ``{warp: [0.9, 1.1], freq_masks: 2, freq_width: 15}``).
Draws use torch's global generator (seeded by the recipe's ``seed``, per worker by Lightning).

``collate_tokenizer`` pads into ``mel [B, n_mels, T]`` + ``mel_len [B]`` and ``targets [B, L]`` (padded
with the blank id 0, which is never a target) + ``target_len [B]``; ``utt`` and ``text`` stay lists.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchaudio.functional as AF
from funaudiochat.base.constants import TOKENIZER_SAMPLE_RATE
from funaudiochat.tokenizer import WhisperFrontend, load_audio
from torch.utils.data import Dataset

from ..data.kept_audio import KeptAudio
from ..datamodule import SimpleDataModule
from .ctc_targets import UNITS, TranscriptTargets, Vocabulary
from .mel_augment import MelAugment

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
SAMPLE_RATE = TOKENIZER_SAMPLE_RATE
TOKENIZER_WINDOW_SECONDS = 30.0


@dataclass(frozen=True)
class TranscribedAudio:
    path: Path
    text: str


def _sidecar(audio: Path) -> TranscribedAudio:
    text_path = audio.with_suffix(".txt")
    if not text_path.is_file():
        raise ValueError(f"{audio}: no transcript; expected the sidecar file {text_path}")
    return TranscribedAudio(audio, text_path.read_text(encoding="utf-8").strip())


def _read_manifest(path: Path) -> list[TranscribedAudio]:
    items = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ValueError(f"{where}: not a JSON object ({err.msg})") from err
        if not isinstance(record, dict):
            raise ValueError(f"{where}: each line must be a JSON object with 'audio' and 'text'")
        audio, text = record.get("audio"), record.get("text")
        if not isinstance(audio, str) or not audio:
            raise ValueError(f"{where}: 'audio' must be a non-empty string path")
        if not isinstance(text, str):
            raise ValueError(f"{where}: 'text' must be a string")
        audio_path = Path(audio)
        audio_path = audio_path if audio_path.is_absolute() else path.parent / audio_path
        if not audio_path.is_file():
            raise ValueError(f"{where}: audio file {audio_path} not found")
        items.append(TranscribedAudio(audio_path, text.strip()))
    return items


def list_pairs(sources: str | os.PathLike | Sequence[str | os.PathLike]) -> list[TranscribedAudio]:
    """(audio, transcript) pairs from folders, JSONL manifests or audio files (module docstring)."""
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    items: list[TranscribedAudio] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not found:
                raise ValueError(f"{path}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder")
            items += [_sidecar(p) for p in found]
        elif path.suffix.lower() == ".jsonl" and path.is_file():
            items += _read_manifest(path)
        elif path.suffix.lower() in AUDIO_SUFFIXES and path.is_file():
            items.append(_sidecar(path))
        elif path.exists():
            raise ValueError(f"{path}: expected a folder, a .jsonl manifest or an audio file")
        else:
            raise ValueError(f"{path}: not found (expected a folder, a .jsonl manifest or an audio file)")
    if not items:
        raise ValueError(f"no (audio, transcript) pairs in {[str(s) for s in sources]}")
    return items


def speed_perturb(wave: torch.Tensor, factor: float, sample_rate: int = SAMPLE_RATE) -> torch.Tensor:
    """``wave`` played ``factor`` times faster (resampled; length / factor)."""
    if factor <= 0:
        raise ValueError(f"speed factors must be > 0, got {factor}")
    source = round(sample_rate * factor)
    return wave if source == sample_rate else AF.resample(wave, source, sample_rate)


def add_noise(wave: torch.Tensor, snr_db: float) -> torch.Tensor:
    """``wave`` plus white Gaussian noise at ``snr_db`` dB below its power (silence stays silence)."""
    power = wave.pow(2).mean()
    if power <= 0:
        return wave
    noise = torch.randn_like(wave) * torch.sqrt(power / (10.0 ** (snr_db / 10.0)))
    return (wave + noise).clamp(-1.0, 1.0)


class TokenizerDataset(Dataset):
    """Pairs + their target ids -> ``{"utt", "text", "mel" [n_mels, T], "targets" [L]}`` examples."""

    def __init__(
        self,
        items: Sequence[TranscribedAudio],
        targets: Sequence[Sequence[int]],
        n_mels: int = 128,
        max_seconds: float | None = TOKENIZER_WINDOW_SECONDS,
        speed_factors: Sequence[float] | None = None,
        noise_snr_db: Sequence[float] | None = None,
        noise_prob: float = 0.5,
        cache_audio: bool = False,
        mel_augment: MelAugment | None = None,
    ):
        if len(items) != len(targets):
            raise ValueError(f"{len(items)} items but {len(targets)} target sequences")
        self.items = list(items)
        self.targets = [torch.tensor(list(t), dtype=torch.long) for t in targets]
        self.frontend = WhisperFrontend(n_mels)
        self.max_seconds = max_seconds
        self.speed_factors = list(speed_factors) if speed_factors else None
        self.noise_snr_db = tuple(noise_snr_db) if noise_snr_db else None
        self.noise_prob = noise_prob
        self.cache_audio = cache_audio
        self.mel_augment = mel_augment
        self._audio = KeptAudio(self._read, keep=cache_audio)

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, index: int) -> torch.Tensor:
        return load_audio(self.items[index].path, SAMPLE_RATE, max_seconds=self.max_seconds)

    def load(self, index: int) -> torch.Tensor:
        """Item ``index`` as 16 kHz mono float32 ``[N]`` (before augmentation; kept if ``cache_audio``)."""
        return self._audio(index)

    def augment(self, wave: torch.Tensor) -> torch.Tensor:
        if self.speed_factors:
            choice = int(torch.randint(len(self.speed_factors), ()))
            wave = speed_perturb(wave, float(self.speed_factors[choice]))
        if self.noise_snr_db and float(torch.rand(())) < self.noise_prob:
            low, high = self.noise_snr_db
            wave = add_noise(wave, low + (high - low) * float(torch.rand(())))
        return wave

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        wave = self.augment(self.load(index))
        mel, _ = self.frontend(wave.unsqueeze(0))
        if mel.shape[-1] == 0:
            raise ValueError(f"{item.path}: shorter than one log-mel frame (10 ms)")
        mel = mel[0] if self.mel_augment is None else self.mel_augment(mel[0])
        return {"utt": str(item.path), "text": item.text, "mel": mel, "targets": self.targets[index]}


def collate_tokenizer(examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Examples -> a padded batch (module docstring)."""
    if not examples:
        raise ValueError("cannot collate an empty batch")
    mels = [e["mel"] for e in examples]
    targets = [e["targets"] for e in examples]
    return {
        "utt": [e["utt"] for e in examples],
        "text": [e["text"] for e in examples],
        "mel": torch.nn.utils.rnn.pad_sequence([m.T for m in mels], batch_first=True).transpose(1, 2),
        "mel_len": torch.tensor([m.shape[-1] for m in mels], dtype=torch.long),
        "targets": torch.nn.utils.rnn.pad_sequence(targets, batch_first=True, padding_value=0),
        "target_len": torch.tensor([t.shape[0] for t in targets], dtype=torch.long),
    }


class TokenizerDataModule(SimpleDataModule):
    """Train (and optional validation) loaders for tokenizer training; ``vocabulary`` after ``setup``.

    Args:
        train, val: folders / ``.jsonl`` manifests / audio files (see ``list_pairs``); ``val`` optional.
        units: ``"chars"`` or ``"phonemes"`` (see ``ctc_targets``); ``voice``: espeak-ng voice for phonemes.
        unknown: ``"error"`` or ``"drop"``: what an out-of-vocabulary character / phoneme does.
        keep_stress: keep IPA stress marks as phoneme symbols.
        vocabulary: a fixed list of CTC symbols (blank excluded); default: ``CHARACTERS`` for chars, the
            symbols of the training transcripts for phonemes.
        batch_size, num_workers, shuffle, drop_last: DataLoader settings (``shuffle`` applies to train).
        n_mels: log-mel bins (128 for S3 V2/V3; must equal the model's ``n_mels``).
        max_seconds: longest accepted audio (default 30 s, the tokenizer's window); ``None``: no limit.
        speed_perturb, noise_snr_db, noise_prob, mel_augment: training augmentation (off by default; module
            docstring).
        cache_audio: keep the decoded 16 kHz audio in memory after the first epoch (small data sets).
    """

    collate = staticmethod(collate_tokenizer)

    def __init__(
        self,
        train: str | list[str],
        val: str | list[str] | None = None,
        units: str = "chars",
        voice: str = "en-us",
        unknown: str = "error",
        keep_stress: bool = False,
        vocabulary: list[str] | None = None,
        batch_size: int = 8,
        num_workers: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        n_mels: int = 128,
        max_seconds: float | None = TOKENIZER_WINDOW_SECONDS,
        speed_perturb: list[float] | None = None,
        noise_snr_db: list[float] | None = None,
        noise_prob: float = 0.5,
        cache_audio: bool = False,
        mel_augment: dict[str, Any] | None = None,
    ):
        super().__init__()
        if units not in UNITS:
            raise ValueError(f"units must be one of {list(UNITS)}, got {units!r}")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        if n_mels < 1:
            raise ValueError(f"n_mels must be >= 1, got {n_mels}")
        if speed_perturb is not None and (
            not speed_perturb or not all(isinstance(f, (int, float)) and f > 0 for f in speed_perturb)
        ):
            raise ValueError(f"speed_perturb must be a non-empty list of factors > 0, got {speed_perturb}")
        if noise_snr_db is not None and (len(noise_snr_db) != 2 or noise_snr_db[0] > noise_snr_db[1]):
            raise ValueError(f"noise_snr_db must be [low, high] in dB with low <= high, got {noise_snr_db}")
        if not 0.0 <= noise_prob <= 1.0:
            raise ValueError(f"noise_prob must lie in [0, 1], got {noise_prob}")
        self.mel_augment = MelAugment.from_dict(mel_augment)
        for sources in (train, val):
            for source in [sources] if isinstance(sources, (str, os.PathLike)) else sources or []:
                if not Path(source).exists():
                    raise ValueError(
                        f"{source}: not found (expected a folder, a .jsonl manifest or an audio file)"
                    )
        self.save_hyperparameters()
        self.transcripts = TranscriptTargets(units, voice, unknown, keep_stress, vocabulary)
        self.train_set: TokenizerDataset | None = None
        self.val_set: TokenizerDataset | None = None

    @property
    def vocabulary(self) -> Vocabulary:
        """The CTC vocabulary (known after ``setup`` for phonemes)."""
        if self.transcripts.vocabulary is None:
            self.setup("fit")
        return self.transcripts.vocabulary

    def _dataset(self, items: list[TranscribedAudio], train: bool) -> TokenizerDataset:
        h = self.hparams
        targets = [self.transcripts(item.text, str(item.path)) for item in items]
        return TokenizerDataset(
            items,
            targets,
            h.n_mels,
            h.max_seconds,
            h.speed_perturb if train else None,
            h.noise_snr_db if train else None,
            h.noise_prob,
            h.cache_audio,
            self.mel_augment if train else None,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        train_items = list_pairs(self.hparams.train)
        self.transcripts.fit([item.text for item in train_items], [str(item.path) for item in train_items])
        self.train_set = self._dataset(train_items, True)
        if self.hparams.val is not None:
            self.val_set = self._dataset(list_pairs(self.hparams.val), False)
