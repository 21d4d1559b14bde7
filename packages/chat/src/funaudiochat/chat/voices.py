"""The voice of a reply: a named speaker of the vocoder's table, or a short clip of someone speaking.

A clip becomes a CosyVoice-style voice prompt: its 25 Hz speech codes (the speech tokenizer) and its
80-bin, 50 Hz mel (the vocoder's own mel, ``funaudiochat.vocoder.mel``) go in front of the reply's codes,
and the flow continues the prompt's voice. The speaker embedding (a CAM++ x-vector in CosyVoice; no such
model here) is the table's default speaker's.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchaudio.functional as AF
from funaudiochat.base.constants import TOKENIZER_SAMPLE_RATE, VOCODER_SAMPLE_RATE
from funaudiochat.tokenizer import SpeechTokenizer, load_audio
from funaudiochat.vocoder.mel import MelSpectrogram
from funaudiochat.vocoder.speakers import EMBEDDING_DIM, Speaker, SpeakerTable

MIN_CLIP_SECONDS = 1.0
MAX_CLIP_SECONDS = 30.0
CLIP_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


def is_clip(voice: str | os.PathLike) -> bool:
    """Whether ``voice`` names an audio file rather than a speaker of the table."""
    return isinstance(voice, os.PathLike) or str(voice).lower().endswith(CLIP_SUFFIXES)


def resolve_voice(
    voice: str | os.PathLike | None, speakers: SpeakerTable, tokenizer: SpeechTokenizer | None
) -> Speaker | None:
    """The speaker for ``voice``: None (the vocoder's default), a table name, or a clip's path."""
    if voice is None:
        return None
    if is_clip(voice):
        if tokenizer is None:
            raise ValueError(
                f"voice {str(voice)!r} is a clip, which needs the speech tokenizer "
                "(speech_tokenizer_v3.safetensors in the pipeline folder)"
            )
        return clip_speaker(voice, tokenizer, default_embedding(speakers))
    if voice not in speakers:
        known = ", ".join(repr(n) for n in speakers) or "none"
        raise ValueError(f"unknown voice {voice!r}; the speaker table has {known} (or give a clip's path)")
    return speakers[voice]


def default_embedding(speakers: SpeakerTable) -> torch.Tensor:
    """The first speaker's embedding, or zeros for an empty table."""
    if len(speakers):
        return speakers[speakers.names[0]].embedding
    return torch.zeros(EMBEDDING_DIM)


def clip_speaker(path: str | os.PathLike, tokenizer: SpeechTokenizer, embedding: torch.Tensor) -> Speaker:
    """A voice prompt from a clip of 1-30 s: its codes ``[P]`` and mel ``[2P, 80]`` (trimmed to agree)."""
    if not Path(path).is_file():
        raise ValueError(f"{path}: voice clip not found")
    wave = load_audio(path, max_seconds=None)
    seconds = wave.numel() / TOKENIZER_SAMPLE_RATE
    if not MIN_CLIP_SECONDS <= seconds <= MAX_CLIP_SECONDS:
        raise ValueError(
            f"{path}: a voice clip must last {MIN_CLIP_SECONDS:g}-{MAX_CLIP_SECONDS:g} s, got {seconds:.2f} s"
        )
    with torch.inference_mode():
        codes = tokenizer.encode([wave])[0].long()
        mel = MelSpectrogram()(AF.resample(wave, TOKENIZER_SAMPLE_RATE, VOCODER_SAMPLE_RATE)[None])[0]
    tokens = min(codes.numel(), mel.shape[1] // 2)
    speaker = Speaker(embedding.clone(), codes[:tokens].clone(), mel[:, : 2 * tokens].T.contiguous())
    speaker.validate(str(path))
    return speaker
