"""Vocoder speed on this machine's CPU: real-time factor of offline Token2Wav, and the time to the first
audio chunk, at the official CosyVoice3 sizes and at a demo size.

RTF = synthesis seconds / audio seconds (lower is better; < 1 is faster than real time). "first hop" is
the wall time to produce the audio of the first 15 tokens (+ 3 look-ahead tokens) from nothing, the
streaming hop of the official server; until streaming Token2Wav exists (issue 4) this is measured with
the offline path on those 18 tokens, so it is what a first chunk costs, not a streaming run. Random
weights (the speed does not depend on them).

    python tools/bench/vocoder.py [--seconds 4] [--sizes demo,official] [--json out.json]

Goals (issue 4, demo size): RTF <= 0.1 offline, first chunk <= 150 ms, streaming <= 1.2x offline.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from funaudiochat.vocoder import CausalFlowMatching, FlowConfig, HiFTConfig, HiFTGenerator
from funaudiochat.vocoder.speakers import Speaker, SpeakerTable
from funaudiochat.vocoder.token2wav import Token2Wav

SIZES = {
    "official": (FlowConfig(), HiFTConfig()),
    "demo": (
        FlowConfig(pre_lookahead_channels=256, dim=256, depth=4, heads=4, dim_head=64),
        HiFTConfig(base_channels=128, f0_cond_channels=128),
    ),
}


def build(size: str) -> Token2Wav:
    flow_config, hift_config = SIZES[size]
    torch.manual_seed(0)
    voice = Speaker(torch.randn(192))
    return Token2Wav(CausalFlowMatching(flow_config), HiFTGenerator(hift_config), SpeakerTable({"v": voice}))


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="speech length for the RTF")
    parser.add_argument("--sizes", default="demo,official")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", default="bench-results/vocoder.json")
    args = parser.parse_args()

    rows = []
    for size in args.sizes.split(","):
        t2w = build(size)
        params = sum(p.numel() for p in t2w.flow.parameters()) + sum(p.numel() for p in t2w.hift.parameters())
        tokens = torch.randint(0, 6561, (int(args.seconds * 25),), generator=torch.Generator().manual_seed(0))
        t2w.synthesize(tokens[:20])  # warm-up
        offline = best(lambda t2w=t2w, tokens=tokens: t2w.synthesize(tokens), args.repeats)
        first = best(lambda t2w=t2w, tokens=tokens: t2w.synthesize(tokens[:18]), args.repeats)
        rows.append(
            {
                "size": size,
                "params_m": params / 1e6,
                "audio_s": len(tokens) / 25,
                "offline_s": offline,
                "rtf_offline": offline / (len(tokens) / 25),
                "first_hop_ms": first * 1e3,
            }
        )
    print(f"vocoder (flow + HiFT, 10 Euler steps with CFG), {torch.get_num_threads()} threads")
    print(f"{'size':<9} {'params M':>9} {'audio s':>8} {'offline s':>10} {'RTF':>7} {'first hop ms':>13}")
    for r in rows:
        print(
            f"{r['size']:<9} {r['params_m']:>9.1f} {r['audio_s']:>8.1f} {r['offline_s']:>10.2f} "
            f"{r['rtf_offline']:>7.3f} {r['first_hop_ms']:>13.0f}"
        )
    print("streaming: not measured yet (streaming Token2Wav with flow/HiFT caches is still to be built)")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
