"""``funaudiochat chat``: a spoken question in, the text on stdout, the speech in a WAV file, the timing on
stderr; streamed output equal to offline; clear errors and no partial file."""

import json
import re

import pytest
import soundfile as sf
from funaudiochat.chat import random_pipeline, save_pipeline
from funaudiochat.chat.cli import main

FAST = ["--max-new-tokens", "12"]


@pytest.fixture(autouse=True)
def no_demo_model(monkeypatch, tmp_path_factory):
    """These tests run the seeded random pipeline, as a copy of the package without the demo model does."""
    monkeypatch.setattr("funaudiochat.chat.loaders.DEMO_MODEL", tmp_path_factory.mktemp("no_demo_model"))


@pytest.fixture(scope="module")
def question(tmp_path_factory, espeak):
    return espeak("Hello, how are you?", tmp_path_factory.mktemp("q") / "question.wav")


def test_chat_answers_a_wav_with_text_audio_and_timing(question, tmp_path, capsys):
    out = tmp_path / "answer.wav"
    assert main(["chat", str(question), "--out", str(out), *FAST]) == 0
    captured = capsys.readouterr()
    assert "seeded tiny random pipeline" in captured.err
    assert "first text" in captured.err and "first audio" in captured.err and "RTF" in captured.err
    audio, rate = sf.read(out)
    assert rate == 24000 and audio.shape[0] > 0 and audio.shape[0] % 960 == 0
    assert captured.out.strip()  # the text answer


@pytest.mark.parametrize("scheme", ["int8", "int4"])
def test_quantized_weights_from_the_command_line(question, tmp_path, capsys, scheme, monkeypatch):
    from funaudiochat.chat.pipeline import Pipeline

    used = []
    original = Pipeline.quantize
    monkeypatch.setattr(Pipeline, "quantize", lambda self, s, g=32: used.append(s) or original(self, s, g))
    out = tmp_path / "answer.wav"
    assert main(["chat", str(question), "--out", str(out), "--quantize", scheme, *FAST]) == 0
    assert used == [scheme] and sf.read(out)[0].shape[0] > 0
    assert capsys.readouterr().out.strip()
    with pytest.raises(SystemExit):
        main(["chat", str(question), "--quantize", "int3"])


@pytest.mark.parametrize("hops", [[], ["--hop", "4", "--hop-growth", "4", "--max-hop", "32"]])
def test_streamed_output_equals_offline(question, tmp_path, capsys, hops):
    offline, live = tmp_path / "offline.wav", tmp_path / "stream.wav"
    assert main(["chat", str(question), "--out", str(offline), *FAST, *hops]) == 0
    first = capsys.readouterr().out
    assert main(["chat", str(question), "--out", str(live), "--stream", *FAST, *hops]) == 0
    second = capsys.readouterr().out
    assert first.strip() == second.strip()
    a, _ = sf.read(offline, dtype="int16")
    b, _ = sf.read(live, dtype="int16")
    assert a.shape == b.shape and abs(a.astype(int) - b.astype(int)).max() <= 1


def test_text_question_in_text_mode_with_history_and_a_model_folder(tmp_path, capsys):
    folder = save_pipeline(random_pipeline(1), tmp_path / "model")
    history = tmp_path / "turns.json"
    history.write_text(json.dumps([{"role": "user", "text": "Hi"}, {"role": "assistant", "text": "Hello!"}]))
    args = ["chat", "--text", "What is two plus two?", "--mode", "s2t", "--model", str(folder)]
    assert main([*args, "--history", str(history), *FAST]) == 0
    captured = capsys.readouterr()
    assert "random pipeline" not in captured.err and "first audio -" in captured.err
    spoken = [
        {"role": "user", "text": "Hi"},
        {"role": "assistant", "text": "Hello!", "speech_codes": [7] * 12},
    ]
    history.write_text(json.dumps(spoken))
    assert main([*args, "--history", str(history), "--history-speech", *FAST]) == 0


