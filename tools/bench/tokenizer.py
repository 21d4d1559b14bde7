"""Speech tokenizer throughput: audio-seconds tokenized per wall-clock second, ours vs ``s3tokenizer``.

Both run the same reduced config with the same random weights on the same espeak-ng speech, in this one
process; each timing includes the log-mel frontend. Batch 1 tokenizes utterances one by one; batch 8
hands 8 utterances of different lengths over at once (the package pads them, we do not). The codes of
both are checked to be identical before anything is timed.

    python tools/bench/tokenizer.py [--width 512] [--layers 6] [--repeats 3] [--json out.json]

Goals (issue 2): >= 1.0x at batch 1 and >= 1.5x at batch 8 against the package's default settings.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import s3tokenizer
import torch
from funaudiochat.tokenizer import SpeechTokenizer, load_audio
from s3tokenizer.model_v3 import ModelConfigV3, S3TokenizerV3

TEXTS = [
    "Hello there.",
    "What is the capital of France?",
    "Seven times eight is fifty six, and nine times nine is eighty one.",
    "Please tell me a short story about a brave little robot who wanted to see the sea.",
    "The quick brown fox jumps over the lazy dog, again and again, until the dog finally wakes up and "
    "chases the fox all the way back into the forest.",
    "Numbers: one, two, three, four, five, six, seven, eight, nine, ten.",
    "In the beginning there was only silence, and then a voice began to speak, slowly at first, then "
    "faster, telling the long history of a small town by a river, its bridges, its markets and its people.",
    "Good morning.",
]


def make_speech(folder: Path) -> list[torch.Tensor]:
    waves = []
    for i, text in enumerate(TEXTS):
        path = folder / f"b{i}.wav"
        subprocess.run(["espeak-ng", "-s", "150", "-w", str(path), text], check=True)
        waves.append(load_audio(path))
    return waves


def reference_codes(model, waves: list[torch.Tensor]) -> list[torch.Tensor]:
    mels = [s3tokenizer.log_mel_spectrogram(w) for w in waves]
    mel, mel_len = s3tokenizer.padding(mels)
    codes, lengths = model.quantize(mel, mel_len)
    return [codes[i, : lengths[i]].long() for i in range(len(waves))]


def interleaved_best_times(fns: dict, repeats: int) -> dict[str, float]:
    """Best wall time of each function; the functions take turns so that drift in machine load hits all
    of them alike."""
    for fn in fns.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=512, help="n_audio_state (head size stays 64)")
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--json", default="bench-results/tokenizer.json")
    args = parser.parse_args()

    torch.manual_seed(0)
    config = ModelConfigV3(n_audio_state=args.width, n_audio_head=args.width // 64, n_audio_layer=args.layers)
    reference = S3TokenizerV3("speech_tokenizer_v3_25hz", config).eval()
    with torch.no_grad():
        reference.quantizer._codebook.project_down.weight.mul_(8.0)
    reference_sdpa = S3TokenizerV3(
        "speech_tokenizer_v3_25hz",
        ModelConfigV3(
            n_audio_state=args.width, n_audio_head=args.width // 64, n_audio_layer=args.layers, use_sdpa=True
        ),
    ).eval()
    reference_sdpa.load_state_dict(reference.state_dict())
    ours = SpeechTokenizer.from_s3tokenizer_state_dict(reference.state_dict()).eval()

    with tempfile.TemporaryDirectory() as tmp:
        waves = make_speech(Path(tmp))
    seconds = sum(w.shape[0] for w in waves) / 16000

    ref_out = reference_codes(reference, waves)
    ours_out = ours.encode(waves)
    mismatches = sum(not torch.equal(a, b) for a, b in zip(ref_out, ours_out, strict=True))
    if mismatches:
        raise SystemExit(f"codes differ from the package on {mismatches} utterances; not timing")

    runs = {
        "s3tokenizer (default)": lambda ws: reference_codes(reference, ws),
        "s3tokenizer (use_sdpa)": lambda ws: reference_codes(reference_sdpa, ws),
        "ours": lambda ws: ours.encode(ws),
    }
    with torch.inference_mode():
        one_by_one = interleaved_best_times(
            {name: (lambda fn=fn: [fn([w]) for w in waves]) for name, fn in runs.items()}, args.repeats
        )
        batched = interleaved_best_times(
            {name: (lambda fn=fn: fn(waves)) for name, fn in runs.items()}, args.repeats
        )
    results = {
        name: {
            "batch1_audio_s_per_s": seconds / one_by_one[name],
            "batch8_audio_s_per_s": seconds / batched[name],
        }
        for name in runs
    }

    base = results["s3tokenizer (default)"]
    print(
        f"speech tokenizer, width {args.width}, {args.layers} layers, {len(waves)} utterances, "
        f"{seconds:.1f} s of audio, {torch.get_num_threads()} threads"
    )
    print(
        f"{'implementation':<24} {'batch 1 (audio s/s)':>20} {'ratio':>7} "
        f"{'batch 8 (audio s/s)':>20} {'ratio':>7}"
    )
    for name, r in results.items():
        r["batch1_ratio"] = r["batch1_audio_s_per_s"] / base["batch1_audio_s_per_s"]
        r["batch8_ratio"] = r["batch8_audio_s_per_s"] / base["batch8_audio_s_per_s"]
        print(
            f"{name:<24} {r['batch1_audio_s_per_s']:>20.1f} {r['batch1_ratio']:>6.2f}x "
            f"{r['batch8_audio_s_per_s']:>20.1f} {r['batch8_ratio']:>6.2f}x"
        )

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "config": {"width": args.width, "layers": args.layers, "heads": args.width // 64},
                "audio_seconds": seconds,
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "machine": platform.processor() or platform.machine(),
                "results": results,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
