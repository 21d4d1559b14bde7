"""``ReplyBatch``: rows that join a running batch at different steps, or leave it early, each get the
events they get alone (``Pipeline.stream`` is a batch of one)."""

import pytest
import torch
from funaudiochat.chat import AudioChunk, Done, Request, Sampling, TextDelta, random_pipeline
from funaudiochat.chat.batch import ReplyBatch
from reply_checks import assert_same_events


@pytest.fixture(scope="module")
def pipe():
    return random_pipeline(0)


def requests(questions) -> list[Request]:
    """Spoken and written questions of different lengths, seeded apart, sampled alike (one batch)."""
    sampling = dict(max_new_tokens=14, text_temperature=0.8)
    return [
        Request(audio=questions[0], sampling=Sampling(seed=1, **sampling)),
        Request(text="Say hello to everyone here.", sampling=Sampling(seed=2, **sampling)),
        Request(audio=questions[1], sampling=Sampling(seed=3, **sampling)),
        Request(audio=questions[0], text="Answer briefly.", sampling=Sampling(seed=4, **sampling)),
    ]


def test_rows_joining_at_different_steps_get_what_they_get_alone(pipe, questions):
    asked = requests(questions)
    alone = [list(pipe.stream(r)) for r in asked]
    batch, got = ReplyBatch(pipe), {i: [] for i in range(len(asked))}
    joins = {0: [0], 2: [1, 2], 5: [3]}  # step -> rows that join before it
    step = 0
    while step in joins or step < max(joins) or batch.rows:
        for i in joins.get(step, []):
            for key, event in batch.add(asked[i], key=i):
                got[key].append(event)
        for key, event in batch.step():
            got[key].append(event)
        step += 1
    for i in range(len(asked)):
        assert isinstance(got[i][-1], Done)
        assert_same_events(got[i], alone[i])
    assert any(isinstance(e, AudioChunk) for e in got[0])


def test_a_dropped_row_leaves_the_others_unchanged(pipe, questions):
    asked = requests(questions)[:3]
    alone = [list(pipe.stream(r)) for r in asked]
    batch, got = ReplyBatch(pipe), {i: [] for i in range(3)}
    for i, request in enumerate(asked):
        for key, event in batch.add(request, key=i):
            got[key].append(event)
    for _ in range(4):
        for key, event in batch.step():
            got[key].append(event)
    batch.drop([1])
    assert [row.key for row in batch.rows] == [0, 2]
    while batch.rows:
        for key, event in batch.step():
            got[key].append(event)
    for i in (0, 2):
        assert_same_events(got[i], alone[i])
    assert not any(isinstance(e, Done) for e in got[1])


def test_a_request_with_other_settings_needs_its_own_batch(pipe, questions):
    batch = ReplyBatch(pipe)
    batch.add(Request(text="Hi.", sampling=Sampling(max_new_tokens=8)))
    with pytest.raises(ValueError, match="other settings than the batch"):
        batch.add(Request(text="Hi.", sampling=Sampling(max_new_tokens=9)))
    with pytest.raises(ValueError, match="other settings than the batch"):
        batch.add(Request(text="Hi.", mode="s2t", sampling=Sampling(max_new_tokens=8)))


@pytest.mark.parametrize("lead", [0.0, 1e9])
def test_audio_that_waits_for_the_vocoder_is_the_same_audio(pipe, questions, lead):
    """With ``audio_lead_s`` a row's codes wait while its audio is that far ahead of real time (0: whenever
    it is ahead at all, which on this fast model is most of the time; 1e9: never): the text and the audio
    are those of the row alone; only the audio's pieces may differ."""
    asked = requests(questions)[:3]
    alone = [list(pipe.stream(r)) for r in asked]
    batch, got = ReplyBatch(pipe, audio_lead_s=lead), {i: [] for i in range(3)}
    for i, request in enumerate(asked):
        for key, event in batch.add(request, key=i):
            got[key].append(event)
    while batch.rows:
        for key, event in batch.step():
            got[key].append(event)
    for i in range(3):
        audio = [e.samples for e in got[i] if isinstance(e, AudioChunk)]
        own = [e.samples for e in alone[i] if isinstance(e, AudioChunk)]
        torch.testing.assert_close(torch.cat(audio), torch.cat(own), rtol=0, atol=1e-5)
        text = "".join(e.text for e in got[i] if isinstance(e, TextDelta))
        assert text == "".join(e.text for e in alone[i] if isinstance(e, TextDelta))
        assert got[i][-1].reply.text == alone[i][-1].reply.text
        if lead > 1:  # nothing waits: the same events as alone
            assert_same_events(got[i], alone[i])
    with pytest.raises(ValueError, match="audio_lead_s must be >= 0"):
        ReplyBatch(pipe, audio_lead_s=-1.0)
