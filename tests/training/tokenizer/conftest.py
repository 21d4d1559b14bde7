"""Fixtures of the tokenizer-training tests: espeak-ng utterances with sidecar transcripts, one CPU thread."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from funaudiochat.training.tokenizer.ctc_targets import espeak_available

TRANSCRIPTS = [
    "What is two plus three?",
    "Seven times eight is fifty six.",
    "The capital of France is Paris.",
    "Please tell me a short story.",
]
VOICES = [("en-us", 150), ("en-gb", 170), ("en-us+f3", 140), ("en-gb+m3", 180)]


@pytest.fixture(autouse=True)
def one_thread():
    """The models here are tiny: one intra-op thread is as fast, and does not stall (OpenMP spinning) when
    other processes share the CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def espeak_installed() -> None:
    """Fails, never skips, without espeak-ng: tools/setup.sh installs it, so its absence is a broken setup."""
    if not espeak_available():
        pytest.fail("espeak-ng is not installed; run `bash tools/setup.sh` first")


@pytest.fixture(scope="session")
def transcribed_dir(tmp_path_factory, espeak) -> Path:
    """``utt{i}.wav`` + ``utt{i}.txt`` for each of ``TRANSCRIPTS`` (several espeak-ng voices and speeds)."""
    folder = tmp_path_factory.mktemp("transcribed")
    for i, (text, (voice, speed)) in enumerate(zip(TRANSCRIPTS, VOICES, strict=True)):
        espeak(text, folder / f"utt{i}.wav", voice, speed)
        (folder / f"utt{i}.txt").write_text(text + "\n", encoding="utf-8")
    return folder
