"""Generation speed: LLM steps per second and speech tokens per second, batch 1 and 8, offline and streaming.

A random model (LLM 512 x 8 layers, SRH 256 x 3 layers, the default sampling settings) answers a prompt
with 3 s of user audio; every step is one 5 Hz LLM step plus 5 SRH sub-steps. "offline" calls
``generate``; "streaming" iterates ``stream`` and touches every step's tokens, as a server would. The
baseline of each row is batch 1 offline, measured in the same run.

    python tools/bench/generate.py [--steps 40] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import time

import torch
from _results import write_json  # tools/bench/_results.py, this folder
from drsr_training import SRH, TEXT, VOCAB  # tools/bench/drsr_training.py, this folder
from funaudiochat.drsr import (
    DecodingConfig,
    FunAudioChatConfig,
    FunAudioChatForConditionalGeneration,
    generate,
    stream,
)


def build() -> FunAudioChatForConditionalGeneration:
    # The sizes of the training benchmark, with half the LLM depth.
    text = dict(TEXT, num_hidden_layers=8)
    srh = dict(SRH)
    audio = {
        "d_model": 128,
        "encoder_layers": 2,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": 256,
        "output_dim": 512,
        "crq_transformer_config": srh,
    }
    torch.manual_seed(0)
    config = FunAudioChatConfig(audio_config=audio, text_config=text, audio_token_index=VOCAB - 10)
    model = FunAudioChatForConditionalGeneration(config).eval()
    with torch.no_grad():  # keep <|im_end|> and speech EOS from ending the run early
        model.language_model.lm_head.weight[text["eos_token_id"]] = 0
        model.audio_tower.embed_tokens.weight[6562] = 0
    return model


def prompts(config, batch: int, seconds: float = 3.0) -> dict:
    tc = config.text_config
    frames, speech = int(seconds * 100), int(seconds * 25)
    slots = -(-speech // 5)
    ids = [5, 6, 7, tc.audio_bos_index] + [config.audio_token_index] * slots + [tc.audio_eos_index, 8, 9]
    g = torch.Generator().manual_seed(0)
    return dict(
        input_ids=torch.tensor([ids] * batch),
        attention_mask=torch.ones(batch, len(ids), dtype=torch.long),
        input_features=torch.randn(batch, 128, frames, generator=g),
        feature_attention_mask=torch.ones(batch, frames, dtype=torch.long),
        speech_ids=torch.full((batch, slots * 5), 6563),
        speech_attention_mask=torch.ones(batch, slots * 5, dtype=torch.long),
        feature_exist_mask=torch.ones(batch, dtype=torch.bool),
    )


def run_offline(model, inputs, config) -> int:
    out = generate(model, inputs, config)
    return sum(s.numel() for s in out.speech_ids)


def run_streaming(model, inputs, config) -> int:
    tokens = 0
    for step in stream(model, inputs, config):
        tokens += int(step.speech_valid.sum()) * step.speech_tokens.shape[1]
        step.text_tokens.tolist()  # what a server does with each step
    return tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="LLM steps per generation")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="bench-results/generate.json")
    args = parser.parse_args()

    model = build()
    config = DecodingConfig(max_new_tokens=args.steps, seed=0)
    rows = []
    for batch in (1, 8):
        inputs = prompts(model.config, batch)
        for mode, fn in (("offline", run_offline), ("streaming", run_streaming)):
            fn(model, inputs, DecodingConfig(max_new_tokens=3))  # warm-up
            best, tokens = float("inf"), 0
            for _ in range(args.repeats):
                start = time.perf_counter()
                tokens = fn(model, inputs, config)
                best = min(best, time.perf_counter() - start)
            rows.append(
                {
                    "batch": batch,
                    "mode": mode,
                    "seconds": best,
                    "llm_steps_per_s": args.steps / best,
                    "speech_tokens_per_s": tokens / best,
                    "speech_tokens": tokens,
                }
            )
    base = rows[0]["speech_tokens_per_s"]
    print(f"generation, {args.steps} LLM steps (each + 5 SRH sub-steps), {torch.get_num_threads()} threads")
    print(
        f"{'batch':>5} {'mode':<10} {'LLM steps/s':>12} {'speech tok/s':>13} {'vs b1 offline':>14} "
        f"{'real-time x':>12}"
    )
    for r in rows:
        r["ratio_vs_batch1_offline"] = r["speech_tokens_per_s"] / base
        r["real_time_factor"] = r["speech_tokens_per_s"] / 25.0  # seconds of speech made per second
        print(
            f"{r['batch']:>5} {r['mode']:<10} {r['llm_steps_per_s']:>12.1f} "
            f"{r['speech_tokens_per_s']:>13.1f} "
            f"{r['ratio_vs_batch1_offline']:>13.2f}x {r['real_time_factor']:>11.1f}x"
        )
    write_json(args.json, {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
