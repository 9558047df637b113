"""Batches of piece ids: right-padded id arrays with their lengths, and length-sorted index
groups (little padding). numpy only; the torch models' batch layouts are `nn/batches.py`."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

from seqtool.text.tokenizer import PAD


def pad_ids(sequences: Sequence[Sequence[int]], empty: int = PAD
            ) -> tuple[np.ndarray, np.ndarray]:
    """Right-padded [B, T] int64 ids and their lengths [B]; an empty sequence reads one
    `empty` token (every row has at least one position)."""
    sequences = [list(s) or [empty] for s in sequences]
    lengths = np.asarray([len(s) for s in sequences], np.int64)
    out = np.full((len(sequences), max(1, int(lengths.max(initial=1)))), PAD, np.int64)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = s
    return out, lengths


def length_sorted(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
