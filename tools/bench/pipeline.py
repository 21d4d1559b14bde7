"""Spoken-chat pipeline speed: time to first audio and real-time factor, streamed vs offline.

A pipeline answers a bundled spoken question (2.1 s) with replies of 1, 3 and 8 s of speech (the end
tokens are switched off, so the length is set by ``max_new_tokens``). The pipeline is one of

- ``--size bench`` (default): random weights at the benchmark sizes of ``tools/bench/decode_loop.py`` (LLM
  512 x 8 layers, 8 heads / 4 kv, ffn 1536; SRH 256 x 4 layers; audio encoder 256 x 4) with the demo-size
  vocoder of ``tools/bench/vocoder.py``;
- ``--size demo``: random weights at the demo model's sizes (LLM 256 x 4, SRH 128 x 3, audio encoder
  128 x 3, the demo flow and HiFT of ``funaudiochat.training.demo``);
- ``--model FOLDER``: a saved pipeline folder (the demo model), its weights as trained.

"offline" is ``Pipeline.chat`` (decode everything, then synthesise); "stream" is ``Pipeline.stream`` (the
vocoder fed hop by hop while the model speaks). Offline and stream take turns in every round; ratios are
medians of same-round ratios.

    python tools/bench/pipeline.py [--size bench|demo | --model FOLDER] [--hop 6 --hop-growth 4 --max-hop 96]
        [--seconds 1,3,8] [--repeats 3] [--breakdown] [--json bench-results/pipeline.json]

``--breakdown`` also times the parts of both schedules (wall seconds inside the audio encoder, the prompt's
pass, the 5 Hz steps, the flow and HiFT), for the stream up to its first audio chunk.

Goals (issue 11): for a 3 s answer the first audio comes >= 4x sooner than offline, and the streamed reply
costs <= 1.3x the offline one in total.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import statistics
import time
from pathlib import Path

import torch
from _results import write_json  # tools/bench/_results.py, this folder
from funaudiochat.chat import AudioChunk, Pipeline, Request, Sampling
from funaudiochat.chat.loaders import RANDOM_CORPUS
from funaudiochat.drsr import FunAudioChatConfig, FunAudioChatForConditionalGeneration
from funaudiochat.drsr.processing import FunAudioChatProcessor
from funaudiochat.drsr.text_tokenizer import train_text_tokenizer
from funaudiochat.training.demo.context import DemoSettings
from funaudiochat.training.demo.head_shape import demo_srh
from funaudiochat.training.demo.model_stages import demo_audio
from funaudiochat.vocoder import CausalFlowMatching, FlowConfig, HiFTConfig, HiFTGenerator
from funaudiochat.vocoder.speakers import Speaker, SpeakerTable
from funaudiochat.vocoder.token2wav import Token2Wav
from vocoder import build as build_vocoder  # tools/bench/vocoder.py, this folder

ROOT = Path(__file__).resolve().parents[2]
QUESTION = ROOT / "examples" / "questions" / "four_times_five.wav"  # 2.1 s, bundled


RECIPE = DemoSettings()  # the demo recipe's defaults
SIZES = {  # LLM, SRH, audio encoder
    "bench": (
        {
            "hidden_size": 512,
            "num_hidden_layers": 8,
            "num_attention_heads": 8,
            "num_key_value_heads": 4,
            "head_dim": 64,
            "intermediate_size": 1536,
        },
        {
            "hidden_size": 256,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 64,
            "intermediate_size": 768,
        },
        {"d_model": 256, "encoder_layers": 4, "encoder_attention_heads": 4, "encoder_ffn_dim": 1024},
    ),
    "demo": (  # the demo model's: its text LLM (recipes/text_lm.yaml) and the recipe's head and tower
        {
            "hidden_size": 256,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 64,
            "intermediate_size": 768,
        },
        demo_srh(RECIPE.srh_width, RECIPE.srh_layers),
        demo_audio(RECIPE.audio_encoder_width),
    ),
}


def random_pipeline(size: str) -> Pipeline:
    """Random weights at ``SIZES[size]`` and that size's vocoder."""
    llm, srh, audio = SIZES[size]
    processor = FunAudioChatProcessor(train_text_tokenizer(RANDOM_CORPUS, vocab_size=320))
    ids = processor.token_ids
    text = {
        **llm,
        "audio_bos_index": ids.audio_bos_index,
        "audio_eos_index": ids.audio_eos_index,
        "sil_index": ids.sil_index,
        "bos_token_id": None,
        "eos_token_id": ids.im_end,
        "pad_token_id": ids.pad,
    }
    srh = {
        "model_type": "qwen3",
        **srh,
        "vocab_size": 6565,
        "max_position_embeddings": 40960,
        "rope_theta": 10000.0,
        "rms_norm_eps": 1e-6,
    }
    config = FunAudioChatConfig.tiny(
        vocab_size=len(processor.tokenizer),
        text_overrides=text,
        audio_token_index=ids.audio_token_index,
        **audio,
        output_dim=llm["hidden_size"],
        crq_transformer_config=srh,
    )
    torch.manual_seed(0)
    model = FunAudioChatForConditionalGeneration(config).eval()
    return Pipeline(model, processor, demo_vocoder() if size == "demo" else build_vocoder("demo"))


