"""Helpers of the tool tests: the scripts under tools/ are not a package, so each is imported from its
file."""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def tool_module(relative: str) -> Iterator[ModuleType]:
    """The script ``ROOT / relative`` imported as a module (registered in ``sys.modules`` while in use, so
    its dataclasses and pickling work; its folder on ``sys.path``, as when it runs, so it imports its
    ``_helpers``), removed again afterwards."""
    path = ROOT / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    sys.path.insert(0, str(path.parent))
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)
        sys.path.remove(str(path.parent))


@pytest.fixture(scope="session")
def load_tool():
    """``with load_tool("tools/experiments/x.py") as module: ...`` (see ``tool_module``)."""
    return tool_module


SYSTEM = "You are asked to generate both text and speech tokens at the same time."
TEMPLATE = "<|audio_bos|><|AUDIO|><|audio_eos|>"
ANSWERS = ["Two plus three is five.", "A banana is yellow.", "Yes, nine is more than four."]
SPOKEN_CODES = 60  # with the 10 BOS of the delay: 70 frames, 14 groups (no padding)


def entry(**fields) -> str:
    base = {"path": "", "text": "", "token": "", "ref_path": "", "ref_text": ""}
    return json.dumps({**base, **fields}, sort_keys=True)


@pytest.fixture
def spoken_replies(tmp_path):
    """A tiny random model folder (with its processor) and a conversations file: three conversations that
    end with a spoken reply of ``SPOKEN_CODES`` random codes (after the 10 BOS of the delay), then one
    text-only conversation. Returns ``(model folder, conversations path)``."""
    from funaudiochat.drsr import FunAudioChatForConditionalGeneration
    from funaudiochat.drsr.configuration import tiny_config_for
    from funaudiochat.drsr.processing import FunAudioChatProcessor, speech_frame_count
    from funaudiochat.drsr.text_tokenizer import train_text_tokenizer

    tokenizer = train_text_tokenizer([SYSTEM, *ANSWERS] * 4, vocab_size=300)
    processor = FunAudioChatProcessor(tokenizer, padding_side="right")
    folder = tmp_path / "model"
    processor.save_pretrained(folder)
    torch.manual_seed(0)
    FunAudioChatForConditionalGeneration(tiny_config_for(processor)).save_pretrained(folder)
    rows = []
    for i, answer in enumerate(ANSWERS):
        samples = 8000 + 1600 * i
        wav = tmp_path / f"q{i}.wav"
        sf.write(wav, 0.1 * np.random.default_rng(i).standard_normal(samples), 16000, subtype="PCM_16")
        codes = np.random.default_rng(10 + i).integers(0, 6561, SPOKEN_CODES)
        token = "<|audio_bos|>" * 10 + "".join(f"[AU{c:04d}]" for c in codes)
        user = entry(path=str(wav), token="<|audio_pad|>" * speech_frame_count(samples))
        rows.append(
            {
                "system": SYSTEM,
                "messages": [
                    {"role": "user", "content": TEMPLATE},
                    {"role": "assistant", "content": TEMPLATE},
                ],
                "audio": [user, entry(text=answer, token=token)],
            }
        )
    rows.append({"system": "You are asked to generate text tokens.", "messages": [], "audio": []})
    conversations = tmp_path / "conversations.jsonl"
    conversations.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder, conversations
