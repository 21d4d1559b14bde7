"""A checkpoint saved by this project is served by vLLM: the speech-to-text path of a tiny model gives the
same greedy tokens through vLLM (``LLM.generate`` with audio, ``LLM.chat`` with ``input_audio``, batches of
two) as through this project's ``generate``; without the plugin of ``packages/vllm-plugin`` vLLM 0.32 cannot
load it (``docs/vllm.md``). vLLM runs in its own environment (``vllm_env``)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from vllm_env import NEW_TOKENS, vllm_env, vllm_python

RUNNER = Path(__file__).with_name("vllm_generate.py")


def run_vllm(folder: Path, audios: list[Path], out: Path, **env: str):
    command = [str(vllm_python()), str(RUNNER), "--model", str(folder), "--out", str(out)]
    command += [arg for audio in audios for arg in ("--audio", str(audio))]
    command += ["--max-tokens", str(NEW_TOKENS)]
    return subprocess.run(command, env=vllm_env(**env), capture_output=True, text=True, timeout=600)


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
    run = run_vllm(folder, audios[:1], tmp_path / "tokens.json", VLLM_PLUGINS="")
    assert run.returncode != 0
    assert "There is no module or parameter named 'k_proj' in FunAudioChatAudioAttention" in run.stderr
