"""``StageClock``: the seconds a demo stage has run over all its attempts.

A killed stage resumes (Lightning from its newest checkpoint), so its time is the sum of its attempts. The
clock writes its file (``clock_file``: ``<run>/clock/<stage>.json``, outside the stage's folder, which
quick stages replace whole) every ``every`` seconds while the stage runs, so a killed attempt loses at
most that much from the record; the next attempt starts from it.

A stopped process is not a running stage: when a beat comes more than ``pause_slack`` seconds after it was
due, the process was paused (SIGSTOP, a suspended machine; a loaded machine delays a beat by milliseconds),
and of that beat's interval only ``every`` counts; the rest is kept as ``paused_seconds``.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

CLOCK_FOLDER = "clock"
BUILD_CLOCK = "build"  # ``clock/build.json``: the whole build's wall clock (``DemoBuild.run``); not a stage
PAUSE_SLACK = 60.0  # seconds a beat may come late before its interval counts as a pause


def clock_file(root: Path, stage: str) -> Path:
    """Where the clock of stage ``stage`` of run folder ``root`` keeps its seconds."""
    return Path(root) / CLOCK_FOLDER / f"{stage}.json"


class StageClock:
    """Times one attempt of a stage on top of its earlier attempts' seconds, kept in ``path``.

    path: the clock's JSON file (``clock_file``; its folder is made if missing).
    every: seconds between two writes of ``path`` while the attempt runs.
    pause_slack: seconds a write may come late before the process counts as paused for the rest.

    Example:
        >>> with StageClock(clock_file(root, "text_lm")) as clock:
        ...     train()
        >>> clock.seconds, clock.attempts  # all attempts so far, this one included
        >>> clock.paused_seconds  # how long they were stopped (not in ``seconds``)
    """

    def __init__(self, path: Path, every: float = 30.0, pause_slack: float = PAUSE_SLACK):
        if every <= 0:
            raise ValueError(f"every must be > 0 seconds, got {every}")
        if pause_slack <= 0:
            raise ValueError(f"pause_slack must be > 0 seconds, got {pause_slack}")
        self.path = Path(path)
        self.every = every
        self.pause_slack = pause_slack
        earlier = read_clock(self.path)
        self.earlier_seconds = float(earlier.get("seconds", 0.0))
        self.earlier_paused = float(earlier.get("paused_seconds", 0.0))
        self.attempts = int(earlier.get("attempts", 0)) + 1
        self._counted = 0.0  # this attempt's running seconds up to ``_last``
        self._paused = 0.0  # this attempt's paused seconds up to ``_last``
        self._last: float | None = None  # when the count was last brought up to date
        self._ended = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def seconds(self) -> float:
        """Earlier attempts' seconds plus this attempt's so far (all of it once it ended), pauses left out."""
        with self._lock:
            if self._last is None:
                return self.earlier_seconds
            running = 0.0 if self._ended else self._split(time.perf_counter() - self._last)[0]
            return self.earlier_seconds + self._counted + running

    @property
    def paused_seconds(self) -> float:
        """Seconds the process was stopped over all attempts so far (not in ``seconds``)."""
        with self._lock:
            return self.earlier_paused + self._paused

    def __enter__(self) -> StageClock:
        self._last = time.perf_counter()
        self._write()
        self._beat = threading.Thread(target=self._beat_until_stopped, name="stage-clock", daemon=True)
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._bring_up_to_date()
        with self._lock:
            self._ended = True
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        self._write()

    def _bring_up_to_date(self) -> None:
        """Add the time since ``_last`` to the count, or only ``every`` of it when it came that late."""
        with self._lock:
            if self._ended or self._last is None:
                return
            now = time.perf_counter()
            counted, paused = self._split(now - self._last)
            self._counted += counted
            self._paused += paused
            self._last = now

    def _split(self, gap: float) -> tuple[float, float]:
        """``gap`` seconds since the last beat -> (running, paused) seconds."""
        if gap > self.every + self.pause_slack:
            return self.every, gap - self.every
        return gap, 0.0

    def _beat_until_stopped(self) -> None:
        while not self._stop.wait(self.every):
            self._bring_up_to_date()
            self._write()

    def _write(self) -> None:
        from funaudiochat.base.atomic import atomic_write_text

        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"seconds": round(self.seconds, 2), "attempts": self.attempts}
        if self.paused_seconds:
            record["paused_seconds"] = round(self.paused_seconds, 2)
        atomic_write_text(self.path, json.dumps(record) + "\n")


def forget_attempts(path: Path) -> None:
    """Drop the earlier attempts kept in clock file ``path`` (a forced stage starts its time again)."""
    Path(path).unlink(missing_ok=True)


def read_clock(path: Path) -> dict[str, Any]:
    """What clock file ``path`` holds (``seconds``, ``attempts``, maybe ``paused_seconds``); ``{}`` when it
    is missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}  # a clock file cut short: the earlier attempts' time is lost, never the stage
    return record if isinstance(record, dict) else {}


def runs_of_build(attempts: int) -> str:
    """How many runs of ``train_demo.py`` the build clock counts, in words: "1 run", "3 runs"."""
    return "1 run" if attempts == 1 else f"{attempts} runs"
