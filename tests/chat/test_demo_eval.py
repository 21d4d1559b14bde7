"""The demo evaluation's scoring: word error rate over lower-case words, accuracy per task and split."""

import pytest
from funaudiochat.chat.demo_eval import HeldOutItem, _score, word_error_rate


def test_word_error_rate_counts_edits_over_reference_words():
    assert word_error_rate(["She wore a black hat."], ["she wore a black hat"]) == 0.0
    # one substitution and one deletion over 5 + 2 reference words
    assert word_error_rate(["she wore a red hat", "hello"], ["She wore a black hat.", "Hello there"]) == 2 / 7


def test_scores_are_split_by_task_and_split():
    def item(task, split):
        return HeldOutItem("x", task, split, "q.wav", "q", "a", ("a",))

    items = [
        item("arithmetic", "heldout_phrasing"),
        item("arithmetic", "heldout_content"),
        item("fact", "heldout_phrasing"),
    ]
    score = _score(items, [True, False, True])
    assert score["accuracy"] == 2 / 3 and score["n"] == 3
    assert score["per_task"] == {"arithmetic": 0.5, "fact": 1.0}
    assert score["per_split"] == {"heldout_content": 0.0, "heldout_phrasing": 1.0}


class _HeardLength:
    """A recogniser stand-in that "hears" one word per started second of audio ("one", "two", ...), so
    the score shows which audio reached it and how long it was."""

    WORDS = ["zero", "one", "two", "three", "four", "five", "six"]

    def __init__(self):
        self.calls = []

    def transcribe(self, audio, sample_rate):
        seconds = int(audio.reshape(-1).shape[0] / sample_rate + 0.999)
        self.calls.append(sample_rate)
        return self.WORDS[min(seconds, 6)]


def test_the_speech_ceilings_hear_the_vocoder_and_the_reference_audio(tmp_path):
    import numpy as np
    import soundfile
    from funaudiochat.base.constants import VOCODER_SAMPLE_RATE
    from funaudiochat.chat import Pipeline
    from funaudiochat.chat.demo_eval import speech_ceilings

    pipe = Pipeline.random(seed=0)
    soundfile.write(tmp_path / "a.wav", np.zeros(16000 * 2, dtype=np.float32), 16000)  # 2 s
    codes = tuple(range(30))  # 30 codes at 25 Hz: 1.2 s of speech -> "two"
    items = [
        HeldOutItem("coded", "arithmetic", "heldout_phrasing", "q.wav", "q", "a", ("two",), None, codes),
        HeldOutItem(
            "spoken",
            "fact",
            "heldout_content",
            "q.wav",
            "q",
            "a",
            ("two",),
            None,
            (),
            str(tmp_path / "a.wav"),
        ),
    ]
    heard = _HeardLength()
    out = speech_ceilings(pipe, items, heard)
    assert out["vocoder_round_trip"]["n"] == 1 and out["vocoder_round_trip"]["accuracy"] == 1.0
    assert out["reference_speech"]["n"] == 1 and out["reference_speech"]["accuracy"] == 1.0
    assert heard.calls == [VOCODER_SAMPLE_RATE, 16000]


def test_bad_speech_sampling_is_refused_before_anything_loads(tmp_path, capsys):
    from funaudiochat.chat.demo_eval import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--model", str(tmp_path / "absent"), "--run", str(tmp_path), "--speech-temperature", "-1"])
    assert exit_info.value.code == 2
    assert "speech_temperature must be a number >= 0, got -1.0" in capsys.readouterr().err
