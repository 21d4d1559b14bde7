"""When each word of a planned spoken reply is said: a duration table learnt from the training replies.

A model trained on word-aligned replies (each word's text at the 5 Hz slot whose SRH conditioning says its
first codes, ``<|sil|>`` between) can be handed the layout of its planned reply instead of placing the
words itself: ``SpeechTiming.layout`` puts each word at the slot the table gives (the first word at
``first_slot``, each next one ``advance[word]`` slots after the one before it, a word the table lacks
``intercept + per_char * (letters + 1)`` slots; a word goes in the slot its summed time falls in), and the
spoken pass writes that layout token by token
(``DecodingConfig.plan_exact``) while its speech head says it. The table is ``fit`` on the training
replies' aligned texts and kept beside the model as ``speech_timing.json``.

    >>> timing = SpeechTiming.fit(["<|sil|>Two plus two<|sil|> is four."], tokenizer)
    >>> tokenizer.decode(timing.layout("Two plus two is four.", tokenizer))
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from .text_tokenizer import SIL_TOKEN as SIL

FILE = "speech_timing.json"


def _words(text: str) -> list[str]:
    return text.replace(SIL, " ").split()


def word_slots(aligned: str, tokenizer) -> list[int] | None:
    """The slot (token index) of each word of an aligned reply text, or None when its tokens do not split
    into its words (a word is a token that starts with a space, or the first token that is not
    ``<|sil|>``)."""
    sil = tokenizer.convert_tokens_to_ids(SIL)
    slots = []
    for slot, token in enumerate(tokenizer.encode(aligned, add_special_tokens=False)):
        if token == sil:
            continue
        if not slots or tokenizer.decode([token]).startswith(" "):
            slots.append(slot)
    return slots if len(slots) == len(_words(aligned)) else None


@dataclass
class SpeechTiming:
    """The slots of a spoken reply's words.

    first_slot: the first word's slot (the replies open with ``<|sil|>``: 1).
    advance: lower-cased word (punctuation kept) -> mean slots from it to the next word.
    intercept, per_char: a word the table lacks advances ``intercept + per_char * (letters + 1)`` slots.
    """

    first_slot: int = 1
    advance: dict[str, float] = field(default_factory=dict)
    intercept: float = 0.0
    per_char: float = 0.4

    @classmethod
    def fit(cls, aligned_texts: Iterable[str], tokenizer) -> SpeechTiming:
        """The table of the aligned reply texts ``aligned_texts`` (``reply_alignment.aligned_text``).

        Raises:
            ValueError: no text splits into its words."""
        steps: dict[str, list[int]] = {}
        firsts, lengths, gaps = [], [], []
        for text in aligned_texts:
            slots = word_slots(text, tokenizer)
            if not slots:
                continue
            words = _words(text)
            firsts.append(slots[0])
            for word, here, there in zip(words[:-1], slots[:-1], slots[1:], strict=True):
                steps.setdefault(word.lower(), []).append(there - here)
                lengths.append(len(word) + 1)
                gaps.append(there - here)
        if not firsts:
            raise ValueError("no aligned reply text splits into its words: nothing to fit")
        per_char, intercept = np.polyfit(lengths, gaps, 1) if len(set(lengths)) > 1 else (0.0, np.mean(gaps))
        return cls(
            first_slot=int(np.median(firsts)),
            advance={word: float(np.mean(v)) for word, v in sorted(steps.items())},
            intercept=float(intercept),
            per_char=float(per_char),
        )

    def layout(self, text: str, tokenizer) -> list[int]:
        """The token ids of ``text`` (a plain reply) with ``<|sil|>`` before each word until its slot; a
        word whose slot the words before it still fill comes right after them."""
        sil = tokenizer.convert_tokens_to_ids(SIL)
        ids: list[int] = []
        at = float(self.first_slot)
        for i, word in enumerate(text.split()):
            wanted = math.floor(at + 1e-9)  # the step the word's time falls in (rounding: heard less)
            ids += [sil] * max(0, wanted - len(ids))
            ids += tokenizer.encode(word if i == 0 else " " + word, add_special_tokens=False)
            at += self.advance.get(word.lower(), self.intercept + self.per_char * (len(word) + 1))
        return ids

    def save(self, folder: str | os.PathLike) -> Path:
        """Write ``folder/speech_timing.json`` atomically; returns its path."""
        from funaudiochat.base.atomic import atomic_write_text

        path = Path(folder) / FILE
        atomic_write_text(path, json.dumps(asdict(self), indent=1, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | os.PathLike) -> SpeechTiming | None:
        """``folder/speech_timing.json``, or None when the folder has none.

        Raises:
            ValueError: the file is not a timing table (its path and what is wrong)."""
        path = Path(folder) / FILE
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            timing = cls(**data)
            ok = all(isinstance(v, (int, float)) for v in timing.advance.values())
        except (json.JSONDecodeError, TypeError, AttributeError) as error:
            raise ValueError(f"{path}: not a speech timing table ({error})") from error
        if not ok or not isinstance(timing.first_slot, int) or timing.first_slot < 0:
            raise ValueError(f"{path}: first_slot must be an int >= 0 and advance map words to numbers")
        return timing
