"""Batches of piece ids: right-padded tensors with their lengths, one layout per task, and
length-sorted index groups (little padding)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from seqtool.text.tokenizer import END, PAD, START


def pad(sequences: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded [B, T] ids and their lengths [B]."""
    lengths = torch.tensor([len(s) for s in sequences], dtype=torch.long)
    out = torch.full((len(sequences), max(1, int(lengths.max()))), PAD, dtype=torch.long)
    for i, s in enumerate(sequences):
        out[i, : len(s)] = torch.tensor(s, dtype=torch.long)
    return out, lengths


def classify_batch(ids: Sequence[Sequence[int]], labels: Sequence[int] | None = None):
    tokens, lengths = pad([s or [PAD] for s in ids])
    lengths = lengths.clamp(min=1)
    batch = {"tokens": tokens, "lengths": lengths}
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
    s, s_len = pad([x or [END] for x in src])
    batch = {"src": s, "src_lengths": s_len.clamp(min=1)}
    if tgt is not None:
        batch["tgt_in"], _ = pad([[START, *x] for x in tgt])
        batch["tgt_out"], _ = pad([[*x, END] for x in tgt])
    return batch


def pretrain_batch(ids: Sequence[Sequence[int]]) -> dict[str, torch.Tensor]:
    tokens, lengths = pad([[START, *s, END] for s in ids])
    return {"tokens": tokens, "lengths": lengths}



def length_sorted(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
