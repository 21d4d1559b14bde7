"""The spoken-chat pipeline on a seeded tiny random pipeline: offline == streamed, batch == alone,
multi-turn, tool calls, ASR, voice clips, folders, and every bad input named."""

import json

import numpy as np
import pytest
import torch
from funaudiochat.base.rng import seeded
from funaudiochat.chat import (
    AudioChunk,
    Done,
    Pipeline,
    Request,
    Sampling,
    TextDelta,
    Turn,
    load_pipeline,
    random_pipeline,
    save_pipeline,
)
from funaudiochat.chat.voices import clip_speaker, default_embedding
from funaudiochat.drsr import FunAudioChatForConditionalGeneration, PromptPrefix
from funaudiochat.drsr.configuration import tiny_config_for
from funaudiochat.drsr.processing import FunAudioChatProcessor
from funaudiochat.drsr.prompts import ASR_INSTRUCTION, format_tool_call
from reply_checks import assert_same_reply

SHORT = Sampling(max_new_tokens=16)


@pytest.fixture(scope="module")
def pipe() -> Pipeline:
    return random_pipeline(0)


@pytest.fixture(scope="module")
def question(tmp_path_factory, espeak):
    return espeak("What is the weather like today?", tmp_path_factory.mktemp("q") / "question.wav")


@pytest.fixture(scope="module")
def clip(tmp_path_factory, espeak):
    return espeak("This is the voice I would like you to use.", tmp_path_factory.mktemp("v") / "voice.wav")


def streamed(pipe, request):
    events = list(pipe.stream(request))
    assert isinstance(events[-1], Done) and not any(isinstance(e, Done) for e in events[:-1])
    return events, events[-1].reply


def test_offline_and_streamed_replies_are_the_same(pipe, question):
    request = Request(audio=question, sampling=SHORT)
    offline = pipe.chat(request)
    events, reply = streamed(pipe, request)
    assert_same_reply(offline, reply)
    assert offline.speech_codes.numel() > 0 and offline.audio.numel() == offline.speech_codes.numel() * 960
    assert float(offline.audio.pow(2).mean().sqrt()) > 1e-3  # real samples, so the tolerance means something
    chunks = [e.samples for e in events if isinstance(e, AudioChunk)]
    assert len(chunks) >= 3 and torch.equal(torch.cat(chunks), reply.audio)
    # the first audio leaves while the model is still speaking: before the last text step's event
    first_audio = next(i for i, e in enumerate(events) if isinstance(e, AudioChunk))
    assert first_audio < len(events) - 2
    assert "".join(e.text for e in events if isinstance(e, TextDelta)).strip() == reply.text
    timings = reply.timings
    assert 0 < timings.first_text_s <= timings.first_audio_s <= timings.total_s
    assert timings.audio_s == pytest.approx(reply.audio.numel() / 24000) and timings.rtf > 0


def test_a_batch_of_requests_gives_each_its_own_reply(pipe, question):
    requests = [
        Request(audio=question, sampling=Sampling(max_new_tokens=12, seed=1)),
        Request(text="One, two, three.", sampling=Sampling(max_new_tokens=10, seed=2)),
        Request(text="What is the weather like today?", mode="s2t", sampling=Sampling(max_new_tokens=8)),
        Request(
            audio=question,
            sampling=Sampling(max_new_tokens=12, seed=3, text_temperature=0.7),
        ),
    ]
    together = pipe.chat(requests)
    assert len(together) == 4
    for request, reply in zip(requests, together, strict=True):
        assert_same_reply(reply, pipe.chat(request))
    assert together[2].audio is None and together[2].speech_codes.numel() == 0
    assert not torch.equal(together[0].speech_codes, together[1].speech_codes)


