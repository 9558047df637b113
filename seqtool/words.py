"""What counts as a word: shared by the lexicon of decoding and the non-word metrics."""

from __future__ import annotations

import re

WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")


def words(text: str) -> list[str]:
    """The lower-cased words of a text: runs of letters, with inner apostrophes (don't)."""
    return WORD.findall(text.lower())


CLITICS = ("s", "t", "d", "ll", "re", "ve", "m")


def is_known(word: str, vocabulary: set[str]) -> bool:
    """A word of the vocabulary; a word with an apostrophe also when its parts are known words
    or clitics (didn't, film's)."""
    return word in vocabulary or ("'" in word and all(
        part in vocabulary or part in CLITICS for part in word.split("'")))

