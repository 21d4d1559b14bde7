"""Puts this folder on the import path, so the chat tests (and those of ``server/``) share
``reply_checks``; ``questions``: two spoken questions (espeak-ng) for the batching tests."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="module")
def questions(tmp_path_factory, espeak):
    folder = tmp_path_factory.mktemp("questions")
    return [
        espeak("What is the weather like today?", folder / "a.wav"),
        espeak("Count from one to five.", folder / "b.wav"),
    ]
