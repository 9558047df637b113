"""Batches as the torch models read them: right-padded id tensors with their lengths, one
layout per task (training, and the torch-only scoring of likelihoods)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from seqtool.text.batching import pad_ids
from seqtool.text.tokenizer import END, START


def pad(sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded [B, T] ids and their lengths [B] (an empty sequence has length 0)."""
    ids, lengths = pad_ids(sequences)
    lengths[[not s for s in sequences]] = 0
    return torch.from_numpy(ids), torch.from_numpy(lengths)


def classify_batch(ids: Sequence[Sequence[int]], labels: Sequence[int] | None = None):
    tokens, lengths = pad_ids(ids)
    batch = {"tokens": torch.from_numpy(tokens), "lengths": torch.from_numpy(lengths)}
    if labels is not None:
        batch["labels"] = torch.tensor(labels, dtype=torch.long)
    return batch


def generate_batch(labels: Sequence[int], ids: Sequence[Sequence[int]]):
    """Teacher forcing: the input is <start> c(1) ... c(T), the target c(1) ... c(T) <end>."""
    inputs, lengths = pad([[START, *s] for s in ids])
    targets, _ = pad([[*s, END] for s in ids])
    return {"labels": torch.tensor(labels, dtype=torch.long), "inputs": inputs,
            "targets": targets, "lengths": lengths}


def translate_batch(src: Sequence[Sequence[int]], tgt: Sequence[Sequence[int]] | None = None):
    s, s_len = pad_ids(src, empty=END)
    batch = {"src": torch.from_numpy(s), "src_lengths": torch.from_numpy(s_len)}
    if tgt is not None:
        batch["tgt_in"], _ = pad([[START, *x] for x in tgt])
        batch["tgt_out"], _ = pad([[*x, END] for x in tgt])
    return batch


def pretrain_batch(ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    tokens, lengths = pad([[START, *s, END] for s in ids])
    return {"tokens": tokens, "lengths": lengths}