def test_the_system_turn_is_computed_once_and_changes_no_reply(pipe, question):
    """A request whose system turn was seen runs only the rest of its prompt (``PromptPrefix``), and
    replies as a pipeline without the cache does; another system prompt gets its own entry."""
    uncached = Pipeline(pipe.model, pipe.processor, pipe.vocoder, pipe.speech_tokenizer, prefix_cache=0)
    pipe.clear_prefix_cache()
    built = []
    original = PromptPrefix.build

    def spy(*args, **kwargs):
        built.append(kwargs["speech"])
        return original(*args, **kwargs)

    requests = [
        Request(audio=question, sampling=SHORT),
        Request(audio=question, sampling=Sampling(max_new_tokens=16, seed=4, text_temperature=0.8)),
        Request(audio=question, mode="s2t", sampling=SHORT),
        Request(text="Say hello.", system="You are a polite assistant.", sampling=SHORT),
    ]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(PromptPrefix, "build", spy)
        for request in requests:
            assert_same_reply(pipe.chat(request), uncached.chat(request))
        _, reply = streamed(pipe, requests[0])
        assert_same_reply(reply, uncached.chat(requests[0]))
    assert built == [True, False, True]  # s2s system turn once, s2t once, the other system prompt once
    assert len(pipe._prefixes) == 3 and not uncached._prefixes
    with pytest.raises(ValueError, match="prefix_cache must be >= 0"):
        Pipeline(pipe.model, pipe.processor, pipe.vocoder, prefix_cache=-1)


def test_history_turns_go_into_the_prompt(pipe, question):
    history = [
        Turn("user", audio=question),
        Turn("assistant", text="It is sunny and warm.", speech_codes=[1, 2, 3]),
        Turn("user", text="And tomorrow?"),
        Turn("assistant", text="Seven."),
    ]
    request = Request(audio=question, history=history, sampling=SHORT)
    prompt, audios = pipe.prompt(request)
    assert prompt.count("<|AUDIO|>") == 2 and len(audios) == 2
    assert "It is sunny and warm." in prompt and "And tomorrow?" in prompt
    assert prompt.index("It is sunny") < prompt.index("And tomorrow?") < prompt.rindex("<|AUDIO|>")
    alone = pipe.chat(Request(audio=question, sampling=SHORT))
    reply = pipe.chat(request)
    assert reply.text_ids != alone.text_ids  # the history changes the answer
    assert_same_reply(reply, streamed(pipe, request)[1])


def test_history_speech_feeds_the_assistant_codes(pipe, question):
    """With history_speech, an assistant turn with codes is speech in the prompt (the model sees its
    codes: other codes, another answer); turns without codes stay text."""

    def request(codes, **kw):
        history = [Turn("user", audio=question), Turn("assistant", text="It is sunny.", speech_codes=codes)]
        return Request(text="And tomorrow?", history=history, sampling=SHORT, **kw)

    spoken = request([1, 2, 3] * 9, history_speech=True)
    prompt, audios = pipe.prompt(spoken)
    assert prompt.count("<|AUDIO|>") == 2 and "It is sunny." not in prompt
    assert audios[1].codes == (1, 2, 3) * 9 and audios[1].text == "It is sunny."
    as_text = pipe.prompt(request([1, 2, 3] * 9))[0]
    assert "It is sunny." in as_text and as_text.count("<|AUDIO|>") == 1
    reply = pipe.chat(spoken)
    other = pipe.chat(request([400, 500, 600] * 9, history_speech=True))
    assert reply.text_ids != other.text_ids or not torch.equal(reply.speech_codes, other.speech_codes)
    assert_same_reply(reply, streamed(pipe, spoken)[1])
    with pytest.raises(ValueError, match="history_speech must be True or False"):
        Request(text="x", history_speech="yes")


def test_tools_use_the_function_calling_prompt_and_calls_are_parsed(pipe, question):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    request = Request(audio=question, tools=tools, sampling=SHORT)
    assert request.mode == "s2t"  # function calling runs in S2T, as the official code does
    prompt, _ = pipe.prompt(request)
    assert "<tools>" in prompt and '"get_weather"' in prompt
    reply = pipe.chat(request)
    assert reply.audio is None
    # the parse of a reply: a tool call in the generated ids comes back as a parsed call
    tokenizer = pipe.processor.tokenizer
    call = format_tool_call("get_weather", {"city": "Paris"})
    ids = tokenizer(call + "<|im_end|>", add_special_tokens=False).input_ids
    parsed = pipe._reply(ids, torch.zeros(0, dtype=torch.long), None, reply.timings)
    assert [(c.name, c.arguments) for c in parsed.tool_calls] == [("get_weather", {"city": "Paris"})]


