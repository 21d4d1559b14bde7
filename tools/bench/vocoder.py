"""Vocoder speed on this machine's CPU: real-time factor offline and streaming, and the time to the first
audio chunk, at the official CosyVoice3 sizes and at a demo size.

RTF = synthesis seconds / audio seconds (lower is better; < 1 is faster than real time); times are the best
of ``--repeats`` rounds, and each "x/offline" ratio is the median over rounds of the two calls' times in the
same round (offline and the streams take turns, so the VM's drift cancels).

- offline: ``Token2Wav.synthesize`` (full attention, the official offline call);
- stream: a ``Token2Wav.stream`` session fed 15 tokens at a time (hop 15 + 3 look-ahead, flow key/value
  and HiFT convolution caches); "stream/offline" is its cost relative to offline;
- growing: the same stream with hops growing 15, 30, 60, 60, ... (``hop_growth=2, max_hop_tokens=60``):
  the first audio as early, then fewer and larger flow runs; "grow/offline" is its cost relative to offline;
- batch of 4: four streams (four voices) run as one batch, as a server runs its sessions; "x4/offline"
  is the cost per stream relative to offline (one stream of hop 15 leaves the CPU's small matrix products
  and convolutions half used; four fill them);
- work (demo size): floating-point operations of matrix products, convolutions and attention counted by
  ``torch.utils.flop_counter`` for offline and for the hop-15 stream: the stream computes nothing twice;
- GEMM floor (demo size): the DiT's matrix products alone (no other op), as offline runs them (each Euler
  step on every frame) and as a hop-15 stream does (each step on one chunk of 30 frames); their ratio bounds
  what a single stream can reach on this CPU whatever else is made free (small products use it less well);
- first chunk: wall time from a fresh session to its first audio (the first 15 + 3 tokens pushed at once);
- official loop (demo size only by default; ``--loop-sizes``): the official server's loop, which re-sends
  every token so far at each hop to the flow (finalize=False, full attention) and re-runs HiFT over the whole
  mel so far, keeping only the new samples; measured with this package's flow and HiFT.

Random weights (the speed does not depend on them).

    python tools/bench/vocoder.py [--seconds 4] [--sizes demo,official] [--json out.json]

Goals (issue 4, demo size): RTF <= 0.1 offline, first chunk <= 150 ms, streaming <= 1.2x offline.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable

import torch
import torch.nn.functional as F
from _results import write_json  # tools/bench/_results.py, this folder
from funaudiochat.vocoder import CausalFlowMatching, FlowConfig, HiFTConfig, HiFTGenerator
from funaudiochat.vocoder.speakers import Speaker, SpeakerTable
from funaudiochat.vocoder.token2wav import Token2Wav
from torch.utils.flop_counter import FlopCounterMode

SIZES = {
    "official": (FlowConfig(), HiFTConfig()),
    "demo": (
        FlowConfig(pre_lookahead_channels=256, dim=256, depth=4, heads=4, dim_head=64),
        HiFTConfig(base_channels=128, f0_cond_channels=128),
    ),
}
HOP, LOOK_AHEAD = 15, 3


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


def interleaved(calls: dict[str, Callable[[], object]], repeats: int) -> dict[str, list[float]]:
    """Seconds of each call per round, the calls taking turns within a round (this VM's speed drifts over
    minutes: a ratio is taken between calls of the same round)."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(repeats):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return times


def paired_ratio(numerator: list[float], denominator: list[float]) -> float:
    """The median over rounds of one call's time over another's."""
    return statistics.median(a / b for a, b in zip(numerator, denominator, strict=True))


def stream_all(t2w: Token2Wav, tokens: torch.Tensor, growth: int = 1, voices=None) -> None:
    """Push ``tokens`` (``[n]``, or ``[B, n]`` with a list of B ``voices``) one hop at a time."""
    rows = tokens.reshape(-1, tokens.shape[-1])
    batch = rows.shape[0]
    state = t2w.init_state(batch, voices, hop_tokens=HOP, hop_growth=growth, max_hop_tokens=4 * HOP)
    for i in range(0, tokens.shape[-1], HOP):
        t2w.step(rows[:, i : i + HOP], state)
    t2w.step(rows[:, :0], state, finalize=True)


BATCH = 4


