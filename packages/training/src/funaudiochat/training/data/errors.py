"""Up-front validation errors: every problem of a data file, collected, then raised once.

Each problem reads ``file:line: field: what is wrong (what is allowed)``; ``field`` is a path into the
record (``messages[1].role``, ``audio[0].token``). Readers collect every problem of a file into a
``ProblemLog`` and raise one ``DataValidationError`` (a ``ValueError``) listing them, so a bad dataset is
fixed in one pass instead of one crash per training run.

Example:
    >>> log = ProblemLog("train.jsonl")
    >>> log.add(3, "audio[0].path", "file not found: /data/q3.wav", "a readable WAV/FLAC/OGG file")
    >>> log.raise_if_any()
    Traceback (most recent call last):
    DataValidationError: 1 problem in train.jsonl:
    train.jsonl:3: audio[0].path: file not found: /data/q3.wav (a readable WAV/FLAC/OGG file)
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import UserInputError

MAX_LISTED = 200  # problems spelled out in the message; all of them are in DataValidationError.problems


@dataclass(frozen=True)
class Problem:
    """One problem: ``source`` (file name), 1-based ``line`` (None: the file as a whole), ``field``,
    ``what`` is wrong and what is ``allowed``."""

    source: str
    line: int | None
    field: str
    what: str
    allowed: str = ""

    def __str__(self) -> str:
        where = self.source if self.line is None else f"{self.source}:{self.line}"
        tail = f" ({self.allowed})" if self.allowed else ""
        return f"{where}: {self.field}: {self.what}{tail}"


class DataValidationError(UserInputError):
    """Raised once per file with every ``Problem`` found (``.problems``); the message lists the first
    ``MAX_LISTED`` of them, one per line."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        sources = sorted({p.source for p in self.problems})
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in {', '.join(sources)}:"
        lines = [str(p) for p in self.problems[:MAX_LISTED]]
        if count > MAX_LISTED:
            lines.append(f"... and {count - MAX_LISTED} more (all in DataValidationError.problems)")
        super().__init__("\n".join([head, *lines]))


class ProblemLog:
    """Collects the problems of one ``source`` file."""

    def __init__(self, source: str):
        self.source = str(source)
        self.problems: list[Problem] = []

    def add(self, line: int | None, field: str, what: str, allowed: str = "") -> None:
        self.problems.append(Problem(self.source, line, field, what, allowed))

    def __len__(self) -> int:
        return len(self.problems)

    def raise_if_any(self) -> None:
        """Raise ``DataValidationError`` if any problem was added."""
        if self.problems:
            raise DataValidationError(self.problems)
