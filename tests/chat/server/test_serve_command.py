"""``funaudiochat serve`` as a user runs it: a process that listens, answers a spoken turn over the
official protocol, and refuses bad settings with their reason."""

import asyncio
import socket
import subprocess
import sys

import torch
from aiohttp import ClientSession
from funaudiochat.chat.cli import main
from funaudiochat.chat.server.protocol import Kind
from test_official_ws import receive, turn


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_server_process_answers_a_turn(question):
    port = free_port()
    command = [sys.executable, "-m", "funaudiochat.chat.cli", "serve", "--port", str(port)]
    process = subprocess.Popen([*command, "--max-new-tokens", "8"], stderr=subprocess.PIPE)
    try:

        async def main():
            async with ClientSession() as http:
                for _ in range(600):  # up to a minute to load and listen
                    try:
                        ws = await http.ws_connect(f"http://127.0.0.1:{port}/api/chat")
                        break
                    except OSError:
                        await asyncio.sleep(0.1)
                async with ws:
                    assert (await receive(ws))[0] == Kind.HANDSHAKE
                    return await turn(ws, question)

        text, audio, end = asyncio.run(main())
        assert end["text"] == text.strip() and audio
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert b"http://127.0.0.1:%d" % port in err


def test_bad_settings_are_named(capsys):
    assert main(["serve", "--port", "70000"]) == 2
    assert "port must lie in [0, 65536)" in capsys.readouterr().err
    assert main(["serve", "--max-sessions", "0"]) == 2
    assert "max_sessions must be > 0" in capsys.readouterr().err
    threads = torch.get_num_threads()
    assert main(["serve", "--threads", "0"]) == 2
    assert "engine_threads must be a whole number >= 1 or None, got 0" in capsys.readouterr().err
    assert torch.get_num_threads() == threads  # refused before this thread was kept to one torch thread