def demo_vocoder() -> Token2Wav:
    """The demo model's flow (with the Euler steps it ships with) and HiFT sizes, random weights, one
    random voice."""
    from funaudiochat.training.demo.context import DemoSettings
    from funaudiochat.training.demo.vocoder_stages import DEMO_FLOW, DEMO_HIFT

    torch.manual_seed(0)
    voices = SpeakerTable({"v": Speaker(torch.randn(192))})
    flow = FlowConfig(**DEMO_FLOW, n_timesteps=DemoSettings().flow_inference_steps)
    return Token2Wav(CausalFlowMatching(flow), HiFTGenerator(HiFTConfig(**DEMO_HIFT)), voices)


def build_pipeline(
    size: str = "bench", model: str | None = None, hop: int = 15, growth: int = 1, longest: int | None = None
) -> Pipeline:
    """The pipeline to time (``--size`` or ``--model``) with its end tokens switched off and the hops."""
    pipe = Pipeline.from_pretrained(model) if model else random_pipeline(size)
    ids = pipe.processor.token_ids
    with torch.no_grad():  # no <|im_end|> and no speech EOS: the reply runs to max_new_tokens
        pipe.model.language_model.lm_head.weight[ids.im_end] = 0
        pipe.model.audio_tower.embed_tokens.weight[pipe.model.config.audio_config.eos_token_id] = 0
    pipe.set_hops(hop, growth, longest)
    return pipe


def streamed(pipe: Pipeline, request: Request) -> tuple[float, float, float]:
    """(seconds to first audio, total seconds, audio seconds) of one streamed reply."""
    start, first, samples = time.perf_counter(), None, 0
    for event in pipe.stream(request):
        if isinstance(event, AudioChunk):
            first = first if first is not None else time.perf_counter() - start
            samples += event.samples.numel()
    return first, time.perf_counter() - start, samples / 24000


PARTS = {  # label -> the functions timed by --breakdown, as (module, attribute path)
    "prompt pass (with the audio encoder)": [
        ("funaudiochat.chat.batch", "prefill"),
        ("funaudiochat.chat.pipeline", "prefill"),
    ],
    "audio encoder": [("funaudiochat.drsr.modeling", "FunAudioChatForConditionalGeneration.encode_audio")],
    "5 Hz steps": [("funaudiochat.chat.batch", "decode_step"), ("funaudiochat.chat.pipeline", "decode_step")],
    "flow": [
        ("funaudiochat.vocoder.flow", "CausalFlowMatching.inference"),
        ("funaudiochat.vocoder.flow", "CausalFlowMatching.solve_ready"),
    ],
    "HiFT": [
        ("funaudiochat.vocoder.hift", "HiFTGenerator.inference"),
        ("funaudiochat.vocoder.hift", "HiFTGenerator._step_lockstep"),
    ],
}


@contextlib.contextmanager
def timed_parts(totals: dict[str, float]):
    """Add the wall seconds spent in each of ``PARTS`` to ``totals`` while the block runs."""
    import importlib

    undo = []
    targets = [(label, module, path) for label, where in PARTS.items() for module, path in where]
    for label, module_name, path in targets:
        owner = importlib.import_module(module_name)
        *outer, name = path.split(".")
        for part in outer:
            owner = getattr(owner, part)
        original = owner.__dict__[name] if name in vars(owner) else getattr(owner, name)

        def timed(*args, _f=original, _label=label, **kwargs):
            start = time.perf_counter()
            try:
                return _f(*args, **kwargs)
            finally:
                totals[_label] += time.perf_counter() - start

        setattr(owner, name, timed)
        undo.append((owner, name, original))
    try:
        yield totals
    finally:
        for owner, name, original in reversed(undo):
            setattr(owner, name, original)


def first_audio(pipe: Pipeline, request: Request) -> None:
    """Run a stream up to its first audio chunk."""
    for event in pipe.stream(request):
        if isinstance(event, AudioChunk):
            return


