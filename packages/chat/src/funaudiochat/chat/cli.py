"""The ``funaudiochat`` command. Each subcommand is one function ``cmd_<name>`` plus its parser.

funaudiochat tokenize question.wav                 # print the 25 Hz speech codes
funaudiochat tokenize question.wav --format npy --out codes.npy --weights tok.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def cmd_tokenize(args: argparse.Namespace) -> int:
    from funaudiochat.tokenizer import SpeechTokenizer, load_audio

    if args.weights:
        tokenizer = SpeechTokenizer.from_safetensors(args.weights).eval()
    else:
        tokenizer = SpeechTokenizer.random(seed=args.seed)
        print(
            "funaudiochat tokenize: no --weights given; using a seeded tiny random tokenizer "
            f"(seed {args.seed}). "
            "Its codes are reproducible but carry no meaning.",
            file=sys.stderr,
        )
    waveforms = [load_audio(path, max_seconds=args.max_seconds) for path in args.audio]
    codes = tokenizer.encode(waveforms)

    if args.format == "text":
        lines = [" ".join(str(c) for c in item.tolist()) for item in codes]
        if len(args.audio) > 1:
            lines = [f"{path}\t{line}" for path, line in zip(args.audio, lines, strict=True)]
        text = "\n".join(lines) + "\n"
        if args.out:
            Path(args.out).write_text(text)
        else:
            sys.stdout.write(text)
        return 0

    # npy: one file per input; with several inputs --out is a directory.
    if len(args.audio) == 1:
        out = Path(args.out) if args.out else Path(args.audio[0]).with_suffix(".codes.npy")
        np.save(out, codes[0].numpy().astype(np.int64))
        print(out)
        return 0
    out_dir = Path(args.out) if args.out else Path(".")
    out_dir.mkdir(parents=True, exist_ok=True)
    for path, item in zip(args.audio, codes, strict=True):
        target = out_dir / (Path(path).stem + ".codes.npy")
        np.save(target, item.numpy().astype(np.int64))
        print(target)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="funaudiochat",
        description="Fun-Audio-Chat: speech in, text and speech out.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    tok = sub.add_parser(
        "tokenize",
        help="turn audio into 25 Hz speech codes (S3Tokenizer V2/V3 compatible)",
        description="Turn audio files into 25 Hz speech codes in [0, 6561).",
    )
    tok.add_argument("audio", nargs="+", help="audio files (WAV, FLAC, OGG, ...; any rate, mixed to mono)")
    tok.add_argument("--format", choices=["text", "npy"], default="text", help="print codes or save .npy")
    tok.add_argument("--out", help="output file (text or npy), or directory for several npy outputs")
    tok.add_argument(
        "--weights", help="tokenizer weights (.safetensors); default: a seeded tiny random model"
    )
    tok.add_argument(
        "--seed", type=int, default=0, help="seed of the random tokenizer used without --weights"
    )
    tok.add_argument("--max-seconds", type=float, default=600.0, help="longest accepted audio (default 600)")
    tok.set_defaults(func=cmd_tokenize)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:
        print(f"funaudiochat {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
