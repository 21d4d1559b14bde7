"""Shared by the server tests: ``serve(app)`` runs an aiohttp application on a free local port in a
thread of its own and gives its base URL (it stops at the end of the test); ``question`` is a spoken
question as a client sends it. This folder goes on the import path (the tests share helpers)."""

import asyncio
import socket
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import sphn
import torch
import torchaudio
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture(scope="module")
def question(tmp_path_factory, espeak):
    """The spoken question as the client sends it: Ogg/Opus pages of 40 ms frames at 24 kHz."""
    path = espeak("What is the weather like today?", tmp_path_factory.mktemp("q") / "question.wav")
    samples, rate = sf.read(path, dtype="float32")
    wave = torchaudio.functional.resample(torch.from_numpy(samples), rate, 24000).numpy()
    writer = sphn.OpusStreamWriter(24000)
    pages = [
        writer.append_pcm(np.ascontiguousarray(wave[i : i + 960])) for i in range(0, len(wave) - 959, 960)
    ]
    return [p for p in pages if p]


@pytest.fixture
def serve():
    stops = []

    def start(app: web.Application) -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        loop = asyncio.new_event_loop()
        runner = web.AppRunner(app)
        ready = threading.Event()

        def run():
            asyncio.set_event_loop(loop)
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(runner.cleanup())
            loop.close()

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        assert ready.wait(30), "the server did not start"
        stops.append((loop, thread))
        return f"http://127.0.0.1:{port}"

    yield start
    for loop, thread in stops:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
