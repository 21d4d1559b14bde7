"""Spliced sentences: training words in new orders, from training text only."""

import pytest
from funaudiochat.training.demo.spliced_speech import SPAN_WORDS, SPANS, splice_sentences

TEXTS = ["What is two plus two?", "Add one to five.", "Is seven more than three?", "Say hello to Tuesday."]


def test_spliced_sentences_are_spans_of_the_training_sentences_and_seeded():
    made = splice_sentences(TEXTS, 50, seed=3)
    assert made == splice_sentences(TEXTS, 50, seed=3) and made != splice_sentences(TEXTS, 50, seed=4)
    words = {w.strip(".?").lower() for text in TEXTS for w in text.split()}
    for sentence in made:
        assert sentence[0].isupper() and sentence[-1] in ".?"
        said = sentence[:-1].split()
        assert {w.lower() for w in said} <= words
        assert SPANS[0] * SPAN_WORDS[0] <= len(said) <= SPANS[1] * SPAN_WORDS[1]
    assert any("Tuesday" in sentence for sentence in made)  # a name keeps its capital
    assert len(set(made)) > 40 and len(set(made) - set(TEXTS)) > 40  # new orders, seldom a training one


def test_nothing_to_splice_is_an_error():
    with pytest.raises(ValueError, match="no training sentence of two words or more"):
        splice_sentences(["Hello.", ""], 3, seed=0)
