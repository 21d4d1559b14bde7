"""Server load: N concurrent Realtime sessions against a local ``funaudiochat serve``, each asking a spoken
question and receiving a spoken answer; per-session real-time factor and time to first audio.

The server runs in this process (a thread) with a pipeline at the demo model's sizes (``--size demo``,
random weights, the end tokens off so every answer has ``--answer-steps`` 5 Hz steps) or a saved folder
(``--model``). Each session is a real client (``openai``'s ``AsyncOpenAI(...).realtime.connect``): it
appends an espeak-ng question (PCM16, 24 kHz), commits, asks for a response and reads the audio deltas.
Sessions start ``--stagger`` seconds apart. The clients run in a process of their own, as remote clients
would (``--clients-in-process``: in the server's, where their event parsing competes with the engine for
the interpreter lock); they still share the cores. The main thread keeps to one torch thread before the
pipeline is built and the engine's worker takes the cores, as ``funaudiochat serve`` does
(``--shared-cores``: the main thread builds with all of them, leaving a second OpenMP team). For each N:

- first audio: seconds from ``response.create`` to the first ``response.output_audio.delta``, p50 / p95;
- RTF: a session's seconds from ``response.create`` to ``response.done`` over its answer's audio seconds
  (max over sessions: < 1 means every session was faster than real time);
- throughput: answer audio seconds of all sessions over the wall seconds from the first request to the last
  ``response.done``.

    python tools/bench/server.py [--sessions 1,4,16] [--size demo | --model FOLDER] [--json FILE]

Goals (issue 13): 16 sessions all faster than real time on 2 cores; throughput at 16 >= 4x that at 1; p95
first audio at 16 <= 2x that of a lone session.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import contextlib
import multiprocessing
import socket
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import openai
import soundfile as sf
import torch
import torchaudio
from _results import write_json  # tools/bench/_results.py, this folder
from aiohttp import web
from funaudiochat.chat import Sampling
from funaudiochat.chat.server.app import make_app
from funaudiochat.chat.server.config import ServerConfig
from funaudiochat.chat.server.engine import Engine, one_torch_thread, reserve_cores_for_engine
from pipeline import build_pipeline  # tools/bench/pipeline.py, this folder

QUESTIONS = [
    ("en-us", "What is seven plus three?"),
    ("en-gb", "Is nine more than four?"),
    ("en-us+f2", "What colour is a banana?"),
    ("en-us+m3", "Count from one to five."),
]


def spoken_questions(folder: Path) -> list[bytes]:
    """The questions as PCM16 at 24 kHz (espeak-ng, four voices)."""
    out = []
    for i, (voice, text) in enumerate(QUESTIONS):
        path = folder / f"q{i}.wav"
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(path), text], check=True)
        samples, rate = sf.read(path, dtype="float32")
        wave = torchaudio.functional.resample(torch.from_numpy(samples), rate, 24000)
        out.append((wave.clamp(-1, 1) * 32767).round().to(torch.int16).numpy().astype("<i2").tobytes())
    return out


def start_server(app: web.Application) -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ready = threading.Event()

    def run():
        one_torch_thread()  # the engine's worker holds the OpenMP team (funaudiochat.chat.server.engine)
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        runner = web.AppRunner(app)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        ready.set()
        loop.run_forever()

    threading.Thread(target=run, daemon=True).start()
    ready.wait(60)
    return f"http://127.0.0.1:{port}"


async def session(url: str, pcm: bytes, delay: float) -> dict:
    await asyncio.sleep(delay)
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="bench")
    async with client.realtime.connect(model="fun-audio-chat") as conn:
        await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})
        await conn.input_audio_buffer.append(audio=base64.b64encode(pcm).decode())
        await conn.input_audio_buffer.commit()
        start = time.perf_counter()
        await conn.response.create()
        first, samples = None, 0
        async for event in conn:
            if event.type == "response.output_audio.delta":
                first = first if first is not None else time.perf_counter() - start
                samples += len(base64.b64decode(event.delta)) // 2
            elif event.type == "response.done":
                break
            elif event.type == "error":
                raise RuntimeError(event.error.message)
        total = time.perf_counter() - start
    return {
        "first_audio_s": first,
        "total_s": total,
        "audio_s": samples / 24000,
        "start": start,
        "end": start + total,
    }


async def load(url: str, questions: list[bytes], n: int, stagger: float) -> dict:
    runs = await asyncio.gather(*[session(url, questions[i % len(questions)], i * stagger) for i in range(n)])
    firsts = sorted(r["first_audio_s"] for r in runs)
    rtfs = [r["total_s"] / r["audio_s"] for r in runs]
    wall = max(r["end"] for r in runs) - min(r["start"] for r in runs)
    return {
        "sessions": n,
        "first_audio_p50_s": statistics.median(firsts),
        "first_audio_p95_s": float(np.percentile(firsts, 95)),
        "rtf_p50": statistics.median(rtfs),
        "rtf_max": max(rtfs),
        "throughput_audio_s_per_s": sum(r["audio_s"] for r in runs) / wall,
        "runs": runs,
    }


def run_load(url: str, questions: list[bytes], n: int, stagger: float) -> dict:
    """One round of ``n`` sessions (``load``), run to its end; the entry point of the client process."""
    return asyncio.run(load(url, questions, n, stagger))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", default="1,4,16", help="concurrent sessions per round")
    parser.add_argument(
        "--size", default="demo", choices=["demo", "bench"], help="random weights at these sizes"
    )
    parser.add_argument("--model", help="a pipeline folder instead")
    parser.add_argument("--answer-steps", type=int, default=16, help="5 Hz steps per answer (16: ~3 s)")
    parser.add_argument("--stagger", type=float, default=0.1, help="seconds between session starts")
    parser.add_argument("--hop", type=int, default=15, help="vocoder hop (codes)")
    parser.add_argument("--hop-growth", type=int, default=1)
    parser.add_argument("--max-hop", type=int)
    parser.add_argument(
        "--audio-lead", type=float, default=1.0, help="ServerConfig.audio_lead_s (negative: no waiting)"
    )
    parser.add_argument("--warm-steps", type=int, default=4, help="Engine.warm_steps (0: join at once)")
    parser.add_argument("--threads", type=int, help="torch threads of the engine (default: one per core)")
    parser.add_argument(
        "--shared-cores",
        action="store_true",
        help="build the pipeline with all threads in the main thread too (two OpenMP teams: the engine's "
        "kernels slow down; see funaudiochat.chat.server.engine)",
    )
    parser.add_argument(
        "--clients-in-process", action="store_true", help="run the clients in the server's process"
    )
    parser.add_argument("--json", default="bench-results/server.json")
    args = parser.parse_args()
    threads = args.threads or torch.get_num_threads()
    if not args.shared_cores:
        reserve_cores_for_engine(threads)

    pipe = build_pipeline(args.size, args.model, args.hop, args.hop_growth, args.max_hop)
    counts = [int(n) for n in args.sessions.split(",")]
    config = ServerConfig(max_sessions=max(counts))
    lead = args.audio_lead if args.audio_lead >= 0 else None
    url = start_server(
        make_app(
            Engine(pipe, max(counts), audio_lead_s=lead, warm_steps=args.warm_steps, threads=threads),
            config,
            Sampling(max_new_tokens=args.answer_steps),
        )
    )
    with tempfile.TemporaryDirectory() as folder:
        questions = spoken_questions(Path(folder))
    with contextlib.ExitStack() as stack:
        if args.clients_in_process:
            rounds = run_load
        else:
            clients = stack.enter_context(
                concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
            )

            def rounds(*round_args):
                return clients.submit(run_load, *round_args).result()

        rounds(url, questions, 1, 0.0)  # warm-up (and the client process's imports)
        rows = [rounds(url, questions, n, args.stagger) for n in counts]
    lone = rows[0]
    what = args.model or f"random weights at the {args.size} sizes"
    print(f"server load ({what}, answers of {args.answer_steps} steps, {threads} engine threads)")
    header = ("sessions", "1st audio p50", "p95", "RTF p50", "RTF max", "audio s/s", "x lone")
    widths = (8, 14, 6, 8, 8, 10, 7)
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, widths, strict=True)))
    for r in rows:
        r["throughput_vs_lone"] = r["throughput_audio_s_per_s"] / lone["throughput_audio_s_per_s"]
        r["first_audio_p95_vs_lone"] = r["first_audio_p95_s"] / lone["first_audio_p95_s"]
        print(
            f"{r['sessions']:>8} {r['first_audio_p50_s']:>14.3f} {r['first_audio_p95_s']:>6.3f} "
            f"{r['rtf_p50']:>8.2f} {r['rtf_max']:>8.2f} {r['throughput_audio_s_per_s']:>10.2f} "
            f"{r['throughput_vs_lone']:>6.1f}x"
        )
    write_json(args.json, {"args": vars(args), "rows": rows})


if __name__ == "__main__":
    main()
