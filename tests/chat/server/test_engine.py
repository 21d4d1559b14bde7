"""The server's engine: jobs submitted at staggered times each get what they get alone (seeded), a
cancelled job leaves the others unchanged, bad input ends only its own job, and a full engine says so."""

import asyncio
import threading
import time

import pytest
import torch
from funaudiochat.chat import AudioChunk, Done, Request, Sampling, TextDelta, random_pipeline
from funaudiochat.chat.server.engine import Engine, EngineBusy, reserve_cores_for_engine
from reply_checks import assert_same_events


@pytest.fixture(scope="module")
def pipe():
    return random_pipeline(0)


def eight_requests(questions) -> list[Request]:
    """Eight requests in two decoding settings (spoken answers, and text-only ones), seeded apart."""
    out = []
    for i in range(8):
        mode = "s2t" if i % 4 == 3 else "s2s"
        audio = questions[i % 2] if i % 3 else None
        text = None if audio is not None else f"Tell me about the number {i}."
        sampling = Sampling(seed=10 + i, max_new_tokens=12, text_temperature=0.7)
        out.append(Request(audio=audio, text=text, mode=mode, sampling=sampling))
    return out


def test_staggered_jobs_each_get_what_they_get_alone(pipe, questions):
    asked = eight_requests(questions)
    alone = [list(pipe.stream(r)) for r in asked]
    engine = Engine(pipe, max_jobs=8)
    got = {i: [] for i in range(8)}
    jobs = {}
    for step in range(60):
        if step % 2 == 0 and step // 2 < 8:  # a new job every other step
            i = step // 2
            jobs[i] = engine.submit(asked[i], got[i].append)
        if not engine.run_once() and len(jobs) == 8:
            break
    for i in range(8):
        assert isinstance(got[i][-1], Done), f"job {i} did not finish"
        assert_same_events(got[i], alone[i])
    assert engine.load == 0 and engine.steps > 0


def test_a_cancelled_job_leaves_the_others_unchanged(pipe, questions):
    asked = eight_requests(questions)[:3]
    alone = [list(pipe.stream(r)) for r in asked]
    engine = Engine(pipe)
    got = {i: [] for i in range(3)}
    jobs = [engine.submit(r, got[i].append) for i, r in enumerate(asked)]
    engine.run_once()  # each job to its first audio, and a step of the joined batch
    assert got[1] and not any(isinstance(e, Done) for e in got[1])
    engine.cancel(jobs[1])
    seen = len(got[1])
    while engine.run_once():
        pass
    assert len(got[1]) == seen and not any(isinstance(e, Done) for e in got[1])
    for i in (0, 2):
        assert_same_events(got[i], alone[i])


def test_bad_input_ends_only_its_own_job(pipe, questions, tmp_path):
    engine = Engine(pipe)
    good, bad = [], []
    engine.submit(Request(audio=questions[0], sampling=Sampling(max_new_tokens=6)), good.append)
    engine.submit(Request(audio=tmp_path / "missing.wav"), bad.append)
    while engine.run_once():
        pass
    assert len(bad) == 1 and isinstance(bad[0], ValueError) and "missing.wav" in str(bad[0])
    assert isinstance(good[-1], Done) and any(isinstance(e, TextDelta | AudioChunk) for e in good)


def test_a_full_engine_says_so(pipe):
    engine = Engine(pipe, max_jobs=2)
    for _ in range(2):
        engine.submit(Request(text="Hi."), lambda e: None)
    with pytest.raises(EngineBusy, match="busy: 2 replies"):
        engine.submit(Request(text="Hi."), lambda e: None)
    with pytest.raises(ValueError, match="max_jobs must be >= 1"):
        Engine(pipe, max_jobs=0)


def test_the_worker_thread_streams_to_asyncio(pipe, questions):
    request = Request(audio=questions[1], sampling=Sampling(max_new_tokens=8, seed=3))
    alone = list(pipe.stream(request))
    engine = Engine(pipe).start()

    async def collect():
        return [event async for event in engine.stream(request)]

    try:
        got = asyncio.run(collect())
    finally:
        engine.stop()
    assert_same_events(got, alone)


