"""Vocoder training data: audio files -> 24 kHz audio, 50 Hz mel, 25 Hz speech tokens, F0, speaker vector.

Items come from folders (every .wav/.flac/.ogg below, sorted), manifests (text files, one ``path`` or
``path<TAB>speaker`` per line, ``#`` comments, paths relative to the manifest), or lists of both.

Per utterance (``task="flow"``, the flow-matching stage), as CosyVoice3 prepares it:
    audio at 24 kHz, zero-padded to a multiple of 960 samples (one 25 Hz token = 2 mel frames)
    speech_feat  [T, 80]  log-mel (``mel.py``), T = 2 N
    speech_token [N]      codes of the same padded audio resampled to 16 kHz (``SpeechTokenizer``, 25 Hz),
                          computed once in ``setup``; tokens and mel are trimmed to the shorter (N = T / 2)
    then, past ``max_tokens``, a random window of ``max_tokens`` tokens and the matching 2x frames.
Per segment (``task="hift"``, the HiFT GAN stage):
    speech       [segment_frames * 480]  a random crop (zero-padded when the utterance is shorter)
    speech_feat  [segment_frames, 80]    its log-mel;  pitch_feat [segment_frames]  its F0 (``pitch.py``)
Both carry ``embedding [192]``: there is no CAM++ speaker encoder here, so each speaker id gets a fixed
pseudo x-vector, a standard-normal vector seeded by (``speaker_seed``, speaker id) (the flow L2-normalises
it). The speaker id is the manifest's second column, else the parent folder's name (``speaker_from=
"parent"``), the file name (``"stem"``) or one shared id (``"none"``).

``collate_vocoder`` pads every variable-length tensor with zeros into ``[B, max, ...]`` and adds
``<key>_len [B]``; this is the batch layout ``CausalFlowMatching.forward`` and ``HiFTModule`` read.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
import torchaudio.functional as AF
from funaudiochat.base.constants import TOKEN_RATE, TOKENIZER_SAMPLE_RATE
from funaudiochat.tokenizer import DEFAULT_MAX_SECONDS, SpeechTokenizer, SpeechTokenizerConfig, load_audio
from funaudiochat.vocoder.mel import MelConfig, MelSpectrogram
from torch.utils.data import Dataset

from ..config import build_config
from ..data.kept_audio import KeptAudio
from ..datamodule import SimpleDataModule
from .pitch import PitchConfig, PitchTracker

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")
TASKS = ("flow", "hift")
SPEAKER_SOURCES = ("parent", "stem", "none")
TOKENIZER_RATE = TOKENIZER_SAMPLE_RATE
TOKEN_MEL_RATIO = 2


@dataclass(frozen=True)
class AudioItem:
    path: Path
    speaker: str


def _speaker_of(path: Path, speaker_from: str) -> str:
    if speaker_from == "parent":
        return path.parent.name or "default"
    if speaker_from == "stem":
        return path.stem
    return "default"


def list_audio(
    sources: str | os.PathLike | Sequence[str | os.PathLike], speaker_from: str = "parent"
) -> list[AudioItem]:
    """Audio items from folders, manifests or audio files (see the module docstring)."""
    if speaker_from not in SPEAKER_SOURCES:
        raise ValueError(f"speaker_from must be one of {list(SPEAKER_SOURCES)}, got {speaker_from!r}")
    if isinstance(sources, (str, os.PathLike)):
        sources = [sources]
    items: list[AudioItem] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file())
            if not found:
                raise ValueError(f"{path}: no audio files ({', '.join(AUDIO_SUFFIXES)}) in this folder")
            items += [AudioItem(p, _speaker_of(p, speaker_from)) for p in found]
        elif path.suffix.lower() in AUDIO_SUFFIXES:
            if not path.is_file():
                raise ValueError(f"{path}: audio file not found")
            items.append(AudioItem(path, _speaker_of(path, speaker_from)))
        elif path.is_file():
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                name, _, speaker = line.partition("\t")
                audio = Path(name.strip())
                audio = audio if audio.is_absolute() else path.parent / audio
                if not audio.is_file():
                    raise ValueError(f"{path}:{number}: audio file {audio} not found")
                items.append(AudioItem(audio, speaker.strip() or _speaker_of(audio, speaker_from)))
        else:
            raise ValueError(f"{path}: not found (expected a folder, a manifest or an audio file)")
    if not items:
        raise ValueError(f"no audio items in {[str(s) for s in sources]}")
    return items


def pseudo_speaker_embedding(speaker: str, seed: int = 0, dim: int = 192) -> torch.Tensor:
    """A fixed standard-normal ``[dim]`` vector for ``speaker`` (stands in for a CAM++ x-vector)."""
    digest = hashlib.sha256(f"{seed}\0{speaker}".encode()).digest()
    generator = torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & (2**63 - 1))
    return torch.randn(dim, generator=generator)


def pad_to_multiple(wave: torch.Tensor, multiple: int) -> torch.Tensor:
    """Zero-pad a 1-D waveform at the end to a multiple of ``multiple`` samples."""
    return F.pad(wave, (0, (-wave.shape[0]) % multiple))


class VocoderDataset(Dataset):
    """Audio items -> training examples for the flow (``task="flow"``) or HiFT (``task="hift"``) stage.

    ``tokens`` (flow only): one code tensor per item, as made by ``tokenize_items``. ``random_crop``: random
    windows (training) or the start of each utterance (validation). ``cache_audio``: keep each decoded file
    in memory once read (the waves are never changed in place)."""

    def __init__(
        self,
        items: Sequence[AudioItem],
        task: str,
        tokens: Sequence[torch.Tensor] | None = None,
        mel: MelConfig | None = None,
        pitch: PitchConfig | None = None,
        segment_frames: int = 52,
        max_tokens: int | None = 200,
        speaker_seed: int = 0,
        max_seconds: float | None = DEFAULT_MAX_SECONDS,
        random_crop: bool = True,
        cache_audio: bool = False,
    ):
        if task not in TASKS:
            raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
        self.items = list(items)
        self.task = task
        self.mel = MelSpectrogram(mel)
        c = self.mel.config
        if task == "flow":
            if c.sample_rate != TOKEN_RATE * TOKEN_MEL_RATIO * c.hop_length:
                raise ValueError(
                    f"the flow needs 50 mel frames per second (2 per 25 Hz token): sample_rate / hop_length "
                    f"is {c.sample_rate} / {c.hop_length}"
                )
            if tokens is None or len(tokens) != len(self.items):
                raise ValueError("the flow task needs one token tensor per item (see tokenize_items)")
            if max_tokens is not None and max_tokens < 1:
                raise ValueError(f"max_tokens must be >= 1 or None, got {max_tokens}")
        elif segment_frames < 1:
            raise ValueError(f"segment_frames must be >= 1, got {segment_frames}")
        if task == "hift" and segment_frames * c.hop_length < c.min_samples:
            raise ValueError(f"segment_frames={segment_frames} is shorter than one mel window")
        self.tokens = list(tokens) if tokens is not None else None
        self.pitch = PitchTracker(pitch or PitchConfig(sample_rate=c.sample_rate, hop_length=c.hop_length))
        if self.pitch.config.hop_length != c.hop_length or self.pitch.config.sample_rate != c.sample_rate:
            raise ValueError("the pitch tracker must use the mel's sample_rate and hop_length")
        self.segment_frames = segment_frames
        self.max_tokens = max_tokens
        self.speaker_seed = speaker_seed
        self.max_seconds = max_seconds
        self.random_crop = random_crop
        self.cache_audio = cache_audio
        self._audio = KeptAudio(self._read, keep=cache_audio)
        self._embeddings: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, index: int) -> torch.Tensor:
        return load_audio(self.items[index].path, self.mel.config.sample_rate, max_seconds=self.max_seconds)

    def load(self, index: int) -> torch.Tensor:
        """Item ``index`` as 24 kHz (the mel's rate) mono float32 ``[L]`` (kept if ``cache_audio``)."""
        return self._audio(index)

    def embedding(self, speaker: str) -> torch.Tensor:
        if speaker not in self._embeddings:
            self._embeddings[speaker] = pseudo_speaker_embedding(speaker, self.speaker_seed)
        return self._embeddings[speaker]

    def _start(self, span: int) -> int:
        return int(torch.randint(0, span + 1, ())) if self.random_crop and span > 0 else 0

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.items[index]
        wave = self.load(index)
        out: dict[str, Any] = {"utt": str(item.path), "embedding": self.embedding(item.speaker)}
        hop = self.mel.config.hop_length
        if self.task == "flow":
            wave = pad_to_multiple(wave, hop * TOKEN_MEL_RATIO)
            mel = self.mel(wave).T
            codes = self.tokens[index]
            n = min(codes.shape[0], mel.shape[0] // TOKEN_MEL_RATIO)
            if n == 0:
                raise ValueError(f"{item.path}: too short for a single speech token")
            start = 0
            if self.max_tokens is not None and n > self.max_tokens:
                start, n = self._start(n - self.max_tokens), self.max_tokens
            out["speech_token"] = codes[start : start + n].long()
            out["speech_feat"] = mel[TOKEN_MEL_RATIO * start : TOKEN_MEL_RATIO * (start + n)].contiguous()
            return out
        size = self.segment_frames * hop
        if wave.shape[0] >= size:
            start = self._start(wave.shape[0] - size)
            segment = wave[start : start + size]
        else:
            segment = F.pad(wave, (0, size - wave.shape[0]))
        out["speech"] = segment
        out["speech_feat"] = self.mel(segment).T.contiguous()
        out["pitch_feat"] = self.pitch(segment)
        return out


@torch.no_grad()
def tokenize_items(
    items: Sequence[AudioItem],
    tokenizer: SpeechTokenizer,
    sample_rate: int = 24000,
    batch_size: int = 8,
    max_seconds: float | None = DEFAULT_MAX_SECONDS,
) -> list[torch.Tensor]:
    """25 Hz codes of each item, made as CosyVoice3 makes its online tokens: the audio at ``sample_rate``
    zero-padded to whole tokens, resampled to 16 kHz, then tokenized. Returns one ``[N]`` LongTensor each."""
    token_samples = sample_rate // TOKEN_RATE
    if token_samples * TOKEN_RATE != sample_rate:
        raise ValueError(f"sample_rate {sample_rate} is not a whole number of samples per 25 Hz token")
    codes: list[torch.Tensor] = []
    for first in range(0, len(items), batch_size):
        waves = []
        for item in items[first : first + batch_size]:
            wave = pad_to_multiple(load_audio(item.path, sample_rate, max_seconds=max_seconds), token_samples)
            waves.append(
                AF.resample(wave, sample_rate, TOKENIZER_RATE) if sample_rate != TOKENIZER_RATE else wave
            )
        codes += [c.to("cpu", torch.long) for c in tokenizer.encode(waves)]
    return codes


def collate_vocoder(examples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Examples -> a batch: tensors with a leading length axis are zero-padded to ``[B, max, ...]`` with
    ``<key>_len [B]``; ``embedding`` is stacked to ``[B, 192]``; ``utt`` stays a list of strings."""
    if not examples:
        raise ValueError("cannot collate an empty batch")
    batch: dict[str, Any] = {"utt": [e["utt"] for e in examples]}
    batch["embedding"] = torch.stack([e["embedding"] for e in examples])
    for key in examples[0]:
        if key in batch:
            continue
        values = [e[key] for e in examples]
        batch[key] = torch.nn.utils.rnn.pad_sequence(values, batch_first=True)
        batch[f"{key}_len"] = torch.tensor([v.shape[0] for v in values], dtype=torch.long)
    return batch


class VocoderDataModule(SimpleDataModule):
    """Train (and optional validation) loaders of ``VocoderDataset`` batches.

    Args:
        train, val: folders / manifests / audio files (see ``list_audio``); ``val`` optional.
        task: ``"flow"`` (tokens + mel per utterance) or ``"hift"`` (audio segments + mel + F0).
        batch_size, num_workers, shuffle, drop_last: DataLoader settings (``shuffle`` applies to train).
        speaker_from, speaker_seed: the pseudo speaker vectors (see the module docstring).
        segment_frames: HiFT segment length in mel frames (52 = 24960 samples = 1.04 s, as CosyVoice3).
        max_tokens: the flow's longest item in tokens (200 = 8 s, CosyVoice's filter); ``None``: no limit.
        tokenizer: a ``SpeechTokenizer`` safetensors file (``SpeechTokenizer.save_safetensors``) for the
            flow's codes; ``None`` uses a seeded random tiny tokenizer (``tokenizer_seed``): only for
            smoke tests, since its codes carry no trained meaning.
        tokenizer_device: where tokenization runs in ``setup``.
        mel, pitch: ``MelConfig`` / ``PitchConfig`` overrides (the model's mel must be the same).
        max_seconds: longest accepted audio file (longer ones are a ``ValueError`` naming the file).
        cache_audio: keep each file's decoded 24 kHz audio in memory once read (small data sets: decoding
            and resampling a file is a tenth of a demo flow step on a CPU).
    """

    collate = staticmethod(collate_vocoder)

    def __init__(
        self,
        train: str | list[str],
        val: str | list[str] | None = None,
        task: str = "flow",
        batch_size: int = 8,
        num_workers: int = 0,
        shuffle: bool = True,
        drop_last: bool = False,
        random_crop: bool = True,
        speaker_from: str = "parent",
        speaker_seed: int = 0,
        segment_frames: int = 52,
        max_tokens: int | None = 200,
        tokenizer: str | None = None,
        tokenizer_seed: int = 0,
        tokenizer_device: str = "cpu",
        mel: dict[str, Any] | None = None,
        pitch: dict[str, Any] | None = None,
        max_seconds: float | None = DEFAULT_MAX_SECONDS,
        cache_audio: bool = False,
    ):
        super().__init__()
        if task not in TASKS:
            raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size}, {num_workers}")
        if speaker_from not in SPEAKER_SOURCES:
            raise ValueError(f"speaker_from must be one of {list(SPEAKER_SOURCES)}, got {speaker_from!r}")
        for sources in (train, val):
            for source in [sources] if isinstance(sources, (str, os.PathLike)) else sources or []:
                if not Path(source).exists():
                    raise ValueError(f"{source}: not found (expected a folder, a manifest or an audio file)")
        self.save_hyperparameters()
        self.mel_config = build_config(MelConfig, mel)
        pitch_defaults = {
            "sample_rate": self.mel_config.sample_rate,
            "hop_length": self.mel_config.hop_length,
        }
        self.pitch_config = build_config(PitchConfig, {**pitch_defaults, **(pitch or {})})
        self.train_set: VocoderDataset | None = None
        self.val_set: VocoderDataset | None = None

    def _tokenizer(self) -> SpeechTokenizer:
        path = self.hparams.tokenizer
        if path is None:
            model = SpeechTokenizer.random(SpeechTokenizerConfig.tiny(), seed=self.hparams.tokenizer_seed)
        else:
            model = SpeechTokenizer.from_safetensors(path)
        return model.to(self.hparams.tokenizer_device).eval()

    def _dataset(self, sources, random_crop: bool, tokenizer: SpeechTokenizer | None) -> VocoderDataset:
        h = self.hparams
        items = list_audio(sources, h.speaker_from)
        tokens = None
        if h.task == "flow":
            tokens = tokenize_items(items, tokenizer, self.mel_config.sample_rate, max_seconds=h.max_seconds)
        return VocoderDataset(
            items,
            h.task,
            tokens,
            self.mel_config,
            self.pitch_config,
            h.segment_frames,
            h.max_tokens,
            h.speaker_seed,
            h.max_seconds,
            random_crop,
            h.cache_audio,
        )

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is not None:
            return
        tokenizer = self._tokenizer() if self.hparams.task == "flow" else None
        self.train_set = self._dataset(self.hparams.train, self.hparams.random_crop, tokenizer)
        if self.hparams.val is not None:
            self.val_set = self._dataset(self.hparams.val, False, tokenizer)