def test_asr_mode_asks_for_a_transcript_and_skips_the_speech_head(pipe, question, monkeypatch):
    request = Request(audio=question, mode="asr", sampling=SHORT)
    prompt, _ = pipe.prompt(request)
    assert ASR_INSTRUCTION in prompt and "generate text tokens" in prompt

    def fail(*args, **kwargs):
        raise AssertionError("the SRH must not run in ASR mode")

    monkeypatch.setattr(pipe.model.audio_invert_tower, "step", fail)
    reply = pipe.chat(request)
    assert reply.audio is None and reply.speech_codes.numel() == 0 and reply.text_ids


def test_a_voice_clip_prompts_the_vocoder(pipe, question, clip):
    request = Request(audio=question, voice=str(clip), sampling=SHORT)
    reply = pipe.chat(request)
    speaker = clip_speaker(clip, pipe.speech_tokenizer, default_embedding(pipe.vocoder.speakers))
    assert speaker.prompt_tokens.numel() > 25 and speaker.prompt_mel.shape == (
        2 * speaker.prompt_tokens.numel(),
        80,
    )
    expected = pipe.vocoder.synthesize(reply.speech_codes, speaker, chunk_tokens=pipe.hop_tokens)
    torch.testing.assert_close(reply.audio, expected, rtol=0, atol=1e-6)
    plain = pipe.chat(Request(audio=question, sampling=SHORT))
    assert torch.equal(plain.speech_codes, reply.speech_codes)  # the voice changes the audio, not the codes
    assert (plain.audio - reply.audio).abs().max() > 1e-3
    assert_same_reply(reply, streamed(pipe, request)[1])


def test_a_saved_folder_loads_into_the_same_pipeline(pipe, question, tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    folder = save_pipeline(pipe, tmp_path / "pipe")
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "flow.safetensors", "hift.safetensors", "speech_tokenizer_v3.safetensors"} <= names
    assert "README.md" in names and not [n for n in tmp_path.iterdir() if n.name.startswith(".tmp-")]
    capfd.readouterr()
    loaded = load_pipeline(folder)
    # quietly: no "Loading weights" bar, and transformers' own setting is left as it was
    assert "Loading weights" not in capfd.readouterr().err and hf_logging.is_progress_bar_enabled()
    request = Request(audio=question, sampling=SHORT)
    assert_same_reply(pipe.chat(request), loaded.chat(request))
    save_pipeline(pipe, folder)  # replacing an existing folder
    assert {p.name for p in folder.iterdir()} == names


def test_a_group_size_one_pipeline_speaks_one_code_per_step(pipe, question):
    """k = 1 (the LLM at 25 Hz): one <|AUDIO|> slot per speech frame, one speech code per LLM step; spoken
    history too. A model and a processor that group differently are refused."""
    processor = FunAudioChatProcessor(pipe.processor.tokenizer, group_size=1)
    with seeded(0):
        model = FunAudioChatForConditionalGeneration(tiny_config_for(processor)).eval()
    assert model.group_size == 1
    k1 = Pipeline(model, processor, pipe.vocoder, pipe.speech_tokenizer)
    history = [
        Turn("user", audio=question),
        Turn("assistant", text="It is sunny.", speech_codes=[1, 2, 3] * 9),
    ]
    request = Request(
        audio=question, history=history, history_speech=True, sampling=Sampling(max_new_tokens=24)
    )
    inputs = k1._inputs([request])
    assert int((inputs["input_ids"] == processor.token_ids.audio_token_index).sum()) == int(
        inputs["speech_attention_mask"].sum()
    )
    reply = k1.chat(request)
    assert 0 < reply.speech_codes.numel() <= 24 and reply.audio.numel() == reply.speech_codes.numel() * 960
    assert_same_reply(reply, streamed(k1, request)[1])
    with pytest.raises(ValueError, match="model groups 1 speech frames .* but the processor 5"):
        Pipeline(model, pipe.processor, pipe.vocoder)


