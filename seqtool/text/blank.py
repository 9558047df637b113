"""What an empty line is, for every command: one whose text has no visible character.

Whitespace, control characters (NUL) and invisible format characters (U+200B zero-width space,
U+FEFF, soft hyphens) show nothing and give the models nothing to read (sentencepiece drops
most of them), so a line of only those is empty: `classify` gives it no label, `translate` an
empty translation, `generate -i` the empty prompt, as for a line with no characters at all."""

from __future__ import annotations

import unicodedata

INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf"})  # control (NUL, DEL...) and format (U+200B...)


def is_blank(text: str) -> bool:
    """Whether `text` shows nothing: only whitespace, control and format characters."""
    for char in text:
        if not (char.isspace() or unicodedata.category(char) in INVISIBLE_CATEGORIES):
            return False
    return True
