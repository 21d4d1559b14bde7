"""The building blocks of the demo corpus: phrasing templates, content items and the families that join them.

    >>> adding = Template("what_is", "what is {a} plus {b}?", "{a} plus {b} is {result}.")
    >>> seven_three = Content("add:7:3", {"a": "seven", "b": "three", "result": "ten"}, ("ten",))
    >>> adding.fill(seven_three)
    ('What is seven plus three?', 'Seven plus three is ten.')

A ``Family`` is the templates that can phrase one kind of content (additions, colours of things, ...)
and its content items; the corpus phrases each item with ``per_content`` of the family's templates.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TASKS = ("arithmetic", "compare", "fact", "instruction", "tool", "asr")
NAME_PATTERN = re.compile(r"^[a-z0-9_]+$")
_WORD = re.compile(r"[a-z0-9']+")


def sentence(text: str) -> str:
    """``text`` with its first letter in upper case (the rest unchanged)."""
    return text[:1].upper() + text[1:]


def words_of(text: str) -> tuple[str, ...]:
    """The lower-case words of ``text`` (punctuation dropped): what a key is matched against."""
    return tuple(_WORD.findall(text.lower()))


@dataclass(frozen=True)
class Template:
    """One phrasing: ``question`` and ``answer`` are ``str.format`` patterns over a content's slots."""

    name: str
    question: str
    answer: str

    def fill(self, content: Content) -> tuple[str, str]:
        """(question, answer) of ``content`` in this phrasing, each starting with a capital letter."""
        return sentence(self.question.format(**content.slots)), sentence(self.answer.format(**content.slots))


@dataclass(frozen=True)
class Content:
    """One content item: ``id`` (``"family:..."``), the slot values its templates use, the ``key`` words
    a correct answer holds (empty: every word of the answer) and the tool call it asks for, if any."""

    id: str
    slots: Mapping[str, str] = field(hash=False)
    key: tuple[str, ...] = ()
    tool_call: Mapping[str, Any] | None = field(default=None, hash=False)


@dataclass(frozen=True)
class Family:
    """Templates and content items of one kind, in one task; each item is phrased ``per_content`` times
    (by distinct templates). Raises ValueError when it is too small to hold some of both out."""

    task: str
    name: str
    templates: tuple[Template, ...]
    contents: tuple[Content, ...]
    per_content: int = 1

    def __post_init__(self) -> None:
        problems = []
        if self.task not in TASKS:
            problems.append(f"task {self.task!r} is not one of {TASKS}")
        if not NAME_PATTERN.match(self.name):
            problems.append(f"name {self.name!r} is not [a-z0-9_]+")
        if len(self.templates) < 4:
            problems.append(f"{len(self.templates)} templates (at least 4, to hold some out)")
        if len(self.contents) < 5:
            problems.append(f"{len(self.contents)} content items (at least 5, to hold some out)")
        if not 1 <= self.per_content <= len(self.templates):
            problems.append(f"per_content {self.per_content} is not in 1..{len(self.templates)}")
        names = [t.name for t in self.templates]
        if len(set(names)) != len(names) or not all(NAME_PATTERN.match(n) for n in names):
            problems.append(f"template names {names} are not unique [a-z0-9_]+ names")
        ids = [c.id for c in self.contents]
        if len(set(ids)) != len(ids) or not all(i.startswith(f"{self.name}:") for i in ids):
            problems.append(f"content ids are not unique ids starting with {self.name + ':'!r}")
        if problems:
            raise ValueError(f"family {self.name!r}: " + "; ".join(problems))

    def phrasing_id(self, template: Template) -> str:
        """The corpus-wide id of one of the family's templates: ``"family.template"``."""
        return f"{self.name}.{template.name}"