# -- bad input --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields, message",
    [
        ({}, "a request needs audio, or text that is not empty"),
        ({"text": "   "}, "a request needs audio, or text that is not empty"),
        ({"text": "hi", "mode": "tts"}, "unknown mode 'tts'; use one of s2s, s2t, asr"),
        ({"text": "hi", "mode": "asr"}, "mode 'asr' transcribes audio: give audio"),
        ({"text": "hi", "history": ["hello"]}, r"history\[0\] must be a Turn"),
        (
            {"text": "hi", "tools": [{"description": "no name"}]},
            r'tools\[0\] must be an object with a "name"',
        ),
        ({"text": "hi", "tools": []}, "tools must be a non-empty list"),
    ],
)
def test_bad_requests_are_named(fields, message):
    with pytest.raises(ValueError, match=message):
        Request(**fields)


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"speech_temperature": -1.0}, "speech_temperature must be a number >= 0"),
        ({"text_top_p": 0.0}, r"text_top_p must lie in \(0, 1\]"),
        ({"speech_top_k": -3}, "speech_top_k must be an integer >= 0"),
        ({"repetition_penalty": 0}, "repetition_penalty must be a number > 0"),
        ({"seed": -1}, r"seed must be an integer in \[0, 2\*\*63\)"),
        ({"max_new_tokens": 0}, "max_new_tokens must be an integer >= 1"),
        ({"repetition_window": -2}, "repetition_window must be an integer >= 0"),
        ({"sil_scale": 0.0}, "sil_scale must be a number > 0"),
        ({"plan_max_silence": -1}, "plan_max_silence must be an integer >= 0"),
        ({"plan_max_silence": 1.5}, "plan_max_silence must be an integer >= 0"),
    ],
)
def test_sampling_values_out_of_range_are_named(fields, message):
    with pytest.raises(ValueError, match=message):
        Sampling(**fields)


@pytest.mark.parametrize(
    "turn, message",
    [
        (dict(role="system", text="x"), "role must be one of"),
        (dict(role="assistant"), "an assistant turn needs its text"),
        (dict(role="user"), "a user turn needs text, audio or both"),
        (dict(role="assistant", text="x", speech_codes=[7000]), "speech_codes belong to assistant turns"),
    ],
)
def test_bad_history_turns_are_named(turn, message):
    with pytest.raises(ValueError, match=message):
        Turn(**turn)


