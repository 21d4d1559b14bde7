"""Comparisons of replies and of streamed events, shared by the chat tests (importable as ``reply_checks``:
``tests/chat/conftest.py`` puts this folder on the path)."""

import torch
from funaudiochat.chat import AudioChunk, TextDelta


def assert_same_reply(a, b, atol=1e-5):
    assert a.text == b.text and a.text_ids == b.text_ids
    assert torch.equal(a.speech_codes, b.speech_codes)
    if a.audio is None:
        assert b.audio is None
    else:
        assert a.audio.shape == b.audio.shape
        torch.testing.assert_close(a.audio, b.audio, rtol=0, atol=atol)


def assert_same_events(got: list, alone: list) -> None:
    """The same events in the same order: equal text, audio to float rounding, the same replies."""
    assert [type(e) for e in got] == [type(e) for e in alone]
    for a, b in zip(got, alone, strict=True):
        if isinstance(a, TextDelta):
            assert a.text == b.text
        elif isinstance(a, AudioChunk):
            assert a.samples.shape == b.samples.shape
            torch.testing.assert_close(a.samples, b.samples, rtol=0, atol=1e-5)
        else:
            assert_same_reply(a.reply, b.reply)
