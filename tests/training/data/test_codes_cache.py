"""CodesCache: misses then hits, content keys, weights keys, corrupt entries, atomic writes, and filling
conversations for the dataset."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest
from funaudiochat.tokenizer import SpeechTokenizer, code_count, load_audio
from funaudiochat.training.data import (
    AssistantSpeech,
    CodesCache,
    Conversation,
    ConversationEncoder,
    SpokenChatDataset,
    Turn,
    UserAudio,
    tokenizer_fingerprint,
)
from funaudiochat.training.data import codes_cache as codes_cache_module

TEMPLATE = "<|audio_bos|><|AUDIO|><|audio_eos|>"


@pytest.fixture(scope="module")
def tokenizer():
    return SpeechTokenizer.random(seed=0)


def test_miss_then_hit_gives_the_tokenizer_codes(tmp_path, speech_dir, tokenizer):
    cache = CodesCache(tmp_path / "cache", tokenizer)
    path = speech_dir / "utt0.wav"
    assert cache.lookup(path) is None
    codes = cache.codes_for(path)
    wave = load_audio(path)
    assert codes.dtype == np.int16 and codes.shape == (code_count(wave.shape[0]),)
    assert codes.tolist() == tokenizer.encode(wave)[0].tolist()
    assert (cache.hits, cache.misses) == (0, 1)
    assert np.array_equal(cache.codes_for(path), codes) and (cache.hits, cache.misses) == (1, 1)
    # a new process (a new cache object) finds it on disk
    again = CodesCache(tmp_path / "cache", tokenizer)
    assert np.array_equal(again.lookup(path), codes)
    entries = list((tmp_path / "cache").rglob("*.npy"))
    assert len(entries) == 1 and entries[0].parent.name == entries[0].stem[:2]


def test_keys_follow_file_bytes_and_weights(tmp_path, speech_dir, tokenizer):
    cache = CodesCache(tmp_path / "cache", tokenizer)
    first = speech_dir / "utt1.wav"
    copy = shutil.copy(first, tmp_path / "renamed.wav")
    assert cache.key(first) == cache.key(copy)  # same bytes, other name: a hit
    cache.codes_for(first)
    cache.codes_for(copy)
    assert (cache.hits, cache.misses) == (1, 1)
    assert cache.key(first) != cache.key(speech_dir / "utt2.wav")
    other = SpeechTokenizer.random(seed=1)
    assert tokenizer_fingerprint(other) != tokenizer_fingerprint(tokenizer)
    assert tokenizer_fingerprint(SpeechTokenizer.random(seed=0)) == tokenizer_fingerprint(tokenizer)
    assert CodesCache(tmp_path / "cache", other).lookup(first) is None  # new weights: stale codes unseen


def test_corrupt_entry_is_a_miss_and_is_rewritten(tmp_path, speech_dir, tokenizer):
    cache = CodesCache(tmp_path / "cache", tokenizer)
    path = speech_dir / "utt2.wav"
    good = cache.codes_for(path)
    entry = cache.entry_path(cache.key(path))
    entry.write_bytes(b"\x93NUMPY garbage")
    assert cache.lookup(path) is None
    np.save(entry, np.array([7000], dtype=np.int16))  # out of range: not codes
    assert cache.lookup(path) is None
    assert np.array_equal(cache.codes_for(path), good) and np.array_equal(cache.lookup(path), good)


def test_failed_write_leaves_no_file(tmp_path, speech_dir, tokenizer, monkeypatch):
    cache = CodesCache(tmp_path / "cache", tokenizer)

    def broken_save(handle, values, allow_pickle=False):
        handle.write(b"\x93NUMPY half")
        raise OSError("disk full")

    monkeypatch.setattr(codes_cache_module.np, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        cache.codes_for(speech_dir / "utt3.wav")
    assert [p for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []


def test_readers_never_see_a_partial_entry(tmp_path, speech_dir, tokenizer):
    cache = CodesCache(tmp_path / "cache", tokenizer)
    path = speech_dir / "utt0.wav"
    entry = cache.entry_path(cache.key(path))
    stop, bad = threading.Event(), []

    def write_many():
        for n in range(1, 200):
            cache._write(entry, np.arange(n * 50, dtype=np.int16) % 6561)
        stop.set()

    def read_many():
        while not stop.is_set():
            if entry.exists() and cache.lookup(path) is None:
                bad.append(1)

    threads = [threading.Thread(target=write_many), threading.Thread(target=read_many)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad
    assert [p.name for p in entry.parent.iterdir()] == [entry.name]  # no temporary file left


def test_fill_and_the_dataset_tokenize_on_the_fly(tmp_path, speech_dir, tokenizer, processor):
    user = UserAudio(str(speech_dir / "utt0.wav"), num_frames=40)
    conv = Conversation(
        [Turn("user", TEMPLATE), Turn("assistant", TEMPLATE)],
        [
            user,
            AssistantSpeech("Seven times eight is fifty six.", None, ref_path=str(speech_dir / "utt3.wav")),
        ],
        source="otf",
    )
    assert conv.needs_codes
    cache = CodesCache(tmp_path / "cache", tokenizer)
    [filled] = cache.fill([conv])
    assert not filled.needs_codes and conv.needs_codes  # a copy; the original is unchanged
    assert np.array_equal(filled.audios[1].codes, cache.codes_for(speech_dir / "utt3.wav"))

    dataset = SpokenChatDataset([conv], ConversationEncoder(processor), codes_cache=cache)
    item = dataset[0]
    assert item.speech_ids[1][10:].tolist() == filled.audios[1].codes.tolist()
    assert cache.misses == 1 and cache.hits >= 2


def test_missing_audio_is_a_clear_error(tmp_path, tokenizer):
    cache = CodesCache(tmp_path / "cache", tokenizer)
    with pytest.raises(ValueError, match="cannot read the audio file to tokenize"):
        cache.codes_for(tmp_path / "gone.wav")
