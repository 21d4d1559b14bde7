"""The Realtime API through the official ``openai`` package (``AsyncOpenAI(...).realtime.connect``) against
a live server: a whole spoken turn (append, commit, response; audio and transcript deltas), a turn found by
server-side voice activity detection, a cancel mid-answer, text items and text replies, and bad events
answered by error events while the session goes on."""

import asyncio
import base64

import openai
import pytest
import soundfile as sf
import torch
import torchaudio
from funaudiochat.chat import Request, Sampling, random_pipeline
from funaudiochat.chat.server.app import make_app
from funaudiochat.chat.server.config import ServerConfig
from funaudiochat.chat.server.engine import Engine
from funaudiochat.chat.server.realtime import model_audio

SAMPLING = Sampling(max_new_tokens=10)


@pytest.fixture(scope="module")
def pipe():
    return random_pipeline(0)


@pytest.fixture(scope="module")
def pcm(tmp_path_factory, espeak) -> bytes:
    """A spoken question as the Realtime API carries it: PCM16 at 24 kHz."""
    path = espeak("What is the weather like today?", tmp_path_factory.mktemp("q") / "question.wav")
    samples, rate = sf.read(path, dtype="float32")
    wave = torchaudio.functional.resample(torch.from_numpy(samples), rate, 24000)
    return (wave.clamp(-1, 1) * 32767).round().to(torch.int16).numpy().astype("<i2").tobytes()


def connect(serve, pipe, sampling=SAMPLING, **config):
    url = serve(make_app(Engine(pipe), ServerConfig(**config), sampling))
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key="key")
    return client.realtime.connect(model="fun-audio-chat")


async def until(conn, kind: str, seen: list):
    async for event in conn:
        seen.append(event)
        if event.type == kind:
            return event
        assert event.type != "error", event.error.message


async def no_detection(conn):
    await conn.session.update(session={"type": "realtime", "audio": {"input": {"turn_detection": None}}})


def test_a_spoken_turn_with_audio_and_transcript_deltas(serve, pipe, pcm):
    expected = pipe.chat(
        Request(audio=model_audio(pcm), voice=pipe.vocoder.speakers.names[0], sampling=SAMPLING)
    )

    async def main():
        async with connect(serve, pipe) as conn:
            seen = []
            created = await until(conn, "session.created", seen)
            await no_detection(conn)
            await until(conn, "session.updated", seen)
            for i in range(0, len(pcm), 9600):
                await conn.input_audio_buffer.append(audio=base64.b64encode(pcm[i : i + 9600]).decode())
            await conn.input_audio_buffer.commit()
            await conn.response.create()
            done = await until(conn, "response.done", seen)
            return created, seen, done

    created, seen, done = asyncio.run(main())
    kinds = [e.type for e in seen]
    assert created.session.model == "fun-audio-chat"
    for kind in ("input_audio_buffer.committed", "conversation.item.added", "response.created"):
        assert kind in kinds
    for kind in ("response.output_item.added", "response.content_part.added", "response.output_audio.done"):
        assert kind in kinds
    transcript = "".join(e.delta for e in seen if e.type == "response.output_audio_transcript.delta")
    audio = b"".join(base64.b64decode(e.delta) for e in seen if e.type == "response.output_audio.delta")
    assert transcript.strip() == expected.text
    assert len(audio) == 2 * expected.audio.numel()
    final = next(e for e in seen if e.type == "response.output_audio_transcript.done")
    assert final.transcript == expected.text
    assert (
        done.response.status == "completed" and done.response.output[0].content[0].transcript == expected.text
    )


def test_server_voice_activity_detection_starts_the_response(serve, pipe, pcm):
    silence = bytes(2 * 24000)  # 1 s

    async def main():
        async with connect(serve, pipe) as conn:
            seen = []
            await until(conn, "session.created", seen)
            speech = silence + pcm + silence
            for i in range(0, len(speech), 4800):
                await conn.input_audio_buffer.append(audio=base64.b64encode(speech[i : i + 4800]).decode())
            await until(conn, "response.done", seen)
            return seen

    seen = asyncio.run(main())
    kinds = [e.type for e in seen]
    started = kinds.index("input_audio_buffer.speech_started")
    assert (
        started
        < kinds.index("input_audio_buffer.speech_stopped")
        < kinds.index("input_audio_buffer.committed")
    )
    assert kinds.index("input_audio_buffer.committed") < kinds.index("response.created")
    begin = next(e for e in seen if e.type == "input_audio_buffer.speech_started").audio_start_ms
    end = next(e for e in seen if e.type == "input_audio_buffer.speech_stopped").audio_end_ms
    assert 500 <= begin <= 1100 and end - begin >= 1000  # the question starts after 1 s of silence


def test_cancel_mid_answer_then_text_items_and_a_text_reply(serve, pipe, pcm):
    async def main():
        async with connect(serve, pipe, sampling=Sampling(max_new_tokens=80)) as conn:
            seen = []
            await until(conn, "session.created", seen)
            await no_detection(conn)
            await conn.input_audio_buffer.append(audio=base64.b64encode(pcm).decode())
            await conn.input_audio_buffer.commit()
            await conn.response.create()
            await until(conn, "response.output_audio.delta", seen)
            await conn.response.cancel()
            cancelled = await until(conn, "response.done", seen)
            await conn.conversation.item.create(
                item={
                    "type": "message",
                    "role": "user",
                    "content": [{"type": "input_text", "text": "Say hello."}],
                }
            )
            await conn.response.create(response={"output_modalities": ["text"]})
            text_done = await until(conn, "response.done", seen)
            return cancelled, text_done, seen

    cancelled, text_done, seen = asyncio.run(main())
    assert cancelled.response.status == "cancelled"
    assert text_done.response.status == "completed"
    text = "".join(e.delta for e in seen if e.type == "response.output_text.delta")
    assert text.strip() == text_done.response.output[0].content[0].text


def test_bad_events_get_error_events_and_the_session_goes_on(serve, pipe, pcm):
    bad = [
        ({"type": "input_audio_buffer.commit"}, "buffer too small"),
        ({"type": "input_audio_buffer.append", "audio": "%%%"}, "not valid base64"),
        ({"type": "session.update", "session": {"voice_speed": 2}}, "unknown session field"),
        (
            {"type": "session.update", "session": {"output_modalities": ["video"]}},
            "output_modalities must be",
        ),
        (
            {"type": "session.update", "session": {"audio": {"output": {"voice": "alloy"}}}},
            "unknown voice 'alloy'",
        ),
        ({"type": "response.cancel"}, "no response is in progress"),
        ({"type": "response.create"}, "nothing to respond to"),
        (
            {"type": "conversation.item.create", "item": {"type": "message", "role": "user", "content": []}},
            "non-empty 'content'",
        ),
        ({"type": "dance"}, "unknown event type 'dance'"),
    ]

    async def main():
        async with connect(serve, pipe) as conn:
            seen = []
            await until(conn, "session.created", seen)
            errors = []
            for event, _ in bad:
                await conn.send(event)
                async for reply in conn:
                    if reply.type == "error":
                        errors.append(reply.error.message)
                        break
            await no_detection(conn)
            await conn.input_audio_buffer.append(audio=base64.b64encode(pcm).decode())
            await conn.input_audio_buffer.commit()
            await conn.response.create()
            return errors, await until(conn, "response.done", seen)

    errors, done = asyncio.run(main())
    for got, (_, message) in zip(errors, bad, strict=True):
        assert message in got
    assert done.response.status == "completed"