def test_voice_and_context_errors_are_named(pipe, question, tmp_path, write_wav):
    with pytest.raises(ValueError, match="unknown voice 'nobody'; the speaker table has 'default'"):
        pipe.chat(Request(audio=question, voice="nobody", sampling=SHORT))
    short = write_wav(tmp_path / "short.wav", np.zeros(8000, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match=r"short.wav: a voice clip must last 1-30 s, got 0.50 s"):
        pipe.chat(Request(audio=question, voice=str(short), sampling=SHORT))
    long = write_wav(tmp_path / "long.wav", np.zeros(16000 * 31, dtype=np.float32), 16000)
    with pytest.raises(ValueError, match=r"a voice clip must last 1-30 s, got 31.00 s"):
        pipe.chat(Request(audio=question, voice=str(long), sampling=SHORT))
    limit = pipe.model.config.text_config.max_position_embeddings
    with pytest.raises(ValueError, match=f"more than the model's context of {limit} positions"):
        pipe.chat(Request(text="hi", sampling=Sampling(max_new_tokens=limit)))
    no_tokenizer = Pipeline(pipe.model, pipe.processor, pipe.vocoder, None)
    with pytest.raises(ValueError, match="needs the speech tokenizer"):
        no_tokenizer.chat(Request(audio=question, voice=str(question), sampling=SHORT))


def test_pipeline_folders_with_missing_or_malformed_files_are_refused(pipe, tmp_path):
    folder = save_pipeline(pipe, tmp_path / "pipe")
    with pytest.raises(ValueError, match="pipeline folder not found"):
        load_pipeline(tmp_path / "nowhere")
    (folder / "flow.safetensors").rename(tmp_path / "flow.safetensors")
    with pytest.raises(
        ValueError, match=r"flow.safetensors: missing; a pipeline folder holds the vocoder's flow"
    ):
        load_pipeline(folder)
    (tmp_path / "flow.safetensors").rename(folder / "flow.safetensors")
    (folder / "hift.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match="hift.safetensors: not a readable safetensors file"):
        load_pipeline(folder)
    (folder / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"config.json: not valid JSON"):
        load_pipeline(folder)
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen3"}))
    with pytest.raises(ValueError, match=r"config.json: model_type must be 'funaudiochat', got 'qwen3'"):
        load_pipeline(folder)
    (folder / "config.json").unlink()
    with pytest.raises(ValueError, match=r"config.json: missing"):
        load_pipeline(folder)


def test_planned_speech_says_the_text_only_reply(pipe, question, tmp_path):
    """With ``plan_speech`` a spoken reply's text is the S2T reply's, written in its own time with
    ``<|sil|>`` between (the model's choice; cut where its speech ends), offline as streamed, alone as in
    a batch; a folder whose generation config asks for it loads with it on."""
    planner = Pipeline(pipe.model, pipe.processor, pipe.vocoder, pipe.speech_tokenizer, plan_speech=True)
    assert not pipe.plan_speech  # a model without the setting does not plan
    sampling = Sampling(max_new_tokens=24, seed=5)
    request = Request(audio=question, sampling=sampling)
    written = pipe.chat(Request(audio=question, mode="s2t", sampling=sampling))
    free = pipe.chat(request)
    planned = planner.chat(request)
    tc = pipe.model.config.text_config
    said = [t for t in planned.text_ids[1:] if t not in (tc.sil_index, tc.audio_eos_index, tc.eos_token_id)]
    assert planned.text_ids[0] == tc.audio_bos_index and len(said) >= 3
    assert said == written.text_ids[: len(said)]
    assert free.text_ids[1 : len(said) + 1] != said  # the random model does not write it by itself
    assert_same_reply(planned, streamed(planner, request)[1])
    other = Request(text="One, two, three.", sampling=Sampling(max_new_tokens=12, seed=2))
    for reply, alone in zip(planner.chat([request, other]), [request, other], strict=True):
        assert_same_reply(reply, planner.chat(alone))
    assert_same_reply(planner.chat(Request(audio=question, mode="s2t", sampling=sampling)), written)

    def layout(**settings) -> str:  # "w" a planned word, "s" a <|sil|>, up to the last word
        waiting = Sampling(max_new_tokens=40, seed=5, sil_scale=1e6, **settings)  # the model would wait
        ids = planner.chat(Request(audio=question, sampling=waiting)).text_ids[1:]
        ends = (tc.audio_eos_index, tc.eos_token_id)
        return "".join("s" if t == tc.sil_index else "w" for t in ids if t not in ends).rstrip("s")

    assert layout().startswith("sssw") and "ssss" not in layout()
    assert layout(plan_max_silence=1).startswith("swsw") and "ss" not in layout(plan_max_silence=1)

    pipe.model.generation_config.plan_speech = True
    try:
        folder = save_pipeline(pipe, tmp_path / "planned")
    finally:
        del pipe.model.generation_config.plan_speech
    loaded = load_pipeline(folder)
    assert loaded.plan_speech and not Pipeline.from_pretrained(folder, plan_speech=False).plan_speech
    assert_same_reply(loaded.chat(request), planned)
    with pytest.raises(ValueError, match="plan_speech must be True, False or None"):
        Pipeline(pipe.model, pipe.processor, pipe.vocoder, plan_speech="yes")
    settings = folder / "generation_config.json"
    settings.write_text(json.dumps({**json.loads(settings.read_text()), "plan_speech": "yes"}))
    with pytest.raises(ValueError, match="generation_config.json: plan_speech must be true or false"):
        load_pipeline(folder)
