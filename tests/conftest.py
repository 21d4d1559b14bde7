"""Shared fixtures: real speech made on the spot with espeak-ng (no downloads)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import settings

# Property tests draw the same examples on every run, so CI is repeatable (a crash found once is found
# again); HYPOTHESIS_PROFILE=explore draws new ones.
settings.register_profile("seeded", derandomize=True)
settings.register_profile("explore", derandomize=False)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "seeded"))

SENTENCES = [
    "What is two plus three?",
    "The capital of France is Paris, a city on the river Seine.",
    "Please tell me a short story about a brave little robot.",
    "Seven times eight is fifty six.",
]


def speak(text: str, path: Path, voice: str = "en-us", speed: int = 160) -> Path:
    """Synthesise ``text`` to a WAV file at ``path`` (espeak-ng's native 22.05 kHz, 16-bit mono)."""
    if shutil.which("espeak-ng") is None:
        pytest.fail("espeak-ng is not installed; run `bash tools/setup.sh` first")
    subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(path), text], check=True)
    return path


@pytest.fixture(scope="session")
def speech_dir(tmp_path_factory) -> Path:
    """A folder of espeak-ng utterances: ``utt{i}.wav`` for each of ``SENTENCES`` (several voices/speeds)."""
    folder = tmp_path_factory.mktemp("speech")
    voices = [("en-us", 150), ("en-gb", 175), ("en-us+f3", 140), ("en-gb+m3", 190)]
    for i, text in enumerate(SENTENCES):
        voice, speed = voices[i % len(voices)]
        speak(text, folder / f"utt{i}.wav", voice, speed)
    return folder


@pytest.fixture(scope="session")
def speech_16k(speech_dir) -> list:
    """The utterances of ``speech_dir`` as 16 kHz float32 tensors (via ``load_audio``)."""
    from funaudiochat.tokenizer import load_audio

    return [load_audio(speech_dir / f"utt{i}.wav") for i in range(len(SENTENCES))]


@pytest.fixture(scope="session")
def espeak():
    """The ``speak(text, path, voice, speed)`` helper, for tests that need their own utterance."""
    return speak


@pytest.fixture
def write_wav():
    """``write_wav(path, samples, rate, subtype=None)``: write samples with soundfile, return the path."""

    def write(path: Path, samples: np.ndarray, rate: int, subtype: str | None = None) -> Path:
        sf.write(str(path), samples, rate, subtype=subtype)
        return path

    return write
