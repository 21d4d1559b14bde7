"""``ReplyBatch``: rows that join a running batch at different steps, or leave it early, each get the
events they get alone (``Pipeline.stream`` is a batch of one)."""

import pytest
from funaudiochat.chat import AudioChunk, Done, Request, Sampling, random_pipeline
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
