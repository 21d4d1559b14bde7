"""The ``funaudiochat`` command. Each subcommand is one function ``cmd_<name>`` plus its parser.

funaudiochat chat question.wav --out answer.wav    # a spoken answer (chat_command.py)
funaudiochat serve --model FOLDER                  # the streaming server (serve_command.py)
funaudiochat import-official --fac FAC --cosyvoice CV3 --out FOLDER  (import_official.py)
funaudiochat export-vllm --model FOLDER --out VLLM_FOLDER        # for `vllm serve` (export_vllm.py)
funaudiochat tokenize question.wav                 # print the 25 Hz speech codes
funaudiochat tokenize question.wav --format npy --out codes.npy --weights tok.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import chat_command, export_vllm, import_official, serve_command


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


def read_tokens(path: str) -> np.ndarray:
    """Speech tokens from a ``.npy`` file (any integer array) or a text file (integers separated by
    whitespace or commas)."""
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{path}: token file not found")
    if file.suffix == ".npy":
        try:
            tokens = np.load(file, allow_pickle=False)
        except ValueError as err:
            raise ValueError(f"{path}: not a plain numpy array ({err})") from err
        if not np.issubdtype(tokens.dtype, np.integer):
            raise ValueError(f"{path}: tokens must be integers, got dtype {tokens.dtype}")
        return tokens.reshape(-1)
    text = file.read_text().replace(",", " ").split()
    try:
        return np.array([int(t) for t in text], dtype=np.int64)
    except ValueError as err:
        raise ValueError(f"{path}: tokens must be integers separated by spaces or commas ({err})") from err


def cmd_vocode(args: argparse.Namespace) -> int:
    import soundfile as sf
    import torch
    from funaudiochat.vocoder import SpeakerTable
    from funaudiochat.vocoder.token2wav import SAMPLE_RATE, Token2Wav

    tokens = read_tokens(args.tokens)
    if args.flow or args.hift:
        if not (args.flow and args.hift):
            raise ValueError("give both --flow and --hift weights, or neither")
        from funaudiochat.vocoder.loading import load_flow, load_hift

        # sizes from the files' metadata (what the training stages export), else the official sizes
        flow = load_flow(args.flow)
        hift = load_hift(args.hift)
        speakers = SpeakerTable.load(args.speakers) if args.speakers else None
        vocoder = Token2Wav(flow, hift, speakers)
    else:
        vocoder = Token2Wav.random(seed=args.seed)
        print(
            "funaudiochat vocode: no --flow/--hift weights given; using a seeded tiny random vocoder "
            f"(seed {args.seed}). The audio has the right length but carries no speech.",
            file=sys.stderr,
        )
    codes = torch.from_numpy(tokens)
    if args.stream:
        wave = stream_tokens(vocoder, codes, args.speaker, args.hop, args.hop_growth, args.max_hop)
    else:
        wave = vocoder.synthesize(codes, speaker=args.speaker)
    sf.write(args.out, wave.numpy(), SAMPLE_RATE, subtype="PCM_16")
    print(f"{args.out}: {wave.numel() / SAMPLE_RATE:.2f} s at {SAMPLE_RATE} Hz")
    return 0


def stream_tokens(
    vocoder, codes, speaker: str | None, hop: int, hop_growth: int = 1, max_hop: int | None = None
):
    """Feed ``codes`` to a streaming session ``hop`` tokens at a time (as a speech LLM would produce
    them; the session's own hops grow by ``hop_growth`` up to ``max_hop``); report on stderr when the
    first audio came out. Returns the joined audio."""
    import time

    import torch

    if hop < 1:
        raise ValueError(f"--hop must be >= 1 token, got {hop}")
    if hop_growth < 1:
        raise ValueError(f"--hop-growth must be >= 1, got {hop_growth}")
    if hop_growth > 1 and max_hop is None:
        max_hop = 4 * hop
    session = vocoder.stream(speaker=speaker, hop_tokens=hop, hop_growth=hop_growth, max_hop_tokens=max_hop)
    start, first_audio, pieces = time.perf_counter(), None, []
    for i in range(0, len(codes), hop):
        pieces.append(session.push(codes[i : i + hop]))
        if first_audio is None and pieces[-1].numel():
            first_audio = time.perf_counter() - start
    pieces.append(session.finalize())
    total = time.perf_counter() - start
    wave = torch.cat(pieces)
    latency = (
        "no audio before the end" if first_audio is None else f"first audio after {first_audio * 1e3:.0f} ms"
    )
    print(
        f"streamed {len(codes)} tokens in hops of {hop}: {sum(p.numel() > 0 for p in pieces)} audio chunks, "
        f"{latency}, {total:.2f} s in all",
        file=sys.stderr,
    )
    return wave


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

    voc = sub.add_parser(
        "vocode",
        help="turn speech tokens into 24 kHz audio (flow matching + HiFT, CosyVoice3 compatible)",
        description="Turn 25 Hz speech tokens (0..6560; specials 6561..6564 are dropped) into a WAV file.",
    )
    voc.add_argument("tokens", help="tokens as .npy or text (integers separated by spaces or commas)")
    voc.add_argument("--out", required=True, help="output WAV file (24 kHz, 16-bit)")
    voc.add_argument("--speaker", help="speaker name from --speakers (default: the first one)")
    voc.add_argument("--speakers", help="speaker table (.safetensors)")
    voc.add_argument(
        "--flow",
        help="flow weights (.safetensors or CosyVoice3 flow.pt); the size is read from the metadata of "
        "files that have it (the training export), else the official size",
    )
    voc.add_argument("--hift", help="HiFT weights (.safetensors); the size is read as for --flow")
    voc.add_argument("--seed", type=int, default=0, help="seed of the random vocoder used without weights")
    voc.add_argument(
        "--stream",
        action="store_true",
        help="synthesise as a stream: tokens go in --hop at a time, audio comes out chunk by chunk",
    )
    voc.add_argument("--hop", type=int, default=15, help="streaming hop in tokens (default 15)")
    voc.add_argument(
        "--hop-growth",
        type=int,
        default=1,
        help="each streaming hop after the first is this many times longer (default 1: fixed hops)",
    )
    voc.add_argument("--max-hop", type=int, help="longest streaming hop in tokens (default 4 x --hop)")
    voc.set_defaults(func=cmd_vocode)
    chat_command.add_parser(sub)
    serve_command.add_parser(sub)
    import_official.add_parser(sub)
    export_vllm.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, KeyError) as err:
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"funaudiochat {args.command}: error: {message}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