@pytest.mark.parametrize(
    "content, flag, message",
    [
        ("{not json", "--history", "turns.json: history file is not valid JSON"),
        ('{"role": "user"}', "--history", "the history must be a JSON list of turns"),
        ('[{"role": "user", "txt": "x"}]', "--history", r"turn 0 has unknown keys \['txt'\]"),
        ("[1, 2", "--tools", "turns.json: tools file is not valid JSON"),
        ('[{"no": "name"}]', "--tools", r'tools\[0\] must be an object with a "name"'),
    ],
)
def test_malformed_history_and_tools_files_are_named(question, tmp_path, capsys, content, flag, message):
    bad = tmp_path / "turns.json"
    bad.write_text(content)
    out = tmp_path / "answer.wav"
    assert main(["chat", str(question), flag, str(bad), "--out", str(out), *FAST]) == 2
    assert not list(tmp_path.glob("*.wav"))
    assert re.search(message, capsys.readouterr().err)


def test_a_failure_midway_leaves_no_partial_file(question, tmp_path, capsys, monkeypatch):
    from funaudiochat.chat import batch as batch_module

    real_step = batch_module.decode_step
    calls = {"n": 0}

    def failing_step(model, state):
        calls["n"] += 1
        if calls["n"] == 6:
            raise ValueError("simulated failure in the middle of the reply")
        return real_step(model, state)

    monkeypatch.setattr(batch_module, "decode_step", failing_step)
    out = tmp_path / "answer.wav"
    assert main(["chat", str(question), "--out", str(out), "--stream", *FAST]) == 2
    assert "simulated failure" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # neither the answer nor its temporary file


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--mode", "s2t", "--out", "a.wav"],
            "--out writes the spoken answer, which mode 's2t' does not make",
        ),
        (["--text", ""], "a request needs audio, or text that is not empty"),
        (["--text", "hi", "--speech-temperature", "-1"], "speech_temperature must be a number >= 0"),
        (["--text", "hi", "--model", "nowhere"], "nowhere: pipeline folder not found"),
        (["--text", "hi", "--hop-growth", "2"], "hop_growth 2 needs max_hop_tokens"),
        (["--text", "hi", "--hop", "0"], "hop_tokens must be >= 1"),
    ],
)
def test_chat_errors_are_clear(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    assert main(["chat", *args]) == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.glob("*.wav"))


def test_with_a_shipped_demo_model_chat_answers_with_it(question, tmp_path, capsys, monkeypatch):
    folder = save_pipeline(random_pipeline(5), tmp_path / "demo_model")
    assert main(["chat", str(question), "--model", str(folder), "--out", str(tmp_path / "a.wav"), *FAST]) == 0
    capsys.readouterr()
    monkeypatch.setattr("funaudiochat.chat.loaders.DEMO_MODEL", folder)
    assert main(["chat", str(question), "--out", str(tmp_path / "b.wav"), *FAST]) == 0
    assert "seeded tiny random pipeline" not in capsys.readouterr().err
    assert (sf.read(tmp_path / "a.wav")[0] == sf.read(tmp_path / "b.wav")[0]).all()  # that folder's answer


def test_plan_speech_from_the_command_line(question, tmp_path, capsys, monkeypatch):
    """``--plan-speech`` / ``--no-plan-speech`` set the pipeline's choice; without either the folder's
    stands (the random pipeline: off). The planned answer's text is the S2T answer's."""
    from funaudiochat.chat.pipeline import Pipeline

    seen = []
    original = Pipeline.plans

    def spy(self, requests):
        seen.append(self.plan_speech)
        return original(self, requests)

    monkeypatch.setattr(Pipeline, "plans", spy)
    written = main(["chat", str(question), "--mode", "s2t", *FAST]) == 0 and capsys.readouterr().out
    for flag, planned in [([], False), (["--plan-speech"], True), (["--no-plan-speech"], False)]:
        seen.clear()
        assert main(["chat", str(question), "--out", str(tmp_path / "a.wav"), *FAST, *flag]) == 0
        said = capsys.readouterr().out
        assert seen == [planned]
        if planned:  # the spoken pass writes the plan's text (cut where its speech ends)
            assert said.strip() and written.strip().startswith(said.strip())
