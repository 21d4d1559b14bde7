"""Fixtures of the data tests: a small text tokenizer and processor, synthetic wavs of exact lengths, and
writers of official-format sharegpt lines (built here the way the official data script builds them)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

CORPUS = [
    "What is two plus three? Two plus three is five.",
    "The capital of France is Paris.",
    "Please tell me a short story about a brave little robot.",
    "Seven times eight is fifty six. You are welcome. Thanks!",
    "You are asked to generate both text and speech tokens at the same time.",
] * 4
SYSTEM = "You are asked to generate both text and speech tokens at the same time."
TEMPLATE = "<|audio_bos|><|AUDIO|><|audio_eos|>"


@pytest.fixture(scope="session")
def text_tokenizer():
    from funaudiochat.drsr.text_tokenizer import train_text_tokenizer

    return train_text_tokenizer(CORPUS, vocab_size=300)


@pytest.fixture(scope="session")
def processor(text_tokenizer):
    from funaudiochat.drsr.processing import FunAudioChatProcessor

    return FunAudioChatProcessor(text_tokenizer, padding_side="right")


@pytest.fixture
def make_wav(tmp_path, write_wav):
    """``make_wav(name, num_samples, rate=16000, seed=0)``: a noise wav of exactly ``num_samples``."""

    def make(name: str, num_samples: int, rate: int = 16000, seed: int = 0) -> Path:
        rng = np.random.default_rng(seed)
        samples = (0.1 * rng.standard_normal(num_samples)).astype(np.float32)
        return write_wav(tmp_path / name, samples, rate, "PCM_16")

    return make


def _official_entry(path="", text="", token="", ref_path="", ref_text="") -> str:
    """One ``audio`` item, as ``process/data_process.py`` writes it (sorted keys, a JSON string)."""
    entry = {"path": path, "text": text, "token": token, "ref_path": ref_path, "ref_text": ref_text}
    return json.dumps(entry, ensure_ascii=False, sort_keys=True)


def _official_record(user_wav, num_frames, codes, answer, question="", system=SYSTEM, delay=10) -> dict:
    """A single-turn official record: user audio (pads) then assistant speech (BOS x delay + codes)."""
    token = "<|audio_bos|>" * delay + "".join(f"[AU{c:04d}]" for c in codes)
    return {
        "system": system,
        "messages": [{"role": "user", "content": TEMPLATE}, {"role": "assistant", "content": TEMPLATE}],
        "audio": [
            _official_entry(path=str(user_wav), token="<|audio_pad|>" * num_frames, ref_text=question),
            _official_entry(text=answer, token=token, ref_path=""),
        ],
    }


@pytest.fixture
def official_entry():
    """``official_entry(path, text, token, ref_path, ref_text)`` -> the JSON string of one audio item."""
    return _official_entry


@pytest.fixture
def official_record():
    """``official_record(user_wav, num_frames, codes, answer, question="", system=SYSTEM, delay=10)``."""
    return _official_record


@pytest.fixture
def write_jsonl(tmp_path):
    """``write_jsonl(name, lines)``: lines are dicts (dumped like the official data) or raw strings."""

    def write(name: str, lines: list) -> Path:
        path = tmp_path / name
        text = "".join(
            (ln if isinstance(ln, str) else json.dumps(ln, ensure_ascii=False)) + "\n" for ln in lines
        )
        path.write_text(text, encoding="utf-8")
        return path

    return write
