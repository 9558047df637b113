"""Augmented copies of training texts for distillation's transfer set (Tang et al. 2019).

Each copy changes a text word by word: a word is dropped with probability `drop` (the paper
masks it; a recurrent student has no mask token), or replaced by a random word of the
training texts with probability `swap` (the paper draws one of the same part of speech);
then, with probability `ngram`, only a random span of 1 to 5 words is kept. The teacher
labels the copies, so they need no label: they add in-domain texts near the ones it knows.
Deterministic for a seed. No torch here.
"""

from __future__ import annotations

import random
from collections.abc import Sequence


def augmented_copies(texts: Sequence[str], copies: int, seed: int = 0, drop: float = 0.1,
                     swap: float = 0.1, ngram: float = 0.25) -> list[str]:
    """`copies` changed copies of each text (in order: all copies of the first text, ...);
    copies equal to their text or empty are left out."""
    rng = random.Random(seed)
    vocabulary = sorted({w for t in texts for w in t.split()})
    out = []
    for text in texts:
        words = text.split()
        for _ in range(copies):
            new = []
            for word in words:
                r = rng.random()
                if r < drop:
                    continue
                new.append(rng.choice(vocabulary) if r < drop + swap else word)
            if new and rng.random() < ngram:
                n = rng.randint(1, min(5, len(new)))
                start = rng.randrange(len(new) - n + 1)
                new = new[start:start + n]
            copy = " ".join(new)
            if copy and copy != text:
                out.append(copy)
    return out
