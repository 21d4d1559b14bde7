"""The pocketsphinx judge of spoken answers (funaudiochat.training.demo.listen) on espeak-ng speech: it hears
the key words of most answers, hears a wrong answer as said, hears no key in noise or silence, and names the
words it has no pronunciation for."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

pytest.importorskip("pocketsphinx")  # a test extra: `bash tools/setup.sh test` installs it

from funaudiochat.training.demo.listen import Recognizer, words_of  # noqa: E402

PHRASES = [
    "Seven plus three is ten.",
    "Yes, nine is more than two.",
    "One, two, three, four, five.",
    "Twenty minus six is fourteen.",
    "A flamingo is pink.",
    "No, seventeen is bigger than zero.",
    "The opposite of soft is hard.",
    "Ten minus eight is two.",
    "That is a mouse.",
    "Fourteen times eleven equals one hundred fifty four.",
    "I counted eleven owls today.",
    "You have five left.",
    "An ant walks on six legs.",
    "Let me check the weather in Cairo.",
    "Ten, nine, eight, seven, six.",
    "Eight and thirteen make twenty one.",
    "Three is smaller.",
    "Twenty is greater.",
    "Yes, seven is less than fourteen.",
    "Fifteen plus seven is twenty two.",
    "The sky is blue.",
    "Four times five is twenty.",
    "No, two is less than nine.",
    "A spider has eight legs.",
    "Twelve divided by three is four.",
    "The sum of six and six is twelve.",
    "Snow is white.",
    "Nineteen is odd.",
    "The capital of France is Paris.",
    "Zero and zero make zero.",
]

# (spoken answer, its key word). Measured (pocketsphinx 5.1.1, espeak-ng en-us+f3 at 160 words/min): 5 of 6
# heard; "four" of the division comes out as "smaller".
ANSWERS = [
    ("Seven plus three is ten.", "ten"),
    ("Yes, nine is more than two.", "yes"),
    ("One, two, three, four, five.", "five"),
    ("Twenty minus six is fourteen.", "fourteen"),
    ("A spider has eight legs.", "eight"),
    ("Twelve divided by three is four.", "four"),
]


@pytest.fixture(scope="module")
def recognizer() -> Recognizer:
    return Recognizer(PHRASES)


@pytest.fixture(scope="module")
def said(espeak, tmp_path_factory):
    """``said(text)`` -> (float32 waveform, rate) of espeak-ng saying ``text`` (fails without espeak-ng)."""
    folder = tmp_path_factory.mktemp("listen")

    def say(text: str) -> tuple[np.ndarray, int]:
        path = espeak(text, folder / f"{'_'.join(words_of(text))}.wav", "en-us+f3", 160)
        audio, rate = sf.read(str(path), dtype="float32")
        return audio, rate

    return say


def test_words_of():
    assert words_of("Yes, nine is more than two.") == ["yes", "nine", "is", "more", "than", "two"]
    assert words_of("  'Don't' -- stop!") == ["don't", "stop"]


def test_hears_the_key_of_most_answers(recognizer, said):
    heard = {text: recognizer.transcribe(*said(text)) for text, _ in ANSWERS}
    hits = [key in heard[text].split() for text, key in ANSWERS]
    assert sum(hits) >= 5, heard
    for text in heard.values():  # lower-case vocabulary words joined by single spaces
        assert text == " ".join(text.split()) and set(text.split()) <= recognizer.vocabulary


def test_hears_a_wrong_answer_as_said(recognizer, said):
    """The language model of the phrases does not turn a wrong answer into the right one."""
    heard = recognizer.transcribe(*said("Seven plus three is eleven.")).split()
    assert "eleven" in heard and "ten" not in heard, heard


def test_input_forms_agree(recognizer, said):
    audio, rate = said("Seven plus three is ten.")
    as_numpy = recognizer.transcribe(audio, rate)
    assert recognizer.transcribe(torch.from_numpy(audio)[None], rate) == as_numpy
    assert recognizer.transcribe(np.zeros(0, np.float32), rate) == ""
    with pytest.raises(ValueError, match="mono waveform"):
        recognizer.transcribe(np.zeros((2, 100), np.float32), rate)


def test_no_key_in_noise_or_silence(recognizer):
    keys = {key for _, key in ANSWERS}
    rng = np.random.default_rng(0)
    for audio in (
        np.zeros(32_000, np.float32),
        (0.1 * rng.standard_normal(32_000)).astype(np.float32),
        rng.uniform(-0.5, 0.5, 32_000).astype(np.float32),
    ):
        heard = recognizer.transcribe(audio, 16_000).split()
        assert not keys & set(heard), heard


def test_unknown_words_are_named():
    with pytest.raises(ValueError, match=r"pocketsphinx dictionary: 10, zorblax$"):
        Recognizer(["Seven plus three is ten.", "The zorblax says 10."])
    with pytest.raises(ValueError, match="at least one phrase"):
        Recognizer(["...", ""])
