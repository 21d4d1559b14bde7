"""``StageClock``: the seconds a demo stage has run over all its attempts.

A killed stage resumes (Lightning from its newest checkpoint), so its time is the sum of its attempts. The
clock writes its file (``clock_file``: ``<run>/clock/<stage>.json``, outside the stage's folder, which
quick stages replace whole) every ``every`` seconds while the stage runs, so a killed attempt loses at
most that much from the record; the next attempt starts from it.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

CLOCK_FOLDER = "clock"


def clock_file(root: Path, stage: str) -> Path:
    """Where the clock of stage ``stage`` of run folder ``root`` keeps its seconds."""
    return Path(root) / CLOCK_FOLDER / f"{stage}.json"


class StageClock:
    """Times one attempt of a stage on top of its earlier attempts' seconds, kept in ``path``.

    path: the clock's JSON file (``clock_file``; its folder is made if missing).
    every: seconds between two writes of ``path`` while the attempt runs.

    Example:
        >>> with StageClock(clock_file(root, "text_lm")) as clock:
        ...     train()
        >>> clock.seconds, clock.attempts  # all attempts so far, this one included
    """

    def __init__(self, path: Path, every: float = 30.0):
        if every <= 0:
            raise ValueError(f"every must be > 0 seconds, got {every}")
        self.path = Path(path)
        self.every = every
        earlier = _read(self.path)
        self.earlier_seconds = float(earlier.get("seconds", 0.0))
        self.attempts = int(earlier.get("attempts", 0)) + 1
        self._start: float | None = None
        self._end: float | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def seconds(self) -> float:
        """Earlier attempts' seconds plus this attempt's so far (or in all, once it ended)."""
        if self._start is None:
            return self.earlier_seconds
        end = self._end if self._end is not None else time.perf_counter()
        return self.earlier_seconds + end - self._start

    def __enter__(self) -> StageClock:
        self._start = time.perf_counter()
        self._write()
        self._beat = threading.Thread(target=self._beat_until_stopped, name="stage-clock", daemon=True)
        self._beat.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._end = time.perf_counter()
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        self._write()

    def _beat_until_stopped(self) -> None:
        while not self._stop.wait(self.every):
            self._write()

    def _write(self) -> None:
        from funaudiochat.base.atomic import atomic_write_text

        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"seconds": round(self.seconds, 2), "attempts": self.attempts}
        atomic_write_text(self.path, json.dumps(record) + "\n")


def forget_attempts(path: Path) -> None:
    """Drop the earlier attempts kept in clock file ``path`` (a forced stage starts its time again)."""
    Path(path).unlink(missing_ok=True)


def _read(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}  # a clock file cut short: the earlier attempts' time is lost, never the stage
    return record if isinstance(record, dict) else {}
