"""The vLLM tests' shared fixture; this folder goes on the import path (``vllm_env`` helpers)."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from vllm_env import save_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory, speech_16k):
    """A tiny checkpoint saved by this project, two 16 kHz questions, and our greedy tokens for them."""
    folder = tmp_path_factory.mktemp("vllm_checkpoint")
    audios, tokens = save_checkpoint(folder, [speech_16k[0], speech_16k[2]])
    assert min(map(len, tokens)) >= 8
    return folder, audios, tokens
