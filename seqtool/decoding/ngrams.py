"""The no-repeat-n-gram rule (`--no-repeat-ngram N`, as fairseq's and Hugging Face's): a token
that would complete an n-gram the sequence already holds is banned.

Pure Python on token lists, so every decoder (sampling, greedy, beam; torch or numpy) applies
the same rule: it asks for the banned ids of each row and masks their scores."""

from __future__ import annotations

from collections.abc import Sequence


def banned_tokens(sequence: Sequence[int], n: int) -> set[int]:
    """The tokens that may not follow `sequence`: each token that once followed the sequence's
    last n-1 tokens (so that it would repeat an n-gram). n <= 0 bans nothing; n == 1 bans every
    token already in the sequence."""
    if n <= 0 or len(sequence) < n - 1:
        return set()
    if n == 1:
        return set(sequence)
    tail = tuple(sequence[len(sequence) - n + 1:])
    return {sequence[i + n - 1] for i in range(len(sequence) - n + 1)
            if tuple(sequence[i:i + n - 1]) == tail}


def banned_per_row(sequences: Sequence[Sequence[int]], n: int) -> list[set[int]]:
    """`banned_tokens` of each row."""
    return [banned_tokens(row, n) for row in sequences]