def test_a_failing_sink_cancels_its_job_and_the_worker_goes_on(pipe, questions):
    """A sink that raises (its client's event loop is gone) ends its own job only."""
    engine = Engine(pipe)

    def broken(event):
        raise RuntimeError("Event loop is closed")

    good = []
    engine.submit(Request(audio=questions[0], sampling=Sampling(max_new_tokens=6)), broken)
    engine.submit(Request(audio=questions[1], sampling=Sampling(max_new_tokens=6)), good.append)
    while engine.run_once():
        pass
    assert isinstance(good[-1], Done) and engine.load == 0


def test_a_new_job_gets_its_first_audio_in_one_loop_then_joins_the_batch(pipe, questions):
    """A reply joining a running one is stepped in a batch of its own until its first audio (one loop of
    the worker), then joins the other's batch; both still get what they get alone."""
    asked = [
        Request(audio=questions[0], sampling=Sampling(max_new_tokens=30, seed=1)),
        Request(audio=questions[1], sampling=Sampling(max_new_tokens=30, seed=2)),
    ]
    alone = [list(pipe.stream(r)) for r in asked]
    engine = Engine(pipe)
    got = {0: [], 1: []}
    engine.submit(asked[0], got[0].append)
    for _ in range(3):
        engine.run_once()
    engine.submit(asked[1], got[1].append)
    engine.run_once()
    assert any(isinstance(e, AudioChunk) for e in got[1])
    assert len(engine._batches) == 1 and len(next(iter(engine._batches.values())).rows) == 2
    while engine.run_once():
        pass
    for i in (0, 1):
        assert_same_events(got[i], alone[i])


@pytest.fixture
def torch_default_threads():
    """Put back torch's count for new threads afterwards (a thread's first parallel call takes the count
    last set anywhere), from a throwaway thread so that this one keeps its own."""
    count = torch.get_num_threads()
    yield
    restore = threading.Thread(target=torch.set_num_threads, args=(count,))
    restore.start()
    restore.join()


def test_the_worker_runs_torch_on_the_threads_it_is_given(pipe, torch_default_threads):
    """``Engine(threads=...)``: the worker thread (where sinks are called) runs torch on that many threads,
    whatever the thread that made the engine uses."""
    seen = []
    engine = Engine(pipe, threads=1).start()
    try:
        job = engine.submit(
            Request(text="Hi.", sampling=Sampling(max_new_tokens=2)),
            lambda e: seen.append((torch.get_num_threads(), threading.current_thread().name)),
        )
        for _ in range(600):
            if job.done:
                break
            time.sleep(0.05)
    finally:
        engine.stop()
    assert seen and all(count == 1 and name == "funaudiochat-engine" for count, name in seen)
    with pytest.raises(ValueError, match="threads must be >= 1 or None, got 0"):
        Engine(pipe, threads=0)


def test_reserving_the_cores_keeps_a_thread_to_one_torch_thread(torch_default_threads):
    """``reserve_cores_for_engine`` returns the count to give the engine and leaves its thread on one torch
    thread, also after another thread sets a larger count (as the engine's worker does)."""
    out = {}

    def server_thread():
        out["before"] = torch.get_num_threads()
        out["engine"] = reserve_cores_for_engine(None)
        other = threading.Thread(target=torch.set_num_threads, args=(2,))
        other.start()
        other.join()
        out["after"] = torch.get_num_threads()

    worker = threading.Thread(target=server_thread)
    worker.start()
    worker.join()
    assert out["engine"] == out["before"] and out["after"] == 1
    assert reserve_cores_for_engine_in_a_thread(3) == 3
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        reserve_cores_for_engine(0)


def reserve_cores_for_engine_in_a_thread(threads: int) -> int:
    """``reserve_cores_for_engine(threads)`` in a thread of its own (it changes its thread's torch count)."""
    out = []
    worker = threading.Thread(target=lambda: out.append(reserve_cores_for_engine(threads)))
    worker.start()
    worker.join()
    return out[0]
