"""``/api/chat`` in the official binary protocol, driven by a real WebSocket client (aiohttp) with Opus
from ``sphn``: whole turns, barge-in, restart, sliders, pings, idle and every malformed frame answered by
an error frame while the session goes on."""

import asyncio
import json

import numpy as np
import pytest
import sphn
import torch
import torchaudio
from aiohttp import ClientSession, WSMsgType
from funaudiochat.chat import Request, Sampling, random_pipeline
from funaudiochat.chat.server.app import make_app
from funaudiochat.chat.server.config import ServerConfig
from funaudiochat.chat.server.engine import Engine
from funaudiochat.chat.server.official_ws import sampling_from_query
from funaudiochat.chat.server.protocol import Control, Kind, encode, encode_control, encode_metadata

SAMPLING = Sampling(max_new_tokens=10)


@pytest.fixture(scope="module")
def pipe():
    return random_pipeline(0)


def heard_by_server(pages):
    """What the server makes of the pages: the decoded PCM at the model's 16 kHz."""
    reader = sphn.OpusStreamReader(24000)
    pcm = np.concatenate([np.asarray(reader.append_bytes(p), dtype=np.float32).reshape(-1) for p in pages])
    return torchaudio.functional.resample(torch.from_numpy(pcm), 24000, 16000)


def start_server(serve, pipe, sampling=SAMPLING, **config):
    return serve(make_app(Engine(pipe), ServerConfig(**config), sampling))


async def receive(ws, timeout=60.0):
    msg = await ws.receive(timeout=timeout)
    assert msg.type == WSMsgType.BINARY, f"expected a binary frame, got {msg.type} {msg.data!r}"
    return Kind(msg.data[0]), msg.data[1:]


async def turn(ws, pages, stop_at=None):
    """Send a whole turn; collect the reply until its end_turn metadata (or the first frame of kind
    ``stop_at``). Returns (text, audio pages, the end metadata or None)."""
    await ws.send_bytes(encode_control(Control.START))
    for page in pages:
        await ws.send_bytes(encode(Kind.AUDIO, page))
    await ws.send_bytes(encode_control(Control.END_TURN))
    text, audio = "", []
    while True:
        kind, payload = await receive(ws)
        if kind == Kind.TEXT:
            text += payload.decode()
        elif kind == Kind.AUDIO:
            audio.append(payload)
        elif kind == Kind.METADATA and json.loads(payload)["type"] == "end_turn":
            return text, audio, json.loads(payload)
        elif kind == Kind.ERROR:
            raise AssertionError(f"error frame: {payload.decode()}")
        if kind == stop_at:
            return text, audio, None


def test_a_spoken_turn_gets_text_audio_and_an_explicit_end(serve, pipe, question):
    url = start_server(serve, pipe)
    expected = pipe.chat(Request(audio=heard_by_server(question), sampling=SAMPLING))

    async def main():
        async with ClientSession() as http, http.ws_connect(url + "/api/chat") as ws:
            assert await receive(ws) == (Kind.HANDSHAKE, b"\x00\x00")
            first = await turn(ws, question)
            second = await turn(ws, question)  # with the first turn in the history
            return first, second

    (text, audio, end), (text2, _, end2) = asyncio.run(main())
    assert text.strip() == expected.text == end["text"]
    reader = sphn.OpusStreamReader(24000)
    heard = sum(np.asarray(reader.append_bytes(p)).size for p in audio)
    assert abs(heard - expected.audio.numel()) <= 2 * 960  # Opus frames of 40 ms, the decoder's delay
    assert end["audio_seconds"] == pytest.approx(expected.timings.audio_s, abs=1e-3)
    assert 0 < end["first_audio_s"] <= end["total_s"]
    assert end2["text"] == text2.strip()


