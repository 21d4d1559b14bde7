"""Spliced sentences for the audio encoder: the training words in orders no training sentence has.

A small tower trained with CTC on a few thousand sentences learns their patterns along with their words:
on the demo build it transcribed training sentences at 11 % token error but held-out *phrasings*, spoken
in the very same training voices, at 29 % ("What is sixteen plus two?" heard as "What is sixteen two?":
"plus" had only been heard after "X" in "X plus Y equals what") (``docs/experiments/demo_model``). So
the audio encoder also hears sentences spliced from short spans of two to three training sentences (a
span: two to four consecutive words), spoken in the training voices and speeds: the words and their local
sound as in training, the word order new. Only training text is used, so no held-out phrasing leaks in.

Example:
    >>> splice_sentences(["What is two plus two?", "Add one to five."], 2, seed=0)
    ['One to one to five add one to.', 'Add one add one to five.']
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Sequence
from pathlib import Path

from .english_words import common_words
from .number_words import _read_number, number_to_words

SPAN_WORDS = (2, 4)  # words per span, inclusive
SPANS = (2, 3)  # spans per sentence, inclusive
WORDS_PUT_IN = 3  # words of ``splice_sentences``'s ``words`` in each sentence (when it has any)


def splice_sentences(
    texts: Sequence[str],
    count: int,
    seed: int,
    words: Sequence[str] = (),
    word_weights: Sequence[float] | None = None,
) -> list[str]:
    """``count`` sentences, each the spans of ``SPANS`` randomly chosen ``texts`` joined (module docstring);
    the first letter upper-case, ending in "." or "?" (the ending of the last span's sentence). With
    ``words``, each sentence also gets ``WORDS_PUT_IN`` of them, drawn by ``word_weights``, each at a span
    boundary (its start and end included); the spans are those drawn without ``words``.

    Args:
        texts: training sentences (at least two words each are used; shorter ones are skipped).
        count: how many sentences to make.
        seed: the seed of every draw.
        words: words to put into the sentences (``english_words.common_words``), or none.
        word_weights: the weight of each of ``words`` for drawing (None: equal)."""
    sentences = [text.split() for text in texts if len(text.split()) >= 2]
    if not sentences:
        raise ValueError("no training sentence of two words or more to splice")
    if word_weights is not None and len(word_weights) != len(words):
        raise ValueError(f"word_weights has {len(word_weights)} weights for {len(words)} words")
    rng = random.Random(seed)
    extra = random.Random(f"{seed}:words")  # its own draws: the spans stay those drawn without words
    pool = list(words)
    out = []
    for _ in range(count):
        said_words: list[str] = []
        boundaries = [0]
        for _ in range(rng.randint(*SPANS)):
            sentence = rng.choice(sentences)
            size = min(rng.randint(*SPAN_WORDS), len(sentence))
            start = rng.randrange(len(sentence) - size + 1)
            span = [word.strip(".,?!") for word in sentence[start : start + size]]
            if start == 0 and span[0] != "I":  # a sentence's capital, not a name's
                span[0] = span[0].lower()
            said_words += span
            boundaries.append(len(said_words))
        if words:
            for at in sorted(extra.choices(boundaries, k=WORDS_PUT_IN), reverse=True):
                said_words.insert(at, extra.choices(pool, weights=word_weights)[0])
        ending = "?" if sentence[-1].endswith("?") else "."
        said = " ".join(word for word in said_words if word)
        out.append(said[:1].upper() + said[1:] + ending)
    return out


def renumber_sentences(texts: Sequence[str], count: int, seed: int, exclude: Sequence[str] = ()) -> list[str]:
    """``count`` sentences, each a randomly chosen ``texts`` sentence with every number in it replaced by
    a random one of the same kind (0..20 for 0..20; above, 21..the largest number of ``texts``), none of
    them in ``exclude``.

    The speaking head of the demo model says the right kind of reply with the wrong number
    (``docs/experiments/demo_model``): these give it each reply template with many more numbers.

    Example:
        >>> renumber_sentences(["Two plus two is four."], 2, seed=0)
        ['Thirteen plus one is eight.', 'Twelve plus nine is fifteen.']

    Args:
        texts: training sentences (those without a number are skipped).
        count: how many sentences to make.
        seed: the seed of every draw.
        exclude: sentences never to make (e.g. the held-out answers), compared case-insensitively."""
    pieces = [p for p in map(_number_pieces, texts) if any(isinstance(x, int) for x in p)]
    if not pieces:
        raise ValueError("no training sentence with a number written in words to renumber")
    top = max(max(p for p in piece if isinstance(p, int)) for piece in pieces)
    banned = {text.strip().lower() for text in exclude}
    rng = random.Random(seed)
    out: list[str] = []
    for _ in range(count * 100):
        if len(out) == count:
            return out
        said = "".join(
            piece
            if isinstance(piece, str)
            else number_to_words(rng.randint(0, 20) if piece <= 20 else rng.randint(21, max(top, 21)))
            for piece in rng.choice(pieces)
        )
        said = said[:1].upper() + said[1:]
        if said.lower() not in banned:
            out.append(said)
    raise ValueError(f"only {len(out)} of {count} renumbered sentences avoid the excluded ones")


def _number_pieces(text: str) -> list[str | int]:
    """``text`` as its text pieces and, between them, the values of the numbers written in words."""
    tokens = re.findall(r"[A-Za-z]+|[^A-Za-z]+", text)
    pieces: list[str | int] = []
    index = 0
    while index < len(tokens):
        run = [index]  # the words from here on joined by single spaces: where a number can run
        while run[-1] + 2 < len(tokens) and tokens[run[-1] + 1] == " " and tokens[run[-1] + 2].isalpha():
            run.append(run[-1] + 2)
        read = _read_number([tokens[k].lower() for k in run], 0) if tokens[index].isalpha() else None
        if read is None:
            pieces.append(tokens[index])
            index += 1
        else:
            pieces.append(read[0])
            index = run[read[1] - 1] + 1
    return pieces


def speak_spliced(
    pairs_files: Sequence[Path],
    out: Path,
    count: int,
    voices: Sequence[str],
    speeds: Sequence[int],
    seed: int,
    common: int = 0,
) -> list[dict[str, str]]:
    """Speak ``count`` spliced sentences of the questions and answers in ``pairs_files`` (corpus JSONL)
    into ``out`` (``spliced_<i>.wav``, built beside it and renamed into place, kept when it is whole
    already); returns the manifest lines (``speak_sentences``).

    Args:
        pairs_files: corpus pair files of the training split (``"question"`` and ``"answer"`` fields).
        out: the folder of the audio and of its ``manifest.jsonl``.
        count: how many sentences.
        voices, speeds: espeak-ng voices and words-per-minute drawn per sentence.
        seed: the seed of the sentences and of the voice and speed draws.
        common: > 0: each sentence also says ``WORDS_PUT_IN`` of the ``common`` most frequent English words
            (``english_words.common_words``); 0: training words only."""
    texts = []
    for path in pairs_files:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                record = json.loads(line)
                texts += [record["question"], record["answer"]]
    words, weights = common_words(common) if common > 0 else ([], None)
    sentences = splice_sentences(texts, count, seed, words, weights)
    return speak_sentences(sentences, out, voices, speeds, seed)


def speak_sentences(
    sentences: Sequence[str],
    out: Path,
    voices: Sequence[str],
    speeds: Sequence[int],
    seed: int,
    prefix: str = "spliced",
) -> list[dict]:
    """Speak ``sentences`` into ``out`` (``<prefix>_<i>.wav`` and ``manifest.jsonl``, built beside it and
    renamed into place; kept when it is whole already and says these sentences in the voices and speeds
    drawn now, replaced otherwise); returns the manifest lines ``{"audio": absolute path, "text": sentence,
    "voice", "speed"}``. ``voices``, ``speeds``: drawn per sentence with ``seed``."""
    from funaudiochat.base.atomic import atomic_folder

    from ..data.synth import speak

    rng = random.Random(seed + 1)
    plan = [(sentence, rng.choice(list(voices)), rng.choice(list(speeds))) for sentence in sentences]
    manifest = out / "manifest.jsonl"
    if manifest.is_file():
        kept = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line]
        if [(line["text"], line.get("voice"), line.get("speed")) for line in kept] == plan:
            return kept
    lines = []
    with atomic_folder(out) as staging:
        for index, (sentence, voice, speed) in enumerate(plan):
            name = f"{prefix}_{index:05d}.wav"
            speak("espeak-ng", sentence, voice, speed, staging / name)
            lines.append(
                {"audio": str(out.resolve() / name), "text": sentence, "voice": voice, "speed": speed}
            )
        text = "".join(json.dumps(line) + "\n" for line in lines)
        (staging / "manifest.jsonl").write_text(text, encoding="utf-8")
    return lines
