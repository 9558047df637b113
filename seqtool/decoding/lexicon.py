"""Closed-vocabulary sampling: only words the model was shown.

A generator over sentencepiece pieces spells rare words from smaller pieces, so it can also
spell words that do not exist ("cudly", "refreshs"). A word-level language model cannot; a
`Lexicon` gives the subword model the same guarantee, as lexicon-constrained decoding does in
speech and handwriting recognition: at every step a piece is allowed only if the word it
continues can still become a word of the lexicon, and a piece that ends a word (a space,
punctuation, <end>) only if that word is one. By default the lexicon is the words of the
model's training text, stored in its checkpoint; the model's own distribution, renormalised
over the allowed pieces, does the rest.

Words are those of `metrics.words` (lower-cased letter runs with inner apostrophes), so a
sample drawn under a lexicon holds no word outside it by the evaluation's own definition.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from seqtool.errors import SeqtoolError
from seqtool.text.tokenizer import END, UNK, Tokenizer
from seqtool.words import CLITICS, WORD, is_known, words


def words_of(texts: Iterable[str]) -> set[str]:
    """The lexicon of a text: every word in it."""
    return {w for text in texts for w in words(text)}


def read_lexicon(path: str | Path) -> set[str]:
    """The words of a file: a word list (one per line) or any text."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            found = words_of(f)
    except OSError as e:
        raise SeqtoolError(f"cannot read: {e.strerror or e}", str(path)) from None
    if not found:
        raise SeqtoolError("no word in this lexicon file", str(path))
    return found


class Lexicon:
    """The allowed next pieces for every state of a sample. A state is the open word at the
    end of the text so far (`""` at a word boundary), called its tail."""

    def __init__(self, lexicon: Iterable[str], tokenizer: Tokenizer):
        self.words = set(lexicon)
        if not self.words:
            raise SeqtoolError("the lexicon holds no word")
        self.prefixes = {w[:i] for w in self.words for i in range(len(w) + 1)}
        # Piece texts as decoding writes them; control pieces (<unk>...) count as a boundary.
        texts = [p.replace("\u2581", " ").lower() for p in
                 tokenizer.id_to_piece(range(tokenizer.vocab_size))]
        self.texts = [" " if i <= END else t for i, t in enumerate(texts)]
        # Pieces that start with a word character extend the tail; the others end it.
        extends = [i for i, t in enumerate(self.texts) if t[:1].isalpha() or t[:1] == "'"]
        self._letters = [i for i in extends if self.texts[i].isalpha() and
                         self.texts[i].isascii()]
        self._mixed = sorted(set(extends) - set(self._letters))
        self._after_boundary = np.array([self.step("", t) is not None for t in self.texts])
        self._after_boundary[END] = True
        self._after_boundary[UNK] = False  # "⁇" is no word either
        self._boundary = np.ones(len(self.texts), dtype=bool)
        self._boundary[extends] = False
        self._masks: dict[str, np.ndarray] = {}
        self._next: dict[tuple[str, int], str | None] = {}

    def known(self, word: str) -> bool:
        return is_known(word, self.words)

    def completable(self, tail: str) -> bool:
        """Whether an open word can still become a lexicon word (or a clitic form of one)."""
        if tail in self.prefixes:
            return True
        *done, last = tail.split("'")
        return bool(done) and all(self.known(p) or p in CLITICS for p in done) and (
            last in self.prefixes or any(c.startswith(last) for c in CLITICS))

    def can_end(self, tail: str) -> bool:
        return not tail or self.known(tail) or (tail.endswith("'") and self.known(tail[:-1]))

    def step(self, tail: str, text: str) -> str | None:
        """The tail after appending a piece's text, or None when it makes a non-word."""
        extended = tail + text
        new_tail = ""
        for match in WORD.finditer(extended):
            word, end = match.group(), match.end()
            if end == len(extended):  # still open
                if not self.completable(word):
                    return None
                new_tail = word
            elif end == len(extended) - 1 and extended[end] == "'":  # "dogs'" or "dog's"
                if not (self.known(word) or self.completable(word + "'")):
                    return None
                new_tail = word + "'"
            elif not self.known(word):
                return None
        return new_tail

    def allowed(self, tail: str) -> np.ndarray:
        """Boolean mask over the vocabulary: the pieces that may follow `tail`."""
        mask = self._masks.get(tail)
        if mask is None:
            mask = self._after_boundary & self._boundary if self.can_end(tail) else \
                np.zeros(len(self.texts), dtype=bool)
            mask = mask.copy()
            mask[END] = self.can_end(tail)
            letters = [i for i in self._letters if self.completable(tail + self.texts[i])]
            mixed = [i for i in self._mixed if self.step(tail, self.texts[i]) is not None]
            mask[letters + mixed] = True
            self._masks[tail] = mask
        return mask

    def advance(self, tail: str, piece: int) -> str:
        key = (tail, piece)
        if key not in self._next:
            self._next[key] = self.step(tail, self.texts[piece])
        # A piece the mask did not allow (a row with no allowed piece): restart at a boundary.
        return self._next[key] or ""

    def tail_of(self, text: str) -> str:
        """The open word at the end of a prompt (not checked: the prompt is the user's)."""
        text = text.lower()
        matches = list(WORD.finditer(text))
        if not matches or matches[-1].end() < len(text) - text.endswith("'"):
            return ""
        return text[matches[-1].start():]


def resolve_lexicon(option: str, stored: Sequence[str] | None) -> set[str] | None:
    """--lexicon: "model" = the words stored in the checkpoint (none stored: no constraint),
    "none" = no constraint, else a file of words."""
    if option == "none":
        return None
    if option == "model":
        return set(stored) if stored else None
    return read_lexicon(option)