def test_bad_frames_get_error_frames_and_the_session_goes_on(serve, pipe, question):
    url = start_server(serve, pipe, max_message_bytes=4096)
    bad = [
        (b"", "empty message"),
        (bytes([9, 1, 2]), "unknown message kind 9"),
        (bytes([0, 0, 0]), "a handshake comes from the server"),
        (bytes([3, 7]), "a control message holds one byte"),
        (bytes([3]), "a control message holds one byte"),
        (bytes([4]) + b"{not json", "metadata is not valid JSON"),
        (bytes([4]) + b"[1, 2]", "metadata must be a JSON object"),
        (encode_metadata({"voice": "x"}), "unknown metadata key"),
        (bytes([2]) + b"hello", "text messages from the client are not supported"),
        (bytes([2]) + b"\xff\xfe", "not valid UTF-8"),
        (bytes([1]), "audio message without Opus data"),
        (bytes([1]) + b"OggS", "audio outside a turn"),
        (encode_control(Control.END_TURN), "control end_turn without a turn"),
        (bytes([1]) + bytes(5000), "over the limit of 4096 bytes"),
        ("a text WebSocket message", "text WebSocket messages are not part of this protocol"),
    ]

    async def main():
        async with ClientSession() as http, http.ws_connect(url + "/api/chat") as ws:
            await receive(ws)
            errors = []
            for frame, _ in bad:
                await (ws.send_str(frame) if isinstance(frame, str) else ws.send_bytes(frame))
                errors.append(await receive(ws))
            # garbage in a turn decodes to nothing: the turn has no audio
            await ws.send_bytes(encode_control(Control.START))
            await ws.send_bytes(encode(Kind.AUDIO, b"garbage that is not Opus"))
            await ws.send_bytes(encode_control(Control.PAUSE))
            errors.append(await receive(ws))
            return errors, await turn(ws, question)

    errors, (text, audio, end) = asyncio.run(main())
    for (kind, payload), (_, message) in zip(errors, bad, strict=False):
        assert kind == Kind.ERROR and message in payload.decode(), payload
    assert errors[-1][0] == Kind.ERROR and "too little" in errors[-1][1].decode()
    assert end is not None and audio


def test_start_interrupts_a_reply_and_restart_clears_the_history(serve, pipe, question):
    url = start_server(serve, pipe, sampling=Sampling(max_new_tokens=80))  # long enough to interrupt

    async def main():
        async with ClientSession() as http, http.ws_connect(url + "/api/chat") as ws:
            await receive(ws)
            await turn(ws, question, stop_at=Kind.TEXT)  # the reply has begun
            await ws.send_bytes(encode_control(Control.START))  # barge in
            kinds = []
            while True:
                kind, payload = await receive(ws)
                kinds.append(kind)
                if kind == Kind.METADATA:
                    interrupted = json.loads(payload)
                    break
            text, audio, end = await turn(ws, question)
            await ws.send_bytes(encode_control(Control.RESTART))
            restarted = json.loads((await receive(ws))[1])
            await ws.send_bytes(encode_metadata({"system_prompt": "Answer in one word."}))
            return interrupted, end, restarted

    interrupted, end, restarted = asyncio.run(main())
    assert interrupted == {"type": "interrupted"}
    assert end is not None and restarted == {"type": "restarted"}


def test_sliders_set_the_sampling_and_bad_ones_are_named(serve, pipe, question):
    query = {"text_temperature": "0.7", "text_topk": "25", "audio_temperature": "0.5", "audio_topk": "100"}
    query |= {"repetition_penalty": "1.1", "repetition_penalty_context": "64", "pad_mult": "2"}
    query |= {"text_seed": "5", "audio_seed": "9"}
    sampling = sampling_from_query(query, SAMPLING)
    assert (sampling.text_temperature, sampling.text_top_k, sampling.speech_temperature) == (0.7, 25, 0.5)
    assert (sampling.speech_top_k, sampling.repetition_penalty, sampling.repetition_window) == (100, 1.1, 64)
    assert sampling.sil_scale == 2.0 and sampling.seed == 5 * 1_000_003 + 9
    assert sampling.max_new_tokens == SAMPLING.max_new_tokens
    url = start_server(serve, pipe)
    expected = pipe.chat(Request(audio=heard_by_server(question), sampling=sampling))

    async def main(params):
        async with ClientSession() as http, http.ws_connect(url + "/api/chat", params=params) as ws:
            kind, payload = await receive(ws)
            if kind == Kind.ERROR:
                return payload.decode(), (await ws.receive()).type
            return await turn(ws, question)

    text, _, _ = asyncio.run(main(query))
    assert text.strip() == expected.text
    message, closing = asyncio.run(main({"text_topk": "many"}))
    assert "query parameter text_topk must be an integer, got 'many'" in message
    assert closing in (WSMsgType.CLOSE, WSMsgType.CLOSED)
    message, _ = asyncio.run(main({"audio_temperature": "-1"}))
    assert "speech_temperature must be a number >= 0" in message