def breakdown(pipe: Pipeline, request: Request, repeats: int) -> dict[str, dict[str, float]]:
    """Mean milliseconds per reply in each of ``PARTS`` and in all, offline and up to the first audio."""
    result = {}
    schedules = {
        "offline": lambda: pipe.chat(request),
        "stream to first audio": lambda: first_audio(pipe, request),
    }
    for schedule, run in schedules.items():
        totals: dict[str, float] = collections.defaultdict(float)
        with timed_parts(totals):
            start = time.perf_counter()
            for _ in range(repeats):
                run()
            totals["all"] = time.perf_counter() - start
        result[schedule] = {label: 1000 * seconds / repeats for label, seconds in totals.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--size", choices=sorted(SIZES), default="bench", help="random weights at these sizes"
    )
    parser.add_argument("--model", help="a pipeline folder to time instead (e.g. the demo model)")
    parser.add_argument("--seconds", default="1,3,8", help="reply lengths in seconds of speech")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (offline and stream take turns)")
    parser.add_argument("--hop", type=int, default=15, help="vocoder hop in codes (first hop)")
    parser.add_argument("--hop-growth", type=int, default=1, help="each later hop this many times longer")
    parser.add_argument("--max-hop", type=int, help="longest hop in codes (with --hop-growth > 1)")
    parser.add_argument("--breakdown", action="store_true", help="also time the parts of both schedules")
    parser.add_argument("--json", default="bench-results/pipeline.json")
    args = parser.parse_args()

    pipe = build_pipeline(args.size, args.model, args.hop, args.hop_growth, args.max_hop)
    rows, parts = [], {}
    for seconds in [float(s) for s in args.seconds.split(",")]:
        # the first step forces <|audio_bos|>; then 5 codes (0.2 s) a step
        request = Request(audio=QUESTION, sampling=Sampling(max_new_tokens=int(round(seconds * 5)) + 1))
        pipe.chat(request)  # warm-up
        offline, stream_first, stream_total, ratios, speedups = [], [], [], [], []
        audio_s = 0.0
        for _ in range(args.repeats):
            start = time.perf_counter()
            reply = pipe.chat(request)
            offline.append(time.perf_counter() - start)
            audio_s = reply.timings.audio_s
            first, total, _ = streamed(pipe, request)
            stream_first.append(first)
            stream_total.append(total)
            ratios.append(total / offline[-1])
            speedups.append(offline[-1] / first)
        rows.append(
            {
                "answer_s": audio_s,
                "offline_s": min(offline),
                "stream_first_audio_s": min(stream_first),
                "stream_total_s": min(stream_total),
                "first_audio_speedup": statistics.median(speedups),
                "stream_over_offline": statistics.median(ratios),
                "rtf_offline": min(offline) / audio_s,
                "rtf_stream": min(stream_total) / audio_s,
            }
        )
        if args.breakdown:
            parts[f"{audio_s:.1f}"] = breakdown(pipe, request, args.repeats)

    hops = f"hop {args.hop}" + (f" x{args.hop_growth} up to {args.max_hop}" if args.hop_growth > 1 else "")
    what = args.model or f"random weights at the {args.size} sizes"
    print(f"pipeline ({what}, {hops}), {torch.get_num_threads()} threads")
    print(
        f"{'answer s':>9} {'offline s':>10} {'1st audio s':>12} {'speedup':>8} {'stream s':>9} "
        f"{'str/off':>8} {'RTF off':>8} {'RTF str':>8}"
    )
    for r in rows:
        print(
            f"{r['answer_s']:>9.1f} {r['offline_s']:>10.2f} {r['stream_first_audio_s']:>12.2f} "
            f"{r['first_audio_speedup']:>7.1f}x {r['stream_total_s']:>9.2f} "
            f"{r['stream_over_offline']:>7.2f}x "
            f"{r['rtf_offline']:>8.2f} {r['rtf_stream']:>8.2f}"
        )
    for answer, schedules in parts.items():
        print(f"where the time goes, {answer} s answer (ms per reply):")
        labels = list(dict.fromkeys(label for times in schedules.values() for label in times))
        print(f"  {'':38} " + " ".join(f"{name:>22}" for name in schedules))
        for label in labels:
            cells = " ".join(f"{times.get(label, 0.0):>22.1f}" for times in schedules.values())
            print(f"  {label:38} {cells}")
    write_json(args.json, {"args": vars(args), "rows": rows, "breakdown_ms": parts})


if __name__ == "__main__":
    main()