@torch.inference_mode()
def gemm_floor(t2w: Token2Wav, tokens: int, repeats: int) -> tuple[float, float, float]:
    """The DiT's matrix products alone, CFG rows included: best seconds offline and in a hop-15 stream, and
    the paired ratio stream / offline."""
    dit = t2w.flow.decoder.estimator
    layers = [(dit.input_embed.proj.weight, dit.input_embed.proj.bias)]
    for block in dit.transformer_blocks:
        layers.append(block.attn.qkv_weights())
        for linear in (block.attn.to_out[0], block.ff.ff[0][0], block.ff.ff[2]):
            layers.append((linear.weight, linear.bias))
    layers.append((dit.proj_out.weight, dit.proj_out.bias))
    steps, ratio = t2w.flow.config.n_timesteps, t2w.flow.config.token_mel_ratio
    frames = tokens * ratio
    chunks = [min(HOP * ratio, frames - start) for start in range(0, frames, HOP * ratio)]

    def products(sizes: list[int]) -> None:
        inputs = {n: {w.shape[1]: torch.randn(2 * n, w.shape[1]) for w, _ in layers} for n in set(sizes)}
        for n in sizes:
            for _ in range(steps):
                for weight, bias in layers:
                    F.linear(inputs[n][weight.shape[1]], weight, bias)

    times = interleaved({"offline": lambda: products([frames]), "stream": lambda: products(chunks)}, repeats)
    return min(times["offline"]), min(times["stream"]), paired_ratio(times["stream"], times["offline"])


def counted_flops(call: Callable[[], object]) -> int:
    """Floating-point operations of ``call`` as ``torch.utils.flop_counter`` counts them (products,
    convolutions, attention); oneDNN's packed convolutions are switched off so that each is counted."""
    with (
        warnings.catch_warnings(),
        FlopCounterMode(display=False) as counter,
        torch.backends.mkldnn.flags(enabled=False),
    ):
        warnings.simplefilter("ignore")
        call()
    return counter.get_total_flops()


def first_chunk(t2w: Token2Wav, tokens: torch.Tensor) -> None:
    audio = t2w.stream(hop_tokens=HOP).push(tokens[: HOP + LOOK_AHEAD])
    assert audio.numel() > 0