def test_idle_sessions_get_pings_then_close(serve, pipe):
    url = start_server(serve, pipe, ping_interval_s=0.2, idle_timeout_s=1.5)

    async def main():
        async with ClientSession() as http, http.ws_connect(url + "/api/chat") as ws:
            await receive(ws)
            kinds = []
            while True:
                msg = await ws.receive(timeout=10)
                if msg.type != WSMsgType.BINARY:
                    return kinds, msg
                kinds.append((Kind(msg.data[0]), msg.data[1:]))

    kinds, last = asyncio.run(main())
    assert kinds.count((Kind.PING, b"")) >= 3
    assert kinds[-1][0] == Kind.ERROR and "no message for 1.5 s" in kinds[-1][1].decode()
    assert last.type in (WSMsgType.CLOSE, WSMsgType.CLOSED)


def test_an_api_key_is_required_when_set(serve, pipe):
    url = start_server(serve, pipe, api_key="sesame")

    async def main():
        async with ClientSession() as http:
            async with http.get(url + "/api/chat") as response:
                refused = response.status, await response.json()
            async with http.ws_connect(url + "/api/chat", params={"api_key": "sesame"}) as ws:
                return refused, await receive(ws)

    (status, body), handshake = asyncio.run(main())
    assert status == 401 and "API key" in body["error"]["message"]
    assert handshake == (Kind.HANDSHAKE, b"\x00\x00")


def test_eight_staggered_sessions_each_get_what_they_get_alone(serve, pipe, question):
    """Eight clients start 50 ms apart with their own seeds (their replies differ); one more hangs up
    mid-answer. Each of the eight gets the reply it gets alone."""
    url = start_server(serve, pipe)
    heard = heard_by_server(question)
    queries = [{"text_temperature": "0.9", "text_seed": str(100 + i)} for i in range(8)]
    expected = [
        pipe.chat(Request(audio=heard, sampling=sampling_from_query(q, SAMPLING))).text for q in queries
    ]

    async def client(http, query, delay, hang_up=False):
        await asyncio.sleep(delay)
        async with http.ws_connect(url + "/api/chat", params=query) as ws:
            await receive(ws)
            if hang_up:
                await turn(ws, question, stop_at=Kind.TEXT)
                return None
            text, _, end = await turn(ws, question)
            return text.strip()

    async def main():
        async with ClientSession() as http:
            runs = [client(http, q, 0.05 * i) for i, q in enumerate(queries)]
            runs.append(client(http, {"text_seed": "7"}, 0.12, hang_up=True))
            return await asyncio.gather(*runs)

    got = asyncio.run(main())
    assert got[:8] == expected and len(set(expected)) > 1


def test_a_client_that_does_not_keep_up_is_closed(serve, pipe, question, monkeypatch):
    from aiohttp import web

    send_bytes = web.WebSocketResponse.send_bytes

    async def slow_network(ws, data, *args, **kwargs):  # each frame takes 0.5 s to reach the client
        await asyncio.sleep(0.5)
        if not ws.closed:
            await send_bytes(ws, data, *args, **kwargs)

    # the server's frames then wait however fast the reply is made (without it, whether two frames ever
    # waited at once depended on how busy the machine was)
    monkeypatch.setattr(web.WebSocketResponse, "send_bytes", slow_network)
    url = start_server(serve, pipe, queue_size=1)  # no frame may wait

    async def main():
        async with ClientSession() as http, http.ws_connect(url + "/api/chat") as ws:
            await ws.send_bytes(encode_control(Control.START))
            for page in question:
                await ws.send_bytes(encode(Kind.AUDIO, page))
            await ws.send_bytes(encode_control(Control.END_TURN))
            while True:
                msg = await ws.receive(timeout=60)
                if msg.type != WSMsgType.BINARY:
                    return msg

    last = asyncio.run(main())
    assert last.type in (WSMsgType.CLOSE, WSMsgType.CLOSED) and last.extra == "client too slow"
