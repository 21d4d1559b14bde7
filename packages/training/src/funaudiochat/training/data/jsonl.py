"""JSONL plumbing shared by the readers: numbered lines, JSON decoding into a ``ProblemLog``, the
question / answer fields of text pairs, JSON type names for messages, and path resolution against a data
folder."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .errors import ProblemLog

ONE_OBJECT = "one JSON object per line"


def read_lines(file: Path, log: ProblemLog) -> Iterator[tuple[int, str]]:
    """``(line_number, text)`` of each non-blank line (1-based numbers), streamed.

    Lines end at ``\n`` (a ``\r`` before it is dropped), never at U+2028 and the like, which JSON strings
    may hold raw; a UTF-8 byte order mark is skipped. A line that is not UTF-8 goes to ``log`` (field
    ``line``) and is skipped.

    Raises:
        ValueError: the file is missing.
    """
    if not file.is_file():
        raise ValueError(f"{file}: data file not found")
    with open(file, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                text = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                log.add(number, "line", f"not UTF-8 text ({err.reason} at byte {err.start})", "UTF-8 JSON")
                continue
            if number == 1:
                text = text.removeprefix("\ufeff")
            if text.strip():
                yield number, text


def parse_json_object(text: str, line: int, log: ProblemLog) -> dict | None:
    """The JSON object on ``line``, or None after logging why it is not one (field ``json``)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        log.add(line, "json", f"not valid JSON ({err.msg} at column {err.colno})", ONE_OBJECT)
        return None
    if not isinstance(value, dict):
        log.add(line, "json", f"a JSON {json_type(value)}, not an object", ONE_OBJECT)
        return None
    return value


def has_question_and_answer(
    record: dict, line: int, log: ProblemLog, allowed: str = "non-empty text"
) -> bool:
    """Whether ``record`` has non-empty ``question`` and ``answer`` strings; each one missing or empty goes
    to ``log`` (``allowed`` says what is expected)."""
    ok = True
    for name in ("question", "answer"):
        value = record.get(name)
        if not isinstance(value, str) or not value.strip():
            log.add(line, name, "missing" if value is None else "empty or not a string", allowed)
            ok = False
    return ok


def json_type(value: Any) -> str:
    """The JSON name of ``value``'s type (``null``, ``boolean``, ``number``, ``string``, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object" if isinstance(value, dict) else type(value).__name__


def resolve_path(path: str, root: Path) -> str:
    """``path`` if empty or absolute, else ``root / path``."""
    if not path or os.path.isabs(path):
        return path
    return str(root / path)


def relative_path(path: str, relative_to: str | os.PathLike | None) -> str:
    """``path`` relative to ``relative_to`` (unchanged when either is empty / None)."""
    if not path or relative_to is None:
        return path
    return os.path.relpath(path, relative_to)
