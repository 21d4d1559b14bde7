"""Word-aligned reply text (funaudiochat.training.demo.reply_alignment): slot placement, the proportional
fallback, and pocketsphinx forced alignment on espeak-ng words placed at known times."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

pytest.importorskip("pocketsphinx")  # a test extra: `bash tools/setup.sh test` installs it

from funaudiochat.training.data.records import AssistantSpeech  # noqa: E402
from funaudiochat.training.demo.reply_alignment import (  # noqa: E402
    SIL,
    WordAligner,
    align_replies,
    aligned_text,
    proportional_starts,
)


def one_token_per_letter_pair(piece: str) -> int:
    return max(1, len(piece.strip()) // 2)


def test_aligned_text_places_each_word_at_its_slot():
    # slots are 0.2 s and a word sits one slot after its speech's (the slot predicting the group its first
    # code is in, after the two BOS groups): "seven" (2 tokens) fills slots 1-2, "plus" is wanted at slot 4
    # (0.61 s), "three" at slot 4 too but "plus" (2 tokens) fills 4-5, so "three" follows at 6-7; "is" at
    # 1.65 s -> slot 9
    text = aligned_text("Seven plus three is", [0.0, 0.61, 0.65, 1.65], one_token_per_letter_pair)
    assert text == SIL + "Seven" + SIL + " plus three" + SIL + " is"


def test_aligned_text_at_group_size_one_counts_25_hz_slots_after_the_ten_bos_slots():
    # the same words and times at k = 1: slots are 0.04 s and the BOS delay is 10 of them, so a word sits
    # at slot 9 + 25 * start: "seven" at 9 (fills 9-10), "plus" at 24 (fills 24-25), "three" wanted at 25
    # follows at 26 (fills 26-27), "is" at 9 + 41 = 50
    text = aligned_text("Seven plus three is", [0.0, 0.61, 0.65, 1.65], one_token_per_letter_pair, 1)
    assert text == SIL * 9 + "Seven" + SIL * 13 + " plus three" + SIL * 22 + " is"
    with pytest.raises(ValueError, match="group_size must divide the BOS delay of 10 codes, got 3"):
        aligned_text("one", [0.0], lambda p: 1, 3)


def test_aligned_text_without_gaps_is_the_text_one_slot_late():
    assert aligned_text("one two", [0.0, 0.1], lambda p: 1) == SIL + "one two"


def test_aligned_text_refuses_a_wrong_number_of_starts():
    with pytest.raises(ValueError, match="2 start times for 3 words"):
        aligned_text("one two three", [0.0, 0.5], lambda p: 1)
    with pytest.raises(ValueError, match="start times must be >= 0"):
        aligned_text("one", [-0.1], lambda p: 1)


def test_proportional_starts_follow_the_letters():
    assert proportional_starts("ab abcd", 1.0, 2.0) == [1.0, 1.0 + 3 / 8]


@pytest.fixture(scope="module")
def spaced_words(espeak, tmp_path_factory):
    """espeak-ng words joined with known silences: (waveform, rate, text, true start of each word in s)."""
    folder = tmp_path_factory.mktemp("aligned")
    words, gaps = ["Seven", "plus", "three", "is", "ten."], [0.0, 0.5, 0.2, 0.8, 0.3]
    pieces, starts, at, rate = [], [], 0.0, None
    for word, gap in zip(words, gaps, strict=True):
        audio, rate = sf.read(str(espeak(word, folder / f"{word}.wav", "en-us+f5", 160)), dtype="float32")
        voiced = np.flatnonzero(np.abs(audio) > 0.02)
        audio = audio[voiced[0] : voiced[-1] + 1]  # espeak's own lead-in and tail removed
        pieces += [np.zeros(int(gap * rate), np.float32), audio]
        at += int(gap * rate) / rate
        starts.append(at)
        at += len(audio) / rate
    return np.concatenate(pieces), rate, " ".join(words), starts


def test_forced_alignment_finds_the_word_starts(spaced_words):
    audio, rate, text, truth = spaced_words
    starts = WordAligner().word_starts(audio, rate, text)
    assert starts is not None
    # 10 ms frames; a word's first phone may be ruled silence for a frame or two
    assert np.abs(np.array(starts) - np.array(truth)).max() < 0.08, (starts, truth)


def test_forced_alignment_says_none_when_it_cannot(spaced_words):
    audio, rate, _, _ = spaced_words
    aligner = WordAligner()
    assert aligner.word_starts(audio, rate, "Seven blorptastic three") is None  # not in the dictionary
    assert aligner.word_starts(audio, rate, "...") is None  # no words at all
    with pytest.raises(ValueError, match="mono waveform"):
        aligner.word_starts(np.stack([audio, audio]), rate, "Seven")


def test_align_replies_rewrites_spoken_answers_once(spaced_words, tmp_path):
    audio, rate, text, truth = spaced_words
    path = tmp_path / "answer.wav"
    sf.write(str(path), audio, rate)
    codes = np.zeros(int(len(audio) / rate * 25), np.int16)

    class Conversation:  # only .audios is read
        def __init__(self, *audios):
            self.audios = list(audios)

    spoken = [Conversation(AssistantSpeech(text=text, codes=codes, ref_path=str(path))) for _ in range(2)]
    unknown = Conversation(AssistantSpeech(text="Seven blorptastic.", codes=codes, ref_path=str(path)))
    text_only = Conversation(AssistantSpeech(text=text, codes=None, ref_path=str(path)))
    counts = align_replies([*spoken, unknown, text_only], lambda piece: 1)
    assert counts == {"aligned": 2, "proportional": 1}
    found = WordAligner().word_starts(audio, rate, text)
    assert spoken[0].audios[0].text == spoken[1].audios[0].text == aligned_text(text, found, lambda p: 1)
    assert SIL in spoken[0].audios[0].text  # the 0.8 s pause before "is" leaves empty slots
    spread = proportional_starts("Seven blorptastic.", 0.0, len(codes) / 25)
    assert unknown.audios[0].text == aligned_text("Seven blorptastic.", spread, lambda p: 1)
    assert text_only.audios[0].text == text  # no codes: a text reply, left as is
