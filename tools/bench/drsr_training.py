"""Training throughput of the dual-resolution model: 5 Hz LLM (k = 5) vs 25 Hz LLM (k = 1).

Both models have the same LLM and SRH sizes, with an LLM:SRH parameter ratio close to the official
8B : 0.54B (about 15 : 1; the SRH counted with its pre/in/out matching layers, without the tied speech
head, whose 512 x 6565 cost per 25 Hz position is relatively ~40x heavier here than at D = 4096), and
train on the same data: assistant turns of spoken answers (speech codes
with the 10-token delay, a per-group transcript), in the official training layout. With k = 5 the LLM
sees one position per 5 speech tokens; with k = 1 one per token. Reported: audio-seconds trained per
wall-clock second (forward + backward + AdamW step), best of N, and the ratio k=5 / k=1.

    python tools/bench/drsr_training.py [--seconds 12] [--batch 4] [--repeats 3] [--json out.json]

Goal (issue 3): >= 2.5x. The paper claims about 50 % less GPU time than a 25 Hz backbone.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from funaudiochat.drsr import FunAudioChatConfig, FunAudioChatForConditionalGeneration

VOCAB = 1000
TEXT = {
    "model_type": "qwen3",
    "hidden_size": 512,
    "num_hidden_layers": 16,
    "num_attention_heads": 8,
    "num_key_value_heads": 4,
    "head_dim": 64,
    "intermediate_size": 1536,
    "vocab_size": VOCAB,
    "rope_theta": 10000.0,
    "max_position_embeddings": 8192,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": False,
    "audio_bos_index": VOCAB - 9,
    "audio_eos_index": VOCAB - 8,
    "sil_index": VOCAB - 7,
    "bos_token_id": VOCAB - 6,
    "eos_token_id": VOCAB - 5,
    "pad_token_id": VOCAB - 4,
}
SRH = {
    "model_type": "qwen3",
    "hidden_size": 256,
    "num_hidden_layers": 3,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "intermediate_size": 768,
    "rope_theta": 10000.0,
    "max_position_embeddings": 16384,
    "rms_norm_eps": 1e-6,
    "vocab_size": 6565,
}


def build(group_size: int) -> FunAudioChatForConditionalGeneration:
    audio = {
        "d_model": 32,
        "encoder_layers": 1,
        "encoder_attention_heads": 2,
        "encoder_ffn_dim": 64,
        "output_dim": 512,
        "group_size": group_size,
        "crq_transformer_config": SRH,
    }
    config = FunAudioChatConfig(audio_config=audio, text_config=dict(TEXT), audio_token_index=VOCAB - 10)
    torch.manual_seed(0)
    return FunAudioChatForConditionalGeneration(config).train()


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def assistant_batch(
    config: FunAudioChatConfig, seconds: float, batch: int, seed: int = 0, prefix_tokens: int = 12
) -> dict:
    """B assistant turns of ``seconds`` of speech each after ``prefix_tokens`` of untrained prompt, official
    layout (docs/reference/fun-audio-chat.md §4.1)."""
    k = config.audio_config.group_size
    tc = config.text_config
    g = torch.Generator().manual_seed(seed)
    frames = int(seconds * 25)
    frames += -frames % 5  # both models get the same speech: a multiple of 5 tokens
    slots = frames // k
    prefix = torch.randint(0, VOCAB - 20, (batch, prefix_tokens), generator=g)
    body = torch.tensor(
        [tc.audio_bos_index] + [config.audio_token_index] * slots + [tc.audio_eos_index, tc.eos_token_id]
    )
    input_ids = torch.cat([prefix, body.expand(batch, -1)], dim=1)
    labels = input_ids.clone()
    labels[:, :prefix_tokens] = -100
    codes = torch.randint(0, 6561, (batch, frames - 10), generator=g)
    speech_ids = torch.cat([torch.full((batch, 10), 6561), codes], dim=1)
    words = torch.randint(0, VOCAB - 20, (batch, max(slots // 3, 1)), generator=g)
    return dict(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        labels=labels,
        speech_ids=speech_ids,
        speech_attention_mask=torch.ones_like(speech_ids),
        text_ids=words,
        text_attention_mask=torch.ones(batch, dtype=torch.bool),
        feature_exist_mask=torch.zeros(batch, dtype=torch.bool),
    )


def train_seconds_per_step(model, batch: dict, repeats: int) -> tuple[float, float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def step() -> float:
        out = model(**{k: v.clone() for k, v in batch.items()})
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        return out.loss.item()

    step()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - start)
    return min(times), loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=12.0, help="speech per assistant turn")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default="bench-results/drsr_training.json")
    args = parser.parse_args()

    results = {}
    for k in (5, 1):
        model = build(k)
        llm = (
            count(model.language_model)
            - model.language_model.model.embed_tokens.weight.numel()
            - model.language_model.lm_head.weight.numel()
        )
        srh = count(model.audio_invert_tower) - model.audio_invert_tower.lm_head.weight.numel()
        batch = assistant_batch(model.config, args.seconds, args.batch)
        seconds_per_step, loss = train_seconds_per_step(model, batch, args.repeats)
        results[f"k{k}"] = {
            "group_size": k,
            "llm_frame_rate_hz": 25 / k,
            "llm_positions": int(batch["input_ids"].shape[1]),
            "llm_params_no_embeddings": llm,
            "srh_params_no_head": srh,
            "seconds_per_step": seconds_per_step,
            "audio_seconds_per_second": args.batch * args.seconds / seconds_per_step,
            "loss": loss,
        }
        del model
    ratio = results["k5"]["audio_seconds_per_second"] / results["k1"]["audio_seconds_per_second"]
    r5 = results["k5"]
    print(
        f"DRSR training throughput: batch {args.batch} x {args.seconds:.0f} s of assistant speech, "
        f"{torch.get_num_threads()} threads; LLM {r5['llm_params_no_embeddings'] / 1e6:.1f} M : "
        f"SRH {r5['srh_params_no_head'] / 1e6:.2f} M params "
        f"(= {r5['llm_params_no_embeddings'] / r5['srh_params_no_head']:.1f} : 1)"
    )
    print(f"{'model':<22} {'LLM positions':>14} {'s / step':>10} {'audio s / s':>12}")
    for r in results.values():
        label = f"k={r['group_size']} ({r['llm_frame_rate_hz']:.0f} Hz LLM)"
        print(
            f"{label:<22} {r['llm_positions']:>14} {r['seconds_per_step']:>10.3f} "
            f"{r['audio_seconds_per_second']:>12.1f}"
        )
    print(f"speed-up of the 5 Hz model: {ratio:.2f}x")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "results": results, "ratio_k5_over_k1": ratio}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
