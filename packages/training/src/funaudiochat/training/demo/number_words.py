"""English number words for 0..999, written the way the demo corpus speaks them, and their parse back.

    >>> number_to_words(115)
    'one hundred fifteen'
    >>> numbers_in("Twenty one plus three is twenty four.")
    [21, 3, 24]

Words are lower case and separated by single spaces: no hyphens ("twenty one") and no "and" after
"hundred" ("one hundred fifteen"), so the vocabulary is the 28 words of ``NUMBER_WORDS``.
"""

from __future__ import annotations

import re

ONES = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
)
TENS = ("", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety")
HUNDRED = "hundred"
NUMBER_WORDS = frozenset(ONES) | frozenset(TENS[2:]) | {HUNDRED}
MAX_NUMBER = 999

_WORD = re.compile(r"[a-z]+")


def number_to_words(number: int) -> str:
    """The words of ``number`` (0..999): 7 -> "seven", 40 -> "forty", 115 -> "one hundred fifteen".

    Raises:
        TypeError: ``number`` is not an int (bool included).
        ValueError: ``number`` is outside 0..999.
    """
    if isinstance(number, bool) or not isinstance(number, int):
        raise TypeError(f"number_to_words: {number!r} is not an int")
    if not 0 <= number <= MAX_NUMBER:
        raise ValueError(f"number_to_words: {number} is outside 0..{MAX_NUMBER}")
    hundreds, rest = divmod(number, 100)
    words = [ONES[hundreds], HUNDRED] if hundreds else []
    if rest >= 20:
        tens, ones = divmod(rest, 10)
        words.append(TENS[tens])
        if ones:
            words.append(ONES[ones])
    elif rest or not hundreds:
        words.append(ONES[rest])
    return " ".join(words)


def _read_number(words: list[str], start: int) -> tuple[int, int] | None:
    """The longest number written from ``words[start]`` on, as (value, index after it); None if none."""
    index, value = start, 0
    first = words[index] if index < len(words) else ""
    if first in ONES and ONES.index(first) in range(1, 10) and words[index + 1 : index + 2] == [HUNDRED]:
        value, index = ONES.index(first) * 100, index + 2
        if index >= len(words) or words[index] not in NUMBER_WORDS or words[index] in (HUNDRED, "zero"):
            return value, index
    word = words[index] if index < len(words) else ""
    if word in TENS[2:]:
        value += TENS.index(word) * 10
        index += 1
        if index < len(words) and words[index] in ONES[1:10]:
            value += ONES.index(words[index])
            index += 1
        return value, index
    if word in ONES and not (value and word == "zero"):
        return value + ONES.index(word), index + 1
    return (value, index) if index > start else None


def numbers_in(text: str) -> list[int]:
    """Every number written in words in ``text``, in order, each run read greedily ("twenty one" is 21;
    "five, four" is 5 then 4: punctuation ends a number). Other words are skipped."""
    found: list[int] = []
    for chunk in re.split(r"[^A-Za-z ]+", text):
        words = _WORD.findall(chunk.lower())
        index = 0
        while index < len(words):
            read = _read_number(words, index)
            if read is None:
                index += 1
            else:
                found.append(read[0])
                index = read[1]
    return found


def words_to_number(text: str) -> int:
    """The number that ``text`` spells, exactly (the inverse of ``number_to_words``).

    Raises:
        ValueError: ``text`` is not one number of 0..999 in words.
    """
    words = _WORD.findall(text.lower())
    read = _read_number(words, 0) if words and words == text.lower().split() else None
    if read is None or read[1] != len(words):
        raise ValueError(f"words_to_number: {text!r} is not a number of 0..{MAX_NUMBER} in words")
    return read[0]
