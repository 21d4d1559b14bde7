"""The shipped demo model and the bundled spoken questions (``examples/questions``, voices it never heard in
training): the end-to-end regression test of the README's main job.

Two kinds of check. The issue's goal: every text answer holds the expected words and an independent
recogniser (pocketsphinx, ``funaudiochat.training.demo.listen``) hears them in the spoken answer. The
shipped model meets both on the four bundled questions (since 2026-12-06, evening: the expected words are
heard, the rest of a spoken answer often is not), though it is short of the goals on held-out questions
(its card's evaluation). And the regression check: the model
answers, in text and in speech as the recogniser hears it, exactly as it did when it was shipped
(``bundled_answers.json``, written by ``tools/ship_demo_model.py``), so a change anywhere on the path from
the audio file to the spoken answer that changes a reply is seen."""

import json
from pathlib import Path

import pytest
from funaudiochat.chat import Pipeline
from funaudiochat.chat.demo_eval import bundled_replies
from funaudiochat.chat.loaders import demo_model_folder
from funaudiochat.training.demo.corpus import contains_key

QUESTIONS = Path(__file__).resolve().parents[2] / "examples" / "questions"


@pytest.fixture(scope="module")
def answered():
    """``(folder, items, replies, heard)``: the shipped model asked the bundled questions."""
    folder = demo_model_folder()
    if folder is None:
        pytest.skip("this copy of the package has no demo model (funaudiochat/chat/demo_model)")
    pytest.importorskip("pocketsphinx")
    return folder, *bundled_replies(Pipeline.from_pretrained(folder), QUESTIONS)


def test_bundled_questions_get_the_right_text_answers(answered):
    _, items, replies, _ = answered
    wrong = [
        (i["question"], r.text)
        for i, r in zip(items, replies, strict=True)
        if not contains_key(r.text, i["key"])
    ]
    assert not wrong


def test_an_independent_recogniser_hears_the_spoken_answers(answered):
    _, items, _, heard = answered
    missed = [(i["key"], h) for i, h in zip(items, heard, strict=True) if not contains_key(h, i["key"])]
    assert not missed


def test_the_shipped_model_answers_as_it_did_when_it_was_shipped(answered):
    folder, items, replies, heard = answered
    record = json.loads((folder / "bundled_answers.json").read_text(encoding="utf-8"))
    assert [row["audio"] for row in record] == [item["audio"] for item in items]
    assert [r.text for r in replies] == [row["text"] for row in record]
    assert heard == [row["heard"] for row in record]
    for reply in replies:  # a whole spoken answer at the vocoder's rate
        assert reply.sample_rate == 24000 and reply.audio.numel() > 0.5 * 24000
