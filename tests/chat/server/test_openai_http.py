"""The OpenAI-compatible HTTP endpoints, driven by the official ``openai`` package against a live local
server: chat completions with audio in and out (whole and streamed), text replies, a spoken reply named in
a later history, transcriptions in three formats, the model list, and errors in OpenAI's shape."""

import base64
import io

import numpy as np
import openai
import pytest
import soundfile as sf
from funaudiochat.chat import Request, Sampling, Turn, random_pipeline
from funaudiochat.chat.server.app import make_app
from funaudiochat.chat.server.config import ServerConfig
from funaudiochat.chat.server.engine import Engine
from funaudiochat.chat.server.openai_common import read_audio

SAMPLING = Sampling(max_new_tokens=10)


@pytest.fixture(scope="module")
def pipe():
    return random_pipeline(0)


@pytest.fixture(scope="module")
def wav(tmp_path_factory, espeak):
    return espeak("What is two plus two?", tmp_path_factory.mktemp("q") / "question.wav")


@pytest.fixture
def server(serve, pipe):
    engine = Engine(pipe, max_jobs=2)
    url = serve(make_app(engine, ServerConfig(), SAMPLING))
    return openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0), engine


def audio_part(path) -> dict:
    data = base64.b64encode(path.read_bytes()).decode()
    return {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}


def test_spoken_question_spoken_answer(server, pipe, wav):
    client, _ = server
    voice = pipe.vocoder.speakers.names[0]
    heard = read_audio(wav.read_bytes(), "file", 60)
    expected = pipe.chat(Request(audio=heard, voice=voice, sampling=SAMPLING))
    response = client.chat.completions.create(
        model="fun-audio-chat",
        modalities=["text", "audio"],
        audio={"voice": voice, "format": "wav"},
        messages=[{"role": "user", "content": [audio_part(wav)]}],
    )
    message = response.choices[0].message
    assert message.audio.transcript == expected.text and message.content is None
    samples, rate = sf.read(io.BytesIO(base64.b64decode(message.audio.data)), dtype="float32")
    assert rate == 24000 and samples.shape[0] == expected.audio.numel()
    assert np.abs(samples - expected.audio.numpy()).max() < 2e-4  # 16-bit PCM
    assert response.choices[0].finish_reason == "stop"

    # the spoken reply named by its id in the next request's history: its text and speech codes
    follow = client.chat.completions.create(
        model="fun-audio-chat",
        messages=[
            {"role": "user", "content": [audio_part(wav)]},
            {"role": "assistant", "audio": {"id": message.audio.id}},
            {"role": "user", "content": "And three plus three?"},
        ],
    )
    history = (
        Turn("user", audio=heard),
        Turn("assistant", expected.text, speech_codes=tuple(expected.speech_codes.tolist())),
    )
    again = pipe.chat(
        Request(
            text="And three plus three?", mode="s2t", history=history, history_speech=True, sampling=SAMPLING
        )
    )
    assert follow.choices[0].message.content == again.text


def test_streamed_spoken_answer(server, pipe, wav):
    client, _ = server
    expected = pipe.chat(Request(audio=read_audio(wav.read_bytes(), "file", 60), sampling=SAMPLING))
    stream = client.chat.completions.create(
        model="fun-audio-chat",
        modalities=["text", "audio"],
        audio={"voice": pipe.vocoder.speakers.names[0], "format": "pcm16"},
        messages=[
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": [audio_part(wav)]},
        ],
        stream=True,
    )
    transcript, pcm, finish = "", b"", None
    for chunk in stream:
        audio = chunk.choices[0].delta.audio  # openai's ChoiceDeltaAudio
        if audio is not None:
            transcript += audio.transcript or ""
            pcm += base64.b64decode(audio.data or "")
        finish = chunk.choices[0].finish_reason or finish
    system = Request(
        audio=read_audio(wav.read_bytes(), "file", 60),
        system="You are a helpful assistant.",
        sampling=SAMPLING,
    )
    expected = pipe.chat(system)
    assert transcript.strip() == expected.text and finish == "stop"
    assert len(pcm) == 2 * expected.audio.numel()


def test_text_answer_whole_and_streamed(server, pipe):
    client, _ = server
    expected = pipe.chat(Request(text="Say hello.", mode="s2t", sampling=SAMPLING))
    messages = [{"role": "user", "content": "Say hello."}]
    whole = client.chat.completions.create(model="fun-audio-chat", messages=messages)
    assert whole.choices[0].message.content == expected.text and whole.choices[0].message.audio is None
    pieces = [
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="m", messages=messages, stream=True)
    ]
    assert "".join(pieces).strip() == expected.text


def test_transcriptions_and_models(server, pipe, wav):
    client, _ = server
    expected = pipe.chat(
        Request(audio=read_audio(wav.read_bytes(), "file", 60), mode="asr", sampling=SAMPLING)
    )
    with wav.open("rb") as f:
        assert client.audio.transcriptions.create(model="fun-audio-chat", file=f).text == expected.text
    with wav.open("rb") as f:
        text = client.audio.transcriptions.create(model="fun-audio-chat", file=f, response_format="text")
    assert text.strip() == expected.text
    with wav.open("rb") as f:
        verbose = client.audio.transcriptions.create(
            model="fun-audio-chat", file=f, response_format="verbose_json"
        )
    assert verbose.text == expected.text and verbose.duration == pytest.approx(
        sf.info(wav).duration, abs=0.01
    )
    assert [m.id for m in client.models.list().data] == ["fun-audio-chat"]


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"messages": []}, "messages must be a non-empty list"),
        ({"n": 2}, "n must be 1"),
        ({"modalities": ["audio"]}, "modalities must be"),
        (
            {"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}},
            "unknown voice 'alloy'",
        ),
        ({"modalities": ["text", "audio"], "audio": {"format": "mp3"}}, "audio.format must be one of"),
        (
            {"modalities": ["text", "audio"], "audio": {"format": "wav"}, "stream": True},
            "streamed audio is pcm16",
        ),
        (
            {
                "messages": [
                    {"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "%%%"}}]}
                ]
            },
            "not valid base64",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "input_audio", "input_audio": {"data": "aGVsbG8="}}],
                    }
                ]
            },
            "could not be read as audio",
        ),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "role must be system, user or assistant"),
        (
            {
                "messages": [
                    {"role": "assistant", "audio": {"id": "audio_nope"}},
                    {"role": "user", "content": "hi"},
                ]
            },
            "unknown or expired audio id",
        ),
        ({"temperature": -1}, "text_temperature must be a number >= 0"),
        ({"max_tokens": 0}, "max_new_tokens must be an integer >= 1"),
    ],
)
def test_bad_requests_are_named_in_openai_errors(server, fields, message):
    client, _ = server
    body = {"model": "fun-audio-chat", "messages": [{"role": "user", "content": "hi"}], **fields}
    with pytest.raises(openai.BadRequestError, match=message):
        client.chat.completions.create(**body)


def test_a_busy_server_answers_429(server):
    client, engine = server
    engine.stop()  # the two jobs below wait, holding both places
    jobs = [engine.submit(Request(text="Count.", mode="s2t"), lambda e: None) for _ in range(2)]
    try:
        with pytest.raises(openai.RateLimitError, match="busy: 2 replies"):
            client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    finally:
        for job in jobs:
            engine.cancel(job)
        engine.start()
    assert client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}]).choices
