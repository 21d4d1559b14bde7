"""Spliced sentences: training words in new orders, from training text only."""

import pytest
from funaudiochat.training.demo.number_words import number_to_words
from funaudiochat.training.demo.spliced_speech import (
    SPAN_WORDS,
    SPANS,
    WORDS_PUT_IN,
    renumber_sentences,
    splice_sentences,
)

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


def test_common_words_go_in_at_span_boundaries_and_leave_the_spans_as_they_were():
    plain = splice_sentences(TEXTS, 40, seed=3)
    more = splice_sentences(TEXTS, 40, seed=3, words=["zebra", "quietly"], word_weights=[3.0, 1.0])
    assert more == splice_sentences(TEXTS, 40, seed=3, words=["zebra", "quietly"], word_weights=[3.0, 1.0])
    counts = {"zebra": 0, "quietly": 0}
    for before, after in zip(plain, more, strict=True):
        said = after[:-1].split()
        put_in = [w for w in said if w.lower() in counts]
        assert len(put_in) == WORDS_PUT_IN and after[-1] == before[-1]
        for word in put_in:
            counts[word.lower()] += 1
        # taking the words out again gives the sentence spliced without them
        kept = " ".join(w for w in said if w.lower() not in counts)
        assert kept.lower() == before[:-1].lower()
    assert counts["zebra"] > counts["quietly"] > 0  # drawn by their weights
    with pytest.raises(ValueError, match="word_weights has 1 weights for 2 words"):
        splice_sentences(TEXTS, 3, seed=0, words=["a", "b"], word_weights=[1.0])


def test_common_words_are_the_most_frequent_plain_english_words():
    from funaudiochat.training.demo.english_words import common_words

    words, weights = common_words(300)
    assert len(words) == len(weights) == 300 and len(set(words)) == 300
    assert words[:3] == ["the", "to", "and"] and "when" in words
    assert all(w.isalpha() and w.isascii() and w.islower() for w in words)
    assert weights[0] > weights[-1] > 0
    with pytest.raises(ValueError, match="count must be 1 to 20000"):
        common_words(0)


def test_nothing_to_splice_is_an_error():
    with pytest.raises(ValueError, match="no training sentence of two words or more"):
        splice_sentences(["Hello.", ""], 3, seed=0)


ANSWERS = [
    "Two plus two is four.",
    "Yes, seven is bigger than three.",
    "Red.",
    "Six times six is thirty six.",
]


def test_renumbered_sentences_keep_the_template_and_change_the_numbers():
    from funaudiochat.training.demo.number_words import numbers_in

    exclude = ["Two plus two is four."]
    made = renumber_sentences(ANSWERS, 200, seed=1, exclude=exclude)
    assert made == renumber_sentences(ANSWERS, 200, seed=1, exclude=exclude)
    assert made != renumber_sentences(ANSWERS, 200, seed=2, exclude=exclude)
    assert "Two plus two is four." not in made and "Red." not in made  # excluded; no number to change
    for sentence in made:
        numbers = numbers_in(sentence)
        template = sentence
        for n in sorted(set(numbers), key=lambda n: -len(number_to_words(n))):
            words = number_to_words(n)
            template = template.replace(words.capitalize(), "N").replace(words, "N")
        assert template in {"N plus N is N.", "Yes, N is bigger than N.", "N times N is N."}, sentence
        # a number of 0..20 is replaced by one of 0..20, a larger one (36) by one of 21..36
        assert all(0 <= n <= 20 for n in numbers[:2])
        assert 21 <= numbers[-1] <= 36 if "times" in sentence else 0 <= numbers[-1] <= 20
    assert len(set(made)) > 150


def test_nothing_to_renumber_is_an_error():
    with pytest.raises(ValueError, match="no training sentence with a number"):
        renumber_sentences(["Red.", "Say hello."], 3, seed=0)
    with pytest.raises(ValueError, match="avoid the excluded"):
        renumber_sentences(
            ["Zero."], 5, seed=0, exclude=[number_to_words(n).capitalize() + "." for n in range(21)]
        )


def test_spoken_sentences_are_kept_only_when_said_alike(tmp_path):
    from funaudiochat.training.demo.spliced_speech import speak_sentences

    out = tmp_path / "audio"
    first = speak_sentences(["one two", "three"], out, ["en-us"], [150], seed=0)
    assert [(line["text"], line["voice"], line["speed"]) for line in first] == [
        ("one two", "en-us", 150),
        ("three", "en-us", 150),
    ]
    said = (out / "spliced_00000.wav").read_bytes()
    (out / "marker").touch()  # gone when the folder is spoken again (it is replaced as a whole)
    assert speak_sentences(["one two", "three"], out, ["en-us"], [150], seed=0) == first
    assert (out / "marker").exists()
    for voices, speeds, sentences in (
        (["en-gb"], [150], ["one two", "three"]),
        (["en-gb"], [190], ["one two"]),
    ):
        again = speak_sentences(sentences, out, voices, speeds, seed=0)
        assert not (out / "marker").exists()
        assert [(line["voice"], line["speed"]) for line in again] == [(voices[0], speeds[0])] * len(sentences)
        assert sorted(path.name for path in out.glob("*.wav"))[-1] == f"spliced_{len(sentences) - 1:05d}.wav"
        (out / "marker").touch()
    assert (out / "spliced_00000.wav").read_bytes() != said
