"""``Engine``: the sessions of a server decoded together (continuous batching).

One worker thread owns the pipeline. Each turn a session asks for is a job: the worker prefills it between
5 Hz steps in a batch of its own, steps that batch a few times per loop until the reply's first audio is
out (a new session does not wait for the long steps of a full batch), then joins it to the running
``ReplyBatch`` of its decoding setting (``batch.batch_key``); every loop steps each batch once, so the LLM,
the SRH, the flow and HiFT run all sessions of a setting together, and sends each job's events to its
sink. A finished job leaves its batch at the step that ends it; a
cancelled one (barge-in, a closed socket) leaves at the next step; the others go on unchanged (each row
gets what it gets alone). A job whose prefill fails (bad audio, too long a history) gets the error as its
one event, and the worker goes on.

Example:
    >>> engine = Engine(pipe, max_jobs=16).start()
    >>> async for event in engine.stream(Request(audio=pcm)):     # from an asyncio handler
    ...     ...
    >>> engine.stop()

Threads: torch's CPU kernels run in parallel through OpenMP, and libgomp lets its idle workers spin (ready
for the next parallel region) only while the process holds no more OpenMP threads than cores. Each thread
that runs a parallel region keeps a team of workers, so a main thread that loaded the model with N threads
and an engine thread that decodes with N more oversubscribe the cores: the workers then sleep between
regions and every small kernel waits for one to wake (the demo-size pipeline took 2.4x as long in such a
thread). A server therefore gives torch's parallelism to the engine alone: ``reserve_cores_for_engine``
first thing in the main thread, and ``Engine(threads=...)``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from ..batch import ReplyBatch
from ..pipeline import Pipeline
from ..replies import Done, Event
from ..request import Request


async def cancel_task(task: asyncio.Task | None) -> bool:
    """Cancel ``task`` (a session's reply in progress) and wait for it; returns whether it was running."""
    if task is None or task.done():
        return False
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    return True


def _first_audio_out(batch: ReplyBatch) -> bool:
    """Whether a new reply's batch may join the others: each of its rows has given its first audio (or
    speaks not at all)."""
    return all(not row.speaks or row.timings.first_audio_s is not None for row in batch.rows)


def one_torch_thread() -> None:
    """Run the calling thread's torch kernels on one thread (no OpenMP team of its own), also after an
    engine sets its count: a thread takes torch's last count set anywhere at its first parallel call, so
    this call makes that first call now."""
    torch.set_num_threads(1)
    torch.get_num_threads()


def reserve_cores_for_engine(threads: int | None = None) -> int:
    """Keep the calling thread to one torch thread (``one_torch_thread``), so that the engine's worker
    holds the process's only OpenMP team (see the module docstring); returns the threads to give the
    engine (``threads``, or torch's count before the call: one per core by default). Call it in the main
    thread before the model is loaded: a thread that already ran a parallel region keeps its team. Another
    thread that runs torch (an event loop of its own) calls ``one_torch_thread`` first."""
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    engine_threads = threads or torch.get_num_threads()
    one_torch_thread()
    return engine_threads


class EngineBusy(RuntimeError):
    """The engine holds ``max_jobs`` jobs already (a server answers 429 / an error frame)."""


@dataclass(eq=False)
class Job:
    """One request in the engine: its events go to ``sink`` (``TextDelta``, ``AudioChunk``, then ``Done``;
    or one exception), called from the worker thread. ``id``: unique in the engine; ``submitted``:
    ``time.perf_counter()`` when it came (the origin of its timings)."""

    request: Request
    sink: Callable[[Event | BaseException], None]
    id: int = 0
    submitted: float = field(default_factory=time.perf_counter)
    cancelled: bool = False
    done: bool = False


class Engine:
    """Continuous batching of a pipeline's replies (see the module docstring).

    pipe: the pipeline (the engine's worker is then its only user); max_jobs: jobs waiting or running at
    once (more: ``EngineBusy``); idle_wait_s: how long the idle worker sleeps between looks for work;
    audio_lead_s: a reply whose audio is this far ahead of real time waits for the vocoder while others
    (a new session's first audio) go first (``ReplyBatch``; None: no waiting); warm_steps: steps a new
    reply may take per loop, in its own batch, until its first audio (0: it joins the running batch at
    once); threads: torch threads of the worker (None: as torch has them; see
    ``reserve_cores_for_engine``)."""

    def __init__(
        self,
        pipe: Pipeline,
        max_jobs: int = 16,
        idle_wait_s: float = 0.05,
        audio_lead_s: float | None = None,
        warm_steps: int = 4,
        threads: int | None = None,
    ):
        if max_jobs < 1:
            raise ValueError(f"max_jobs must be >= 1, got {max_jobs}")
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be >= 1 or None, got {threads}")
        self.threads = threads
        self.pipe = pipe
        self.audio_lead_s = audio_lead_s
        self.warm_steps = warm_steps
        self._warming: list[ReplyBatch] = []  # new replies, each in its own batch until its first audio
        self.max_jobs = max_jobs
        self.idle_wait_s = idle_wait_s
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pending: deque[Job] = deque()
        self._running: dict[int, Job] = {}
        self._batches: dict[Any, ReplyBatch] = {}
        self._ids = itertools.count(1)
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.steps = 0  # 5 Hz steps taken (all batches), for monitoring

    # -- the callers' side (any thread) -------------------------------------------------------------------

    @property
    def load(self) -> int:
        """Jobs waiting or running."""
        with self._lock:
            return len(self._pending) + len(self._running)

    def submit(self, request: Request, sink: Callable[[Event | BaseException], None]) -> Job:
        """Queue ``request``; its events go to ``sink`` from the worker thread. Raises ``EngineBusy`` when
        ``max_jobs`` are in already."""
        if not isinstance(request, Request):
            raise ValueError(f"expected a Request, got {type(request).__name__}")
        with self._lock:
            if len(self._pending) + len(self._running) >= self.max_jobs:
                raise EngineBusy(f"the server is busy: {self.max_jobs} replies are in the making; try again")
            job = Job(request, sink, next(self._ids))
            self._pending.append(job)
        self._wake.set()
        return job

    def cancel(self, job: Job) -> None:
        """Stop making ``job``'s reply (no more events come); the other jobs go on unchanged."""
        with self._lock:
            job.cancelled = True
        self._wake.set()

    async def stream(self, request: Request) -> AsyncIterator[Event]:
        """The events of ``request`` in an asyncio task; leaving the loop early cancels the job. Raises
        the job's error (``ValueError`` for bad input) or ``EngineBusy``."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        job = self.submit(request, lambda event: loop.call_soon_threadsafe(queue.put_nowait, event))
        try:
            while True:
                event = await queue.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, Done):
                    return
        finally:
            if not job.done:
                self.cancel(job)

    def start(self) -> Engine:
        """Run the worker thread (returns the engine)."""
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._work, name="funaudiochat-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker after its current step; unfinished jobs are dropped."""
        self._stopping = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    # -- the worker's side --------------------------------------------------------------------------------

    def run_once(self) -> bool:
        """Admit the waiting jobs, drop the cancelled ones and step every batch once; returns whether any
        job is still in the engine. (The worker thread calls this in a loop; a test may call it itself.)"""
        self._drop_cancelled()
        while True:
            with self._lock:
                job = self._pending.popleft() if self._pending else None
            if job is None:
                break
            self._admit(job)
        for batch in list(self._warming):
            self._warm(batch)
        for key, batch in list(self._batches.items()):
            if not self._step(batch) or not batch.rows:
                del self._batches[key]
        with self._lock:
            return bool(self._pending or self._running)

    def _work(self) -> None:
        if self.threads is not None:
            torch.set_num_threads(self.threads)  # this thread's OpenMP team
        while not self._stopping:
            if not self.run_once():
                self._wake.wait(self.idle_wait_s)
                self._wake.clear()

    def _admit(self, job: Job) -> None:
        if job.cancelled:
            return
        batch = ReplyBatch(self.pipe, self.audio_lead_s)
        try:
            events = batch.add(job.request, key=job.id, start=job.submitted)
        except Exception as error:  # bad input of this request: it alone ends, with the reason
            self._end(job, error)
            return
        with self._lock:
            self._running[job.id] = job
        self._warming.append(batch)
        self._dispatch(events)

    def _warm(self, batch: ReplyBatch) -> None:
        """Step a new reply's own batch until its first audio (at most ``warm_steps`` times this loop),
        then join it to the running batch of its setting."""
        for _ in range(self.warm_steps):
            if not batch.rows or _first_audio_out(batch):
                break
            if not self._step(batch):
                self._warming.remove(batch)
                return
        if not batch.rows:
            self._warming.remove(batch)
        elif _first_audio_out(batch) or not self.warm_steps:
            self._warming.remove(batch)
            key = batch.key
            if key in self._batches:
                self._batches[key].absorb(batch)
            else:
                self._batches[key] = batch

    def _step(self, batch: ReplyBatch) -> bool:
        """One step of ``batch`` with its events sent; a fault of the batch ends its jobs with the error (the
        other batches go on) and returns False."""
        try:
            events = batch.step()
        except Exception as error:
            for row in batch.rows:
                job = self._running.get(row.key)
                if job is not None:
                    self._end(job, RuntimeError(f"the reply failed: {error}"))
            return False
        self.steps += 1
        self._dispatch(events)
        return True

    def _dispatch(self, events: list[tuple[Any, Event]]) -> None:
        for job_id, event in events:
            job = self._running.get(job_id)
            if job is None or job.cancelled:
                continue
            if isinstance(event, Done):
                self._end(job, event)
            else:
                self._deliver(job, event)

    def _end(self, job: Job, last: Event | BaseException) -> None:
        with self._lock:
            self._running.pop(job.id, None)
            job.done = True
        self._deliver(job, last)

    def _deliver(self, job: Job, event: Event | BaseException) -> None:
        """Hand ``event`` to the job's sink; a sink that fails (its event loop closed: the client is gone)
        cancels its job, and the worker goes on."""
        try:
            job.sink(event)
        except Exception:
            job.cancelled = True

    def _drop_cancelled(self) -> None:
        with self._lock:
            gone = [job for job in self._running.values() if job.cancelled]
            for job in gone:
                del self._running[job.id]
                job.done = True
            self._pending = deque(job for job in self._pending if not job.cancelled)
        if not gone:
            return
        ids = [job.id for job in gone]
        for batch in self._warming:
            batch.drop(ids)
        self._warming = [batch for batch in self._warming if batch.rows]
        for key, batch in list(self._batches.items()):
            batch.drop(ids)
            if not batch.rows:
                del self._batches[key]
