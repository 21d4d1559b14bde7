"""Common English words for the audio encoder: the stand-in for Whisper has heard more than the corpus.

The official model's audio encoder is Whisper, which has heard the words of everyday English; the demo's
tower hears only the corpus's training sentences, so a held-out phrasing with a word no training sentence
has is lost before the LLM reads it ("What do you get when you add zero and ten?" was heard as "What do
you get again you add zero and ten?": no training sentence says "when"). ``common_words`` gives the most
frequent words of English by wordfreq's word lists (a general list, independent of the corpus and of its
held-out split); ``spliced_speech.splice_sentences(..., words=)`` puts three of them into each spliced
sentence, so the tower hears them among the training words.

    >>> words, weights = common_words(100)
    >>> words[:5]
    ['the', 'to', 'and', 'of', 'a']
"""

from __future__ import annotations

import re

WORD = re.compile(r"[a-z]+")  # the letters the tower's character CTC writes (apostrophes left out)
FREQUENCY_POWER = 0.25  # draws weighted by frequency ** 0.25: the commonest words a little more often


def common_words(count: int) -> tuple[list[str], list[float]]:
    """The ``count`` most frequent English words of plain letters a-z (wordfreq's ``top_n_list``) and the
    weight of each for drawing (its frequency to the power ``FREQUENCY_POWER``).

    Args:
        count: how many words (1 to 20000)."""
    if not 1 <= count <= 20000:
        raise ValueError(f"count must be 1 to 20000 common words, got {count}")
    from wordfreq import top_n_list, word_frequency

    words: list[str] = []
    for word in top_n_list("en", 2 * count + 1000):
        if WORD.fullmatch(word):
            words.append(word)
            if len(words) == count:
                break
    return words, [word_frequency(word, "en") ** FREQUENCY_POWER for word in words]
