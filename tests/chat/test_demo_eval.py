"""The demo evaluation's scoring: word error rate over lower-case words, accuracy per task and split."""

import pytest
from funaudiochat.chat.demo_eval import (
    HeldOutItem,
    _score,
    clustered_standard_error,
    spread_by_phrasing,
    table,
    word_error_rate,
)


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


def _phrased(task, phrasing, index):
    return HeldOutItem(
        f"{task}.{phrasing}.{index}", task, "heldout_phrasing", "q.wav", "q", "a", ("a",), phrasing=phrasing
    )


def test_a_limit_takes_each_task_evenly_from_its_phrasings():
    # the manifest's order: all of one phrasing first, as ids sort
    items = [_phrased("arithmetic", "add", i) for i in range(10)]
    items += [_phrased("arithmetic", "mul", i) for i in range(10)]
    items += [_phrased("arithmetic", "sub", i) for i in range(2)]
    items += [_phrased("fact", "colour", i) for i in range(3)]
    chosen = spread_by_phrasing(items, limit=7)
    counts = {}
    for item in chosen:
        counts[(item.task, item.phrasing)] = counts.get((item.task, item.phrasing), 0) + 1
    assert counts == {
        ("arithmetic", "add"): 3,
        ("arithmetic", "mul"): 2,
        ("arithmetic", "sub"): 2,
        ("fact", "colour"): 3,
    }
    assert chosen == [item for item in items if item in chosen], "the manifest's order is kept"
    assert spread_by_phrasing(items, limit=7) == chosen, "seeded"
    assert spread_by_phrasing(items, limit=7, seed=1) != chosen
    assert len(spread_by_phrasing(items, limit=100)) == len(items)


def test_standard_error_is_clustered_by_phrasing():
    # two phrasings, one always right and one always wrong: the pairs agree within a phrasing
    clusters = [[True] * 10, [False] * 10]
    # mean 0.5; each cluster's summed residual is +-5; sqrt(2 / 1 * 50) / 20 = 0.5
    assert clustered_standard_error(clusters) == pytest.approx(0.5)
    # the same 20 answers mixed within phrasings spread far less
    assert clustered_standard_error([[True, False] * 5, [True, False] * 5]) == pytest.approx(0.0)
    assert clustered_standard_error([[True, False]]) != clustered_standard_error([[True, False]])  # NaN
    items = [_phrased("fact", "colour", 0), _phrased("fact", "colour", 1), _phrased("fact", "sound", 0)]
    score = _score(items, [True, True, False])
    assert score["phrasings"] == 2 and score["per_phrasing"] == {"fact:colour": 1.0, "fact:sound": 0.0}
    assert score["se_by_phrasing"] == pytest.approx(clustered_standard_error([[True, True], [False]]))
    row = next(
        line for line in table({"s2t": score, "asr_wer": 0.5, "asr_n": 2}).splitlines() if "S2T" in line
    )
    assert f"66.7 ± {100 * score['se_by_phrasing']:.1f} % (n=3, 2 phrasings)" in row
    assert "plain fine-tuning" not in table({"asr_wer": 0.5, "asr_n": 2})
    plain = table({"asr_wer": 0.5, "asr_n": 2, "text_plain_ft": score}).splitlines()
    assert any(
        line.startswith("| text accuracy, plain fine-tuning instead of Core-Cocktail | 66.7")
        for line in plain
    )


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


class _EchoAnswers:
    """A pipeline stand-in whose text reply to a written question is ``answers[question]``."""

    def __init__(self, answers):
        self.answers, self.asked = answers, []

    def chat(self, requests):
        from types import SimpleNamespace

        self.asked += [(r.text, r.mode) for r in requests]
        return [SimpleNamespace(text=self.answers[r.text]) for r in requests]


def test_text_knowledge_asks_the_written_held_out_phrasings_only():
    from funaudiochat.chat.demo_eval import text_knowledge

    def item(id, task, split, question, key):
        return HeldOutItem(id, task, split, "q.wav", question, "", (key,), phrasing=id.split(".")[0])

    items = [
        item("p1.a", "arithmetic", "heldout_phrasing", "What is two and two?", "four"),
        item("p2.a", "fact", "heldout_phrasing", "Sky colour?", "blue"),
        item("c1.a", "fact", "heldout_content", "Grass colour?", "green"),  # a content: not asked
        item("t1.a", "asr", "heldout_phrasing", "Write this down.", "down"),  # not a QA task
    ]
    pipe = _EchoAnswers({"What is two and two?": "Two and two is four.", "Sky colour?": "Red."})
    out = text_knowledge(pipe, items)
    assert pipe.asked == [("What is two and two?", "s2t"), ("Sky colour?", "s2t")]
    assert out["text_final"]["n"] == 2 and out["text_final"]["accuracy"] == 0.5
    assert out["text_final"]["per_task"] == {"arithmetic": 1.0, "fact": 0.0}
    assert "text_base" not in out  # no base LLM given
