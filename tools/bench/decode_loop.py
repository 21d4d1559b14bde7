"""The 5 Hz decoding loop at the issue-11 benchmark size: LLM steps per second, ours against a reference.

Sizes: Qwen3 LLM 512 x 8 layers, 8 / 4 kv heads, head_dim 64, ffn 1536, vocab 4096; SRH 256 x 4 layers,
4 / 2 kv heads, ffn 768; audio encoder 256 x 4, ffn 1024, output 512. A 2 s audio prompt; greedy text and
greedy speech with repetition penalty 1.2; ``--steps`` steps after the prefill; batch 1.

Variants, alternated round by round in one process (ratios are medians of same-round ratios):
- ``transformers``: ``DecodingConfig(fast_decode=False)``, every step through the transformers model
  calls. It is the in-process baseline: side by side with the official ``generate`` (run unchanged under
  the transformers it pins, docs/benchmarks.md) it ran at 1.00-1.01x the official steps/s.
- ``fast``: the defaults (``fast_decode=True``).
Each variant must produce the same text and speech tokens (checked every round), else the run stops.

    python tools/bench/decode_loop.py [--steps 40] [--rounds 8] [--threads 2] [--profile] [--narrow]

``--narrow`` builds every layer 32 wide (the same layers, heads and operations, next to no arithmetic):
its step time is what the framework and the Python around the arithmetic cost.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from funaudiochat.drsr import (
    DecodingConfig,
    FunAudioChatConfig,
    FunAudioChatForConditionalGeneration,
    decode_step,
    generate,
    prefill,
)
from funaudiochat.drsr.generation import SamplingConfig

VOCAB = 4096


def build(narrow: bool = False) -> FunAudioChatForConditionalGeneration:
    """The benchmark model, seeded; its end tokens are switched off so every run takes ``--steps`` steps.
    ``narrow``: every width 32 (head_dim 8), the layer and head counts unchanged."""
    w = (lambda size: 32) if narrow else (lambda size: size)
    text = {
        "hidden_size": w(512),
        "num_hidden_layers": 8,
        "num_attention_heads": 8,
        "num_key_value_heads": 4,
        "head_dim": 8 if narrow else 64,
        "intermediate_size": w(1536),
        "max_position_embeddings": 8192,
    }
    srh = {
        "model_type": "qwen3",
        "hidden_size": w(256),
        "num_hidden_layers": 4,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 8 if narrow else 64,
        "intermediate_size": w(768),
        "vocab_size": 6565,
        "max_position_embeddings": 40960,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-6,
    }
    config = FunAudioChatConfig.tiny(
        vocab_size=VOCAB,
        text_overrides=text,
        d_model=w(256),
        encoder_layers=4,
        encoder_attention_heads=4,
        encoder_ffn_dim=w(1024),
        output_dim=w(512),
        crq_transformer_config=srh,
    )
    torch.manual_seed(0)
    model = FunAudioChatForConditionalGeneration(config).eval()
    with torch.no_grad():
        model.language_model.lm_head.weight[config.text_config.eos_token_id] = 0
        model.audio_tower.embed_tokens.weight[6562] = 0
    return model


def prompt(config, seconds: float = 2.0) -> dict:
    """A chat-shaped prompt around ``seconds`` of (random) user audio features."""
    tc = config.text_config
    frames, speech = int(seconds * 100), int(seconds * 25)
    slots = -(-speech // 5)
    ids = [5, 6, 7, tc.audio_bos_index] + [config.audio_token_index] * slots + [tc.audio_eos_index, 8, 9]
    ids.append(tc.audio_bos_index)  # the assistant turn starts speaking
    g = torch.Generator().manual_seed(0)
    return dict(
        input_ids=torch.tensor([ids]),
        attention_mask=torch.ones(1, len(ids), dtype=torch.long),
        input_features=torch.randn(1, 128, frames, generator=g),
        feature_attention_mask=torch.ones(1, frames, dtype=torch.long),
        speech_ids=torch.full((1, slots * 5), 6563),
        speech_attention_mask=torch.ones(1, slots * 5, dtype=torch.long),
        feature_exist_mask=torch.ones(1, dtype=torch.bool),
    )


def configs(steps: int) -> dict[str, DecodingConfig]:
    text = SamplingConfig(do_sample=False, repetition_penalty=1.0)
    speech = SamplingConfig(do_sample=False, repetition_penalty=1.2)
    common = dict(max_new_tokens=steps + 1, text=text, speech=speech)  # the prefill's step + ``steps``
    return {
        "transformers": DecodingConfig(fast_decode=False, **common),
        "fast": DecodingConfig(**common),
    }


def timed(model, inputs, config) -> tuple[float, list]:
    """(seconds of the decode steps after the prefill, all tokens made)."""
    state, _ = prefill(model, inputs, config)
    start = time.perf_counter()
    while not bool(state.finished.all()):
        decode_step(model, state)
    seconds = time.perf_counter() - start
    return seconds, [state.sequences.tolist(), [s.tolist() for s in state.speech]]


def profile(model, inputs, config) -> None:
    """Print where one run's time goes (the ``record_function`` ranges and the busiest ops)."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        generate(model, inputs, config)
    print(prof.key_averages().table(sort_by="cpu_time_total", row_limit=25))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="decode steps after the prefill")
    parser.add_argument("--rounds", type=int, default=8, help="rounds; every variant runs once per round")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="print a profile of the fast variant")
    parser.add_argument("--narrow", action="store_true", help="32-wide layers: the per-step framework cost")
    parser.add_argument("--json", default="bench-results/decode_loop.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = build(args.narrow)
    inputs = prompt(model.config)
    variants = configs(args.steps)
    if args.profile:
        profile(model, inputs, variants["fast"])
        return
    for config in variants.values():  # warm-up
        timed(model, inputs, config)
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(args.rounds):
        outputs = {}
        for name, config in variants.items():
            took, outputs[name] = timed(model, inputs, config)
            seconds[name].append(took)
        if outputs["fast"] != outputs["transformers"]:
            raise SystemExit(f"round {round_}: the variants made different tokens")
    base = seconds["transformers"]
    rows = []
    print(f"5 Hz decoding loop, {args.steps} steps, batch 1, {args.threads} threads, {args.rounds} rounds")
    print(f"{'variant':<14} {'steps/s (median)':>17} {'ms / step':>10} {'vs transformers':>16}")
    for name, times in seconds.items():
        ratio = statistics.median(b / t for b, t in zip(base, times, strict=True))
        rate = args.steps / statistics.median(times)
        rows.append({"variant": name, "steps_per_s": rate, "ratio_vs_transformers": ratio, "seconds": times})
        print(f"{name:<14} {rate:>17.1f} {1000 / rate:>10.1f} {ratio:>15.2f}x")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
