"""The shipped demo model answers the bundled spoken questions (``examples/questions``, voices it never
heard in training): the text answer holds the expected words, and an independent recogniser (pocketsphinx,
``funaudiochat.training.demo.listen``) hears them in the spoken answer. The end-to-end regression test of
the README's main job."""

import json
from pathlib import Path

import pytest
from funaudiochat.chat import Pipeline, Request, Sampling
from funaudiochat.chat.loaders import demo_model_folder
from funaudiochat.training.demo.corpus import build_corpus, contains_key

QUESTIONS = Path(__file__).resolve().parents[2] / "examples" / "questions"


@pytest.fixture(scope="module")
def answered():
    folder = demo_model_folder()
    if folder is None:
        pytest.skip("this copy of the package has no demo model (funaudiochat/chat/demo_model)")
    pipe = Pipeline.from_pretrained(folder)
    items = [json.loads(line) for line in (QUESTIONS / "questions.jsonl").read_text().splitlines()]
    requests = [
        Request(audio=QUESTIONS / item["audio"], mode="s2s", sampling=Sampling(seed=0)) for item in items
    ]
    return items, pipe.chat(requests)


def test_bundled_questions_get_the_right_text_answers(answered):
    items, replies = answered
    wrong = [
        (i["question"], r.text)
        for i, r in zip(items, replies, strict=True)
        if not contains_key(r.text, i["key"])
    ]
    assert not wrong


def test_an_independent_recogniser_hears_the_spoken_answers(answered):
    pytest.importorskip("pocketsphinx")
    from funaudiochat.training.demo.listen import Recognizer

    items, replies = answered
    answers = sorted({pair.answer for pair in build_corpus(0) if pair.task not in ("tool", "asr")})
    recognizer = Recognizer(answers)
    heard = [recognizer.transcribe(r.audio, r.sample_rate) for r in replies]
    missed = [(i["key"], h) for i, h in zip(items, heard, strict=True) if not contains_key(h, i["key"])]
    assert not missed
