"""tools/experiments/assistant_voice.py: the VOICE:SPEED list is checked, and a voice is scored by what the
real recogniser hears in real espeak-ng speech (a clear voice hears its short answers; an answer whose key
is not said scores zero)."""

import json

import pytest


@pytest.fixture(scope="module")
def voice_module(load_tool):
    with load_tool("tools/experiments/assistant_voice.py") as module:
        yield module


def test_parse_voices(voice_module):
    assert voice_module.parse_voices("en-us+f5:160, en-gb:150") == [("en-us+f5", 160), ("en-gb", 150)]
    for bad in ("en-us", "en-us:fast", ":160", "en-us:20"):
        with pytest.raises(ValueError, match="VOICE:SPEED"):
            voice_module.parse_voices(bad)


def test_score_voice_hears_clear_answers(voice_module, tmp_path):
    from funaudiochat.training.demo.listen import Recognizer

    answers = [
        {"answer": "Two plus three is five.", "key": ["five"]},
        {"answer": "A banana is yellow.", "key": ["yellow"]},
    ]
    recognizer = Recognizer([a["answer"] for a in answers] + ["Seven is more than two."])
    row = voice_module.score_voice("en-us+f5", 160, answers, recognizer, tmp_path)
    assert row["answers"] == 2 and row["key_heard"] == 1.0 and row["exact"] == 1.0
    # keys the speech never says: the recogniser cannot hear them
    wrong = [{"answer": a["answer"], "key": ["seven"]} for a in answers]
    assert voice_module.score_voice("en-us+f5", 160, wrong, recognizer, tmp_path)["key_heard"] == 0.0


def test_main_writes_json(voice_module, tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    pairs = [
        {
            "task": "fact",
            "split": "train",
            "question": "What colour is a banana?",
            "answer": "A banana is yellow.",
            "key": ["yellow"],
        },
        {
            "task": "arithmetic",
            "split": "heldout_phrasing",
            "question": "What is two plus three?",
            "answer": "Two plus three is five.",
            "key": ["five"],
        },
    ]
    (corpus / "corpus.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    out = tmp_path / "voices.json"
    assert voice_module.main(["--corpus", str(corpus), "--voices", "en-us+f5:160", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [v["voice"] for v in result["voices"]] == ["en-us+f5"] and result["voices"][0]["answers"] == 2