@torch.inference_mode()
def official_loop(t2w: Token2Wav, tokens: torch.Tensor) -> None:
    """Each hop: the flow on all tokens so far (+ look-ahead), new mel frames appended, HiFT on all mel
    (with the same source-noise object as every other measured call)."""
    voice = t2w._speaker(None)
    noise = t2w._source_noise()
    embedding = voice.embedding[None]
    mel_so_far, samples = None, 0
    for offset in range(0, len(tokens), HOP):
        end = min(offset + HOP + LOOK_AHEAD, len(tokens))
        finalize = end == len(tokens)
        mel, _ = t2w.flow.inference(tokens[None, :end], embedding, finalize=finalize)
        new = mel[:, :, offset * 2 :]
        mel_so_far = new if mel_so_far is None else torch.cat((mel_so_far, new), dim=2)
        wave, _ = t2w.hift.inference(mel_so_far, finalize=finalize, noise=noise)
        samples = wave.shape[1]
        if finalize:
            break
    assert samples > 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0, help="speech length for the RTF")
    parser.add_argument("--sizes", default="demo,official")
    parser.add_argument("--loop-sizes", default="demo", help="sizes that also time the official loop")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (offline and streams take turns)")
    parser.add_argument("--json", default="bench-results/vocoder.json")
    args = parser.parse_args()

    rows = []
    for size in args.sizes.split(","):
        t2w = build(size)
        params = sum(p.numel() for p in t2w.flow.parameters()) + sum(p.numel() for p in t2w.hift.parameters())
        tokens = torch.randint(0, 6561, (int(args.seconds * 25),), generator=torch.Generator().manual_seed(0))
        audio_s = len(tokens) / 25
        t2w.synthesize(tokens[:20])  # warm-up
        stream_all(t2w, tokens[:40])
        voices = [Speaker(torch.randn(192, generator=torch.Generator().manual_seed(i))) for i in range(BATCH)]
        rows_of = tokens.expand(BATCH, -1)
        calls = {
            "offline": lambda t2w=t2w, tokens=tokens: t2w.synthesize(tokens),
            "stream": lambda t2w=t2w, tokens=tokens: stream_all(t2w, tokens),
            "growing": lambda t2w=t2w, tokens=tokens: stream_all(t2w, tokens, 2),
            "batch4": lambda t2w=t2w, r=rows_of, v=voices: stream_all(t2w, r, 1, v),
        }
        with_loop = size in args.loop_sizes.split(",")
        if with_loop:  # the official re-send loop takes its turn in the same rounds
            calls["loop"] = lambda t2w=t2w, tokens=tokens: official_loop(t2w, tokens)
        times = interleaved(calls, args.repeats)
        times["batch4"] = [t / BATCH for t in times["batch4"]]  # per stream
        first = best(lambda t2w=t2w, tokens=tokens: first_chunk(t2w, tokens), args.repeats)
        offline = min(times["offline"])
        row = {
            "size": size,
            "params_m": params / 1e6,
            "audio_s": audio_s,
            "offline_s": offline,
            "rtf_offline": offline / audio_s,
            "stream_s": min(times["stream"]),
            "rtf_stream": min(times["stream"]) / audio_s,
            "stream_over_offline": paired_ratio(times["stream"], times["offline"]),
            "growing_s": min(times["growing"]),
            "growing_over_offline": paired_ratio(times["growing"], times["offline"]),
            "batch4_per_stream_s": min(times["batch4"]),
            "batch4_over_offline": paired_ratio(times["batch4"], times["offline"]),
            "first_chunk_ms": first * 1e3,
        }
        if size == "demo":
            work_offline = counted_flops(lambda t2w=t2w, tokens=tokens: t2w.synthesize(tokens))
            work_stream = counted_flops(lambda t2w=t2w, tokens=tokens: stream_all(t2w, tokens))
            row.update(gflop_offline=work_offline / 1e9, gflop_stream=work_stream / 1e9)
            floor_offline, floor_stream, floor_ratio = gemm_floor(t2w, len(tokens), args.repeats + 2)
            row.update(
                gemm_offline_s=floor_offline, gemm_stream_s=floor_stream, gemm_over_offline=floor_ratio
            )
        if with_loop:
            loop = min(times["loop"])
            row.update(
                official_loop_s=loop,
                rtf_official_loop=loop / audio_s,
                loop_over_offline=paired_ratio(times["loop"], times["offline"]),
            )
        rows.append(row)

    print(f"vocoder (flow + HiFT, 10 Euler steps with CFG), {torch.get_num_threads()} threads, hop {HOP}")
    print(
        f"{'size':<9} {'params M':>9} {'audio s':>8} {'RTF off':>8} {'RTF str':>8} {'str/off':>8} "
        f"{'grow/off':>9} {'x4/off':>8} {'first ms':>9} {'RTF loop':>9} {'loop/off':>9}"
    )
    for r in rows:
        loop = (
            f"{r['rtf_official_loop']:>9.3f} {r['loop_over_offline']:>8.2f}x"
            if "official_loop_s" in r
            else ""
        )
        print(
            f"{r['size']:<9} {r['params_m']:>9.1f} {r['audio_s']:>8.1f} {r['rtf_offline']:>8.3f} "
            f"{r['rtf_stream']:>8.3f} {r['stream_over_offline']:>7.2f}x {r['growing_over_offline']:>8.2f}x "
            f"{r['batch4_over_offline']:>7.2f}x "
            f"{r['first_chunk_ms']:>9.0f} {loop}"
        )
    for r in rows:
        if "gflop_offline" in r:
            print(
                f"work ({r['size']}): {r['gflop_offline']:.1f} GFLOP offline, "
                f"{r['gflop_stream']:.1f} GFLOP in a hop-{HOP} stream "
                f"({r['gflop_stream'] / r['gflop_offline']:.2f}x)"
            )
        if "gemm_offline_s" in r:
            print(
                f"GEMM floor ({r['size']}): the DiT's matrix products alone take "
                f"{r['gemm_offline_s'] * 1e3:.0f} ms offline and "
                f"{r['gemm_stream_s'] * 1e3:.0f} ms in a hop-{HOP} stream "
                f"({r['gemm_over_offline']:.2f}x)"
            )
    write_json(args.json, {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
