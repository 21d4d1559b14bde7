"""The two files of a checkpoint folder that other servers read besides the model and the text tokenizer.

vLLM's ``FunAudioChatForConditionalGeneration`` (the speech-to-text path; ``docs/vllm.md``) reads, beside
``config.json``, the weights and the text tokenizer:

- ``preprocessor_config.json``: a ``WhisperFeatureExtractor`` (128 mel bins, 16 kHz) for the continuous
  encoder's log-mel, which it calls with ``padding="max_length"`` as the official processor does (this
  project's ``WhisperFrontend(tail="zeros")`` gives the same frames);
- ``speech_tokenizer/``: a tokenizer of the model's speech vocabulary, whose pad token
  ``<|audio_pad|>`` must be the model's speech pad id (``audio_config.pad_token_id``, 6563): each user
  audio's ``speech_ids`` are that token repeated once per 25 Hz frame.

``FunAudioChatProcessor.save_pretrained`` writes both, so a folder saved with the model and its processor
is served by vLLM unchanged.

Example:
    >>> write_serving_files("checkpoint/")   # preprocessor_config.json, speech_tokenizer/
"""

from __future__ import annotations

import os
from pathlib import Path

from funaudiochat.base.constants import SPEECH_BOS, SPEECH_CODES, SPEECH_EOS, SPEECH_PAD, SPEECH_VOCAB

FEATURE_EXTRACTOR_FILE = "preprocessor_config.json"
SPEECH_TOKENIZER_FOLDER = "speech_tokenizer"
SPEECH_SPECIAL_TOKENS = {
    SPEECH_BOS: "<|audio_bos|>",
    SPEECH_EOS: "<|audio_eos|>",
    SPEECH_PAD: "<|audio_pad|>",
}


def speech_token_name(token: int) -> str:
    """The speech vocabulary's name of ``token``: ``[AU0042]`` for code 42 (the official training data's
    spelling), ``<|audio_bos|>`` / ``<|audio_eos|>`` / ``<|audio_pad|>`` for the special ids,
    ``<|audio_unused_6564|>`` for the id without a role."""
    if 0 <= token < SPEECH_CODES:
        return f"[AU{token:04d}]"
    if token in SPEECH_SPECIAL_TOKENS:
        return SPEECH_SPECIAL_TOKENS[token]
    if SPEECH_CODES <= token < SPEECH_VOCAB:
        return f"<|audio_unused_{token}|>"
    raise ValueError(f"speech token {token} is outside the speech vocabulary 0..{SPEECH_VOCAB - 1}")


def write_feature_extractor_config(folder: str | os.PathLike, n_mels: int = 128) -> Path:
    """``folder/preprocessor_config.json``: the Whisper feature extractor of the continuous encoder
    (``n_mels`` bins, 16 kHz, hop 160, n_fft 400, 30 s chunks); returns its path."""
    from transformers import WhisperFeatureExtractor

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    WhisperFeatureExtractor(
        feature_size=n_mels, sampling_rate=16000, hop_length=160, n_fft=400
    ).save_pretrained(folder)
    return folder / FEATURE_EXTRACTOR_FILE


def write_speech_tokenizer(folder: str | os.PathLike) -> Path:
    """``folder/speech_tokenizer/``: a word-level tokenizer of the speech vocabulary (``speech_token_name``
    for every id of 0..6564; ``<|audio_pad|>`` its pad token, ``<|audio_bos|>`` / ``<|audio_eos|>`` its
    BOS / EOS); returns the sub-folder."""
    from tokenizers import AddedToken, Tokenizer, models
    from transformers import PreTrainedTokenizerFast

    out = Path(folder) / SPEECH_TOKENIZER_FOLDER
    vocab = {speech_token_name(token): token for token in range(SPEECH_VOCAB)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=None))
    specials = [speech_token_name(token) for token in range(SPEECH_CODES, SPEECH_VOCAB)]
    backend.add_special_tokens([AddedToken(name, special=True, normalized=False) for name in specials])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        pad_token=SPEECH_SPECIAL_TOKENS[SPEECH_PAD],
        bos_token=SPEECH_SPECIAL_TOKENS[SPEECH_BOS],
        eos_token=SPEECH_SPECIAL_TOKENS[SPEECH_EOS],
    )
    tokenizer.save_pretrained(out)
    return out


def write_serving_files(folder: str | os.PathLike, n_mels: int = 128) -> None:
    """Both files (module docstring) into ``folder``."""
    write_feature_extractor_config(folder, n_mels)
    write_speech_tokenizer(folder)
