"""``funaudiochat chat``: answer a spoken (or written) question with text and speech.

    funaudiochat chat question.wav --out answer.wav          # text on stdout, audio in answer.wav
    funaudiochat chat --text "What is two plus two?" --mode s2t
    funaudiochat chat question.wav --mode asr                # the transcript
    funaudiochat chat question.wav --stream --out answer.wav # text and audio as they are made
    funaudiochat chat q.wav --model FOLDER --voice clip.wav --history turns.json --tools tools.json

The timing (time to first text, to first audio, real-time factor) goes to stderr. The audio file is
written beside its target and renamed into place at the end, so a failed run leaves no partial file.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import ExitStack

from funaudiochat.base.atomic import atomic_path
from funaudiochat.base.constants import VOCODER_SAMPLE_RATE


def add_parser(sub) -> None:
    """The ``chat`` subcommand's arguments."""
    p = sub.add_parser(
        "chat",
        help="answer a spoken or written question with text and speech",
        description="Answer a spoken (or written) question: the text on stdout, the speech in --out.",
    )
    p.add_argument("audio", nargs="?", help="the spoken question (WAV, FLAC, ...; any rate)")
    p.add_argument("--text", help="a written question (or text to go with the audio)")
    p.add_argument("--out", help="where to write the spoken answer (WAV, 24 kHz; mode s2s)")
    p.add_argument("--mode", choices=["s2s", "s2t", "asr"], default="s2s", help="default s2s (text + speech)")
    p.add_argument(
        "--model",
        help="pipeline folder (default: the shipped demo model, else a seeded tiny random pipeline)",
    )
    p.add_argument("--voice", help="a speaker of the model's table, or a 1-30 s clip to clone")
    p.add_argument("--history", help="earlier turns: JSON list of {role, text, audio, speech_codes}")
    p.add_argument(
        "--history-speech",
        action="store_true",
        help="feed the history's assistant speech_codes to the model as speech (default: their text only)",
    )
    p.add_argument("--tools", help="function schemas (JSON list); the reply's tool calls are printed")
    p.add_argument("--system", help="system prompt (default: the mode's official one)")
    p.add_argument("--stream", action="store_true", help="print text and write audio as they are made")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (and the random pipeline's)")
    p.add_argument("--max-new-tokens", type=int, default=512, help="longest reply in 5 Hz steps")
    p.add_argument("--text-temperature", type=float, default=0.0, help="0: greedy text (default)")
    p.add_argument("--speech-temperature", type=float, default=0.8, help="default 0.8 (official)")
    p.add_argument("--hop", type=int, default=15, help="speech codes per vocoder chunk (default 15)")
    p.add_argument("--hop-growth", type=int, default=1, help="each later hop this many times longer")
    p.add_argument("--max-hop", type=int, help="longest hop in codes (with --hop-growth > 1)")
    add_pipeline_arguments(p)
    p.set_defaults(func=cmd_chat)


def choose_pipeline(
    model: str | None,
    seed: int,
    command: str,
    quantize: str | None = None,
    plan_speech: bool | None = None,
):
    """The pipeline a command runs: the folder ``model``, else the shipped demo model, else (said on
    stderr) a seeded tiny random one; ``quantize``: "int8" / "int4" weights for its LLM and SRH;
    ``plan_speech``: the pipeline's ``plan_speech`` (None: the folder's)."""
    from .loaders import demo_model_folder
    from .pipeline import load_pipeline, random_pipeline

    if model:
        pipe = load_pipeline(model)
    elif (demo := demo_model_folder()) is not None:
        pipe = load_pipeline(demo)
    else:
        print(
            f"funaudiochat {command}: no --model given; using a seeded tiny random pipeline (seed {seed}): "
            "the answer is noise, the timing is real",
            file=sys.stderr,
        )
        pipe = random_pipeline(seed)
    if quantize:
        pipe.quantize(quantize)
    if plan_speech is not None:
        pipe.plan_speech = plan_speech
    return pipe


def add_pipeline_arguments(parser) -> None:
    """``--quantize int8|int4`` and ``--plan-speech`` / ``--no-plan-speech`` (shared by ``chat`` and
    ``serve``)."""
    parser.add_argument(
        "--quantize",
        choices=["int8", "int4"],
        help="weight-only int8 / int4 for the shared LLM and the SRH (CPU; docs/quantization.md)",
    )
    parser.add_argument(
        "--plan-speech",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="write a spoken reply's text first, then say it (default: the model folder's choice; the "
        "demo model's is on)",
    )


def cmd_chat(args: argparse.Namespace) -> int:
    from .replies import AudioChunk, Done, TextDelta
    from .request import Request, Sampling, history_from_json, read_json

    if args.out and args.mode != "s2s":
        raise ValueError(f"--out writes the spoken answer, which mode {args.mode!r} does not make; use s2s")
    sampling = Sampling(
        text_temperature=args.text_temperature,
        speech_temperature=args.speech_temperature,
        seed=args.seed,
        max_new_tokens=args.max_new_tokens,
    )
    history = history_from_json(read_json(args.history, "history"), args.history) if args.history else ()
    tools = read_json(args.tools, "tools") if args.tools else None
    request = Request(
        audio=args.audio,
        text=args.text,
        history=history,
        mode=args.mode,
        system=args.system,
        tools=tools,
        voice=args.voice,
        sampling=sampling,
        history_speech=args.history_speech,
    )
    pipe = choose_pipeline(args.model, args.seed, "chat", args.quantize, args.plan_speech)
    pipe.set_hops(args.hop, args.hop_growth, args.max_hop)

    with AudioOut(args.out) as out:
        if args.stream:
            reply = None
            for event in pipe.stream(request):
                if isinstance(event, TextDelta):
                    sys.stdout.write(event.text)
                    sys.stdout.flush()
                elif isinstance(event, AudioChunk):
                    out.write(event.samples)
                elif isinstance(event, Done):
                    reply = event.reply
            sys.stdout.write("\n")
        else:
            reply = pipe.chat(request)
            print(reply.text)
            if reply.audio is not None:
                out.write(reply.audio)
    for call in reply.tool_calls:
        print(f"tool call: {call.name}({call.arguments})")
    print(describe(reply.timings, args.out), file=sys.stderr)
    return 0


def describe(timings, out: str | None) -> str:
    """The timing line: to first text, to first audio, total, real-time factor."""

    def ms(value):
        return "-" if value is None else f"{value * 1e3:.0f} ms"

    parts = [f"first text {ms(timings.first_text_s)}", f"first audio {ms(timings.first_audio_s)}"]
    parts.append(f"total {timings.total_s:.2f} s")
    if timings.audio_s:
        parts.append(f"{timings.audio_s:.2f} s of audio, RTF {timings.rtf:.2f}")
        if out:
            parts.append(f"written to {out}")
    return "; ".join(parts)


class AudioOut:
    """A WAV file written piece by piece into a temporary file beside ``path`` and renamed onto it when the
    block ends without an error (removed otherwise; ``funaudiochat.base.atomic.atomic_path``). ``path``
    None: nothing is written."""

    def __init__(self, path: str | None):
        self.path = path
        self.file = None
        self.stack = ExitStack()

    def __enter__(self) -> AudioOut:
        if self.path:
            import soundfile as sf

            tmp = self.stack.enter_context(atomic_path(self.path, suffix=".wav"))
            self.file = self.stack.enter_context(
                sf.SoundFile(tmp, "w", VOCODER_SAMPLE_RATE, 1, subtype="PCM_16", format="WAV")
            )
        return self

    def write(self, samples) -> None:
        if self.file is not None:
            self.file.write(samples.detach().cpu().numpy())

    def __exit__(self, kind, error, trace) -> None:
        self.stack.__exit__(kind, error, trace)  # the file closes, then it is renamed or removed
