"""``funaudiochat serve --vllm-url``: text-only chat completions go to a vLLM server (the reply is vLLM's,
streamed or whole), spoken replies and tool requests stay on this server's pipeline, and a vLLM that is
down is a 502 in OpenAI's shape. vLLM runs in its own environment (``tests/vllm_plugin/vllm_env.py``)."""

import base64
import sys
from pathlib import Path

import openai
import pytest
from funaudiochat.chat import Sampling, random_pipeline
from funaudiochat.chat.server.app import make_app
from funaudiochat.chat.server.config import ServerConfig
from funaudiochat.chat.server.engine import Engine
from funaudiochat.chat.server.vllm_backend import VLLMBackend

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "vllm_plugin"))
from vllm_env import save_checkpoint, vllm_server  # noqa: E402

SAMPLING = Sampling(max_new_tokens=8)


@pytest.fixture(scope="module")
def vllm(tmp_path_factory, speech_16k):
    """A vLLM server on a tiny checkpoint saved by this project, and a question as a WAV file."""
    folder = tmp_path_factory.mktemp("vllm_backend")
    audios, _ = save_checkpoint(folder, [speech_16k[0]])
    with vllm_server(folder, name="tiny-vllm") as url:
        yield url, audios[0]


def ask(client: openai.OpenAI, wav: Path, **extra):
    data = base64.b64encode(wav.read_bytes()).decode()
    part = {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}
    return client.chat.completions.create(
        model="fun-audio-chat", messages=[{"role": "user", "content": [part]}], max_tokens=8, **extra
    )


def test_text_replies_come_from_vllm_and_spoken_ones_from_here(serve, vllm):
    url, wav = vllm
    direct = openai.OpenAI(base_url=url, api_key="unused", max_retries=0)
    data = base64.b64encode(wav.read_bytes()).decode()
    part = {"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}
    expected = direct.chat.completions.create(
        model="tiny-vllm", messages=[{"role": "user", "content": [part]}], max_tokens=8, temperature=0
    )
    pipe = random_pipeline(0)
    ours = openai.OpenAI(
        base_url=serve(make_app(Engine(pipe, max_jobs=2), ServerConfig(), SAMPLING, vllm_url=url)) + "/v1",
        api_key="unused",
        max_retries=0,
    )
    text = ask(ours, wav, temperature=0)
    assert text.model == "tiny-vllm"  # vLLM's own answer, relayed
    assert text.choices[0].message.content == expected.choices[0].message.content
    streamed = ask(ours, wav, temperature=0, stream=True)
    pieces = [c.choices[0].delta.content or "" for c in streamed if c.choices]
    assert "".join(pieces) == expected.choices[0].message.content
    voice = pipe.vocoder.speakers.names[0]
    spoken = ask(ours, wav, modalities=["text", "audio"], audio={"voice": voice, "format": "wav"})
    assert spoken.model == "fun-audio-chat" and spoken.choices[0].message.audio.data
    tool = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    assert ask(ours, wav, tools=[tool]).model == "fun-audio-chat"  # the official tool prompt is ours


def test_bad_requests_are_refused_here_and_a_vllm_that_is_down_is_a_502(serve, tmp_path, speech_16k):
    import soundfile as sf

    wav = tmp_path / "question.wav"
    sf.write(str(wav), speech_16k[0].numpy(), 16000)
    app = make_app(Engine(random_pipeline(0), max_jobs=2), ServerConfig(), SAMPLING, "http://127.0.0.1:9/v1")
    client = openai.OpenAI(base_url=serve(app) + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.InternalServerError) as down:
        ask(client, wav)
    assert down.value.status_code == 502 and "unreachable" in str(down.value)
    with pytest.raises(openai.BadRequestError, match="modalities"):
        ask(client, wav, modalities=["audio"])
    with pytest.raises(ValueError, match="must start with http"):
        VLLMBackend("127.0.0.1:8001/v1")


def test_which_requests_go_to_vllm():
    takes = VLLMBackend.takes
    assert takes({"messages": []}) and takes({"modalities": ["text"], "messages": []})
    assert not takes({"modalities": ["text", "audio"], "messages": []})
    assert not takes({"tools": [{"type": "function"}], "messages": []})
    assert not takes({"messages": [{"role": "assistant", "audio": {"id": "audio_1"}}]})
