"""The slots of a planned spoken reply's words, fitted on aligned replies: layout, file, errors."""

import json

import pytest
from funaudiochat.drsr.speech_timing import FILE, SIL, SpeechTiming, word_slots
from funaudiochat.drsr.text_tokenizer import train_text_tokenizer

REPLIES = [
    f"{SIL}Two plus two{SIL} is four.",
    f"{SIL}Two plus three{SIL}{SIL} is five.",
    f"{SIL}{SIL}Four{SIL} is more.",
]


@pytest.fixture(scope="module")
def tokenizer():
    plain = [r.replace(SIL, " ") for r in REPLIES] + ["seventeen hippopotamus"]
    return train_text_tokenizer(plain, vocab_size=300)


def test_word_slots_are_where_each_word_starts(tokenizer):
    slots = word_slots(REPLIES[0], tokenizer)
    ids = tokenizer.encode(REPLIES[0], add_special_tokens=False)
    assert len(slots) == 5 and slots[0] == 1 and ids[0] == tokenizer.convert_tokens_to_ids(SIL)
    assert all(tokenizer.decode([ids[s]]).strip()[:1].isalpha() for s in slots)


def test_the_fit_learns_each_words_advance_and_lays_a_reply_out(tokenizer):
    timing = SpeechTiming.fit(REPLIES, tokenizer)
    assert timing.first_slot == 1  # the median of 1, 1, 2
    # "plus" is followed by its next word 1 slot later in both replies, "three" by "is" 3 slots later
    assert timing.advance["plus"] == 1.0 and timing.advance["three"] == 3.0
    # "Two" -> "plus" twice 1 slot, "two" -> "is" once 2 slots (one lower-cased word)
    assert timing.advance["two"] == pytest.approx((1 + 1 + 2) / 3)
    ids = timing.layout("Two plus three is five.", tokenizer)
    slots = word_slots(tokenizer.decode(ids), tokenizer)
    assert slots[0] == 1 and slots[2] - slots[1] >= 1 and slots[3] - slots[2] == 3
    assert tokenizer.decode(ids).replace(SIL, "") == "Two plus three is five."
    # a word the table lacks advances by its letters
    unknown = timing.layout("hippopotamus seventeen", tokenizer)
    gap = word_slots(tokenizer.decode(unknown), tokenizer)
    assert gap[1] - gap[0] >= round(timing.intercept + timing.per_char * 13) - 1


def test_the_table_is_saved_and_loaded_and_a_bad_file_is_named(tokenizer, tmp_path):
    timing = SpeechTiming.fit(REPLIES, tokenizer)
    assert SpeechTiming.load(tmp_path) is None
    timing.save(tmp_path)
    assert SpeechTiming.load(tmp_path) == timing
    (tmp_path / FILE).write_text(json.dumps({"first_slot": 1, "advance": {"two": "soon"}}))
    with pytest.raises(ValueError, match="advance map words to numbers"):
        SpeechTiming.load(tmp_path)
    (tmp_path / FILE).write_text("{not json")
    with pytest.raises(ValueError, match=f"{FILE}: not a speech timing table"):
        SpeechTiming.load(tmp_path)
    with pytest.raises(ValueError, match="nothing to fit"):
        SpeechTiming.fit(["no sil and no words that split" * 0], tokenizer)
