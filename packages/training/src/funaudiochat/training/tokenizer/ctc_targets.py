"""Transcripts -> CTC target ids, over characters (the default) or espeak-ng IPA phonemes.

Id 0 is always the CTC blank (``BLANK``, shown as ``"<blank>"``); the transcript units take ids 1, 2, ...

Characters (``units="chars"``): the fixed vocabulary ``CHARACTERS`` of 38 symbols, ids 1..38 in this order:
space, apostrophe, ``a``..``z``, ``0``..``9``. ``normalize_text`` maps a transcript onto it:

1. Unicode NFKD, combining marks dropped (``café`` -> ``cafe``, ligatures split), lower-cased;
   typographic apostrophes (``’ ‘ ʼ ′``) become ``'``.
2. Every other punctuation character (Unicode category ``P*``: ``. , ? ! - " ( )`` ...) becomes a space, so
   ``"well-known"`` reads ``"well known"``.
3. Runs of whitespace become one space; leading and trailing spaces are removed.
4. What is still outside the vocabulary (other scripts, symbols such as ``$ % &``) is an ``unknown``
   character: ``unknown="error"`` (default) raises a ``ValueError`` that names the character, its code
   point and the transcript; ``unknown="drop"`` removes it (then step 3 is applied again).
Digits stay digits (numbers are not spelled out): write transcripts as they are spoken where that matters.

Phonemes (``units="phonemes"``): ``espeak_ipa`` runs ``espeak-ng -q --ipa -v VOICE`` on the transcript
(given on stdin, so a text starting with ``-`` is never read as an option) and ``split_ipa`` cuts its output
into IPA symbols:
- a symbol is one base character plus the modifiers that follow it: length marks (``ː ˑ``), combining
  diacritics (Unicode ``Mn``, e.g. nasal ``̃``) and modifier letters/symbols (``Lm``/``Sk``: ``ʰ ʲ ʷ ˞``);
  a tie bar (``͡`` / ``͜``) joins the next base character into the same symbol (``t͡ʃ``);
- stress marks ``ˈ ˌ`` are dropped (``keep_stress=True`` keeps each as its own symbol);
- espeak-ng's language-switch tags such as ``(en)`` and its ``-``/``_`` markers are dropped;
- line breaks (espeak-ng's clause ends) and spaces become one word separator ``" "``; tone digits stay
  symbols of their own.
The phoneme vocabulary is built from the training transcripts (``Vocabulary.from_units``: sorted symbols);
a symbol outside it (only possible in validation data, or with a given vocabulary) follows ``unknown``.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache

BLANK = 0
BLANK_SYMBOL = "<blank>"
CHARACTERS: tuple[str, ...] = (" ", "'", *"abcdefghijklmnopqrstuvwxyz", *"0123456789")
UNITS = ("chars", "phonemes")
UNKNOWN_RULES = ("error", "drop")
WORD_SEPARATOR = " "

_APOSTROPHES = "\u2019\u2018\u02bc\u2032"
_STRESS = "\u02c8\u02cc"  # primary and secondary stress
_TIES = "\u0361\u035c"  # combining double inverted breve / double breve below
_LANGUAGE_TAG = re.compile(r"\([A-Za-z0-9_-]+\)")
_ESPEAK_DROPPED = "-_"


def _check_rule(unknown: str) -> None:
    if unknown not in UNKNOWN_RULES:
        raise ValueError(f"unknown must be one of {list(UNKNOWN_RULES)}, got {unknown!r}")


def _collapse(text: str) -> str:
    return " ".join(text.split())


def normalize_text(text: str, unknown: str = "error") -> str:
    """``text`` mapped onto ``CHARACTERS`` by the rules of the module docstring."""
    _check_rule(unknown)
    if not isinstance(text, str):
        raise ValueError(f"a transcript must be a string, got {type(text).__name__}")
    decomposed = unicodedata.normalize("NFKD", text)
    out = []
    allowed = set(CHARACTERS)
    for char in decomposed:
        if unicodedata.category(char) == "Mn":
            continue
        char = char.lower()
        if char in _APOSTROPHES:
            char = "'"
        if char.isspace() or (char != "'" and unicodedata.category(char).startswith("P")):
            out.append(" ")
        elif char in allowed:
            out.append(char)
        elif unknown == "error":
            raise ValueError(
                f"transcript {text!r}: character {char!r} (U+{ord(char):04X}) is not in the character "
                "vocabulary (a-z, 0-9, space, apostrophe); rewrite it, pass unknown='drop' to remove such "
                "characters, or use units='phonemes'"
            )
    return _collapse("".join(out))


def char_units(text: str, unknown: str = "error") -> list[str]:
    """The character units of ``text`` (``normalize_text``, one unit per character)."""
    return list(normalize_text(text, unknown))


def espeak_available() -> bool:
    return shutil.which("espeak-ng") is not None


@lru_cache(maxsize=65536)
def espeak_ipa(text: str, voice: str = "en-us") -> str:
    """The IPA of ``text`` from ``espeak-ng -q --ipa -v VOICE`` (text on stdin; cached per text and voice)."""
    executable = shutil.which("espeak-ng")
    if executable is None:
        raise ValueError(
            "phoneme targets need espeak-ng, which is not on PATH; install it or use units='chars'"
        )
    try:
        result = subprocess.run(
            [executable, "-q", "--ipa", "-v", voice, "--stdin"],
            input=_collapse(text),
            capture_output=True,
            text=True,
            encoding="utf-8",
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise ValueError(f"espeak-ng timed out on transcript {text!r}") from err
    if result.returncode != 0 or "Error:" in result.stderr or "Error:" in result.stdout:
        message = (result.stderr or result.stdout).strip()
        raise ValueError(f"espeak-ng -v {voice} failed on transcript {text!r}: {message}")
    return result.stdout


def split_ipa(ipa: str, keep_stress: bool = False) -> list[str]:
    """IPA text (espeak-ng's) -> symbols, by the rules of the module docstring."""
    ipa = _LANGUAGE_TAG.sub("", ipa)
    symbols: list[str] = []
    join_next = False
    for char in unicodedata.normalize("NFC", ipa):
        if char.isspace():
            if symbols and symbols[-1] != WORD_SEPARATOR:
                symbols.append(WORD_SEPARATOR)
            join_next = False
            continue
        if char in _ESPEAK_DROPPED:
            continue
        if char in _STRESS:
            if keep_stress:
                symbols.append(char)
            continue
        if char in _TIES:
            if symbols and symbols[-1] not in (WORD_SEPARATOR, *_STRESS):
                symbols[-1] += char
                join_next = True
            continue
        category = unicodedata.category(char)
        is_modifier = category in ("Mn", "Lm", "Sk")
        if (is_modifier or join_next) and symbols and symbols[-1] not in (WORD_SEPARATOR, *_STRESS):
            symbols[-1] += char
            join_next = False
            continue
        join_next = False
        symbols.append(char)
    while symbols and symbols[-1] == WORD_SEPARATOR:
        symbols.pop()
    while symbols and symbols[0] == WORD_SEPARATOR:
        symbols.pop(0)
    return symbols


def phoneme_units(text: str, voice: str = "en-us", keep_stress: bool = False) -> list[str]:
    """The IPA symbols espeak-ng gives for ``text`` (``espeak_ipa`` then ``split_ipa``)."""
    return split_ipa(espeak_ipa(text, voice), keep_stress)


class Vocabulary:
    """CTC symbols: id 0 is the blank, ``symbols[i]`` has id ``i + 1``."""

    def __init__(self, symbols: Sequence[str]):
        symbols = list(symbols)
        if not symbols:
            raise ValueError("a CTC vocabulary needs at least one symbol")
        bad = [s for s in symbols if not isinstance(s, str) or not s or s == BLANK_SYMBOL]
        if bad:
            raise ValueError(
                f"vocabulary symbols must be non-empty strings other than {BLANK_SYMBOL!r}: {bad}"
            )
        if len(set(symbols)) != len(symbols):
            seen, repeated = set(), []
            for s in symbols:
                if s in seen:
                    repeated.append(s)
                seen.add(s)
            raise ValueError(f"vocabulary symbols repeat: {repeated}")
        self.symbols: tuple[str, ...] = tuple(symbols)
        self._ids = {s: i + 1 for i, s in enumerate(symbols)}

    @classmethod
    def characters(cls) -> Vocabulary:
        return cls(CHARACTERS)

    @classmethod
    def from_units(cls, unit_lists: Iterable[Sequence[str]]) -> Vocabulary:
        """The sorted set of the symbols seen (the word separator first when present)."""
        seen = {u for units in unit_lists for u in units}
        if not seen:
            raise ValueError("cannot build a vocabulary: the transcripts have no units")
        ordered = sorted(seen - {WORD_SEPARATOR})
        return cls(([WORD_SEPARATOR] if WORD_SEPARATOR in seen else []) + ordered)

    def __len__(self) -> int:
        """Number of classes of the CTC head: the symbols plus the blank."""
        return len(self.symbols) + 1

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.symbols == other.symbols

    def __hash__(self) -> int:
        return hash(self.symbols)

    def __repr__(self) -> str:
        return f"Vocabulary({len(self.symbols)} symbols + blank)"

    def __contains__(self, symbol: str) -> bool:
        return symbol in self._ids

    def encode(self, units: Sequence[str], unknown: str = "error", source: str = "transcript") -> list[int]:
        """Units -> ids (1-based). A unit outside the vocabulary raises (``"error"``) or is removed
        (``"drop"``); ``source`` names the transcript in the error."""
        _check_rule(unknown)
        ids = []
        for unit in units:
            index = self._ids.get(unit)
            if index is not None:
                ids.append(index)
            elif unknown == "error":
                raise ValueError(
                    f"{source}: unit {unit!r} is not in the CTC vocabulary ({len(self.symbols)} symbols); "
                    "pass unknown='drop' to remove such units"
                )
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Ids -> units; the blank and out-of-range ids are skipped."""
        return [self.symbols[i - 1] for i in ids if 0 < int(i) <= len(self.symbols)]


class TranscriptTargets:
    """Transcript -> CTC target ids, with one fixed unit type, rule and (after ``fit``) vocabulary.

    Args:
        units: ``"chars"`` (vocabulary ``CHARACTERS``) or ``"phonemes"`` (espeak-ng IPA; the vocabulary
            comes from ``fit`` on the training transcripts, or from ``vocabulary``).
        voice: the espeak-ng voice (language) of the phonemes, e.g. ``en-us``, ``fr``, ``cmn``.
        unknown: ``"error"`` or ``"drop"`` (see the module docstring).
        keep_stress: keep the stress marks as phoneme symbols.
        vocabulary: a fixed symbol list (blank excluded) instead of the default / fitted one.
    """

    def __init__(
        self,
        units: str = "chars",
        voice: str = "en-us",
        unknown: str = "error",
        keep_stress: bool = False,
        vocabulary: Sequence[str] | None = None,
    ):
        if units not in UNITS:
            raise ValueError(f"units must be one of {list(UNITS)}, got {units!r}")
        _check_rule(unknown)
        self.units_kind = units
        self.voice = voice
        self.unknown = unknown
        self.keep_stress = keep_stress
        if vocabulary is not None:
            self.vocabulary: Vocabulary | None = Vocabulary(vocabulary)
        elif units == "chars":
            self.vocabulary = Vocabulary.characters()
        else:
            self.vocabulary = None

    def units(self, text: str, source: str | None = None) -> list[str]:
        """The units of ``text``; errors are prefixed with ``source`` (e.g. the audio file) when given."""
        try:
            if self.units_kind == "chars":
                return char_units(text, self.unknown)
            return phoneme_units(text, self.voice, self.keep_stress)
        except ValueError as err:
            if source is None:
                raise
            raise ValueError(f"{source}: {err}") from err

    def fit(self, texts: Iterable[str], sources: Iterable[str] | None = None) -> Vocabulary:
        """Set the vocabulary from ``texts`` (phonemes without a given vocabulary); returns it.
        ``sources`` (one per text) name the transcripts in errors."""
        if self.vocabulary is None:
            texts = list(texts)
            names = list(sources) if sources is not None else [None] * len(texts)
            if len(names) != len(texts):
                raise ValueError(f"{len(texts)} transcripts but {len(names)} sources")
            self.vocabulary = Vocabulary.from_units(
                self.units(t, n) for t, n in zip(texts, names, strict=True)
            )
        return self.vocabulary

    def __call__(self, text: str, source: str | None = None) -> list[int]:
        """``text`` -> target ids; raises ``ValueError`` (naming ``source``) for an empty result."""
        if self.vocabulary is None:
            raise ValueError("the phoneme vocabulary is not built yet: call fit(training transcripts) first")
        where = f"{source}: transcript {text!r}" if source else f"transcript {text!r}"
        ids = self.vocabulary.encode(self.units(text, source), self.unknown, where)
        if not ids:
            raise ValueError(
                f"{where} has no units left (units={self.units_kind!r}, unknown={self.unknown!r}); "
                "CTC needs at least one target unit"
            )
        return ids


def ctc_min_frames(targets: Sequence[int]) -> int:
    """Fewest input frames CTC needs for ``targets``: one per unit plus a blank between equal neighbours."""
    repeats = sum(1 for a, b in zip(targets, targets[1:], strict=False) if a == b)
    return len(targets) + repeats


def greedy_decode(frame_ids: Sequence[int]) -> list[int]:
    """Best-path CTC decoding of per-frame argmax ids: merge repeats, then drop blanks."""
    out, previous = [], None
    for i in frame_ids:
        i = int(i)
        if i != previous and i != BLANK:
            out.append(i)
        previous = i
    return out


def edit_distance(a: Sequence, b: Sequence) -> int:
    """Levenshtein distance between two sequences."""
    if len(a) < len(b):
        a, b = b, a
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (x != y))
    return row[-1]
