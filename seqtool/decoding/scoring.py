"""Models applied to many inputs in length-sorted batches: class probabilities, sentence
vectors, likelihoods. Used by inference and by training's dev evaluation alike."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from seqtool.checkpoint import one_thread
from seqtool.config import MAX_INPUT_LENGTH
from seqtool.device import model_device
from seqtool.nn.ensemble import ClassifierCombination
from seqtool.text.batching import classify_batch, generate_batch, length_sorted, pretrain_batch
from seqtool.text.tokenizer import Tokenizer


@torch.no_grad()
def classify_outputs(
    model: nn.Module, tokenizer: Tokenizer, texts: Sequence[str], batch_size: int = 128,
    encode_only: bool = False, max_length: int = MAX_INPUT_LENGTH,
) -> torch.Tensor:
    """Class probabilities [N, C] (or sentence vectors with `encode_only`) in input order.

    Inputs longer than `max_length` pieces are cut (0 = no limit; a warning on stderr)."""
    if isinstance(model, ClassifierCombination):  # each part reads its own pieces
        encoded: dict[int, list[list[int]]] = {}  # parts that share a tokenizer share them
        outputs = []
        for part, part_tokenizer in zip(model.parts, model.tokenizers, strict=True):
            if id(part_tokenizer) not in encoded:
                encoded[id(part_tokenizer)] = part_tokenizer.encode_batch(
                    list(texts), max_length=max_length)
            outputs.append(_classify_ids(part, encoded[id(part_tokenizer)], batch_size,
                                         encode_only))
        return torch.cat(outputs, -1) if encode_only else model.combine(outputs)
    return _classify_ids(model, tokenizer.encode_batch(list(texts), max_length=max_length),
                         batch_size, encode_only)


def _classify_ids(model: nn.Module, ids: list[list[int]], batch_size: int,
                  encode_only: bool) -> torch.Tensor:
    if len(ids) <= FEW_TEXTS:
        with one_thread():  # a one-line call: more threads only wait for each other
            return _classify_batches(model, ids, batch_size, encode_only)
    return _classify_batches(model, ids, batch_size, encode_only)


FEW_TEXTS = 8  # inputs this small run on one thread


def _classify_batches(model: nn.Module, ids: list[list[int]], batch_size: int,
                      encode_only: bool) -> torch.Tensor:
    model.eval()
    dim = model.encoding_dim if encode_only else model.config.num_classes
    out = torch.zeros(len(ids), dim)
    device = model_device(model)
    for idx in length_sorted([len(s) for s in ids], batch_size):
        batch = classify_batch([ids[i] for i in idx])
        tokens, lengths = batch["tokens"].to(device), batch["lengths"].to(device)
        if encode_only:
            out[idx] = model.encode(tokens, lengths).float().cpu()
        else:
            out[idx] = torch.softmax(model(tokens, lengths).float(), -1).cpu()
    return out


def classify_probabilities(
    model, tokenizer, texts, batch_size: int = 128, max_length: int = MAX_INPUT_LENGTH
) -> torch.Tensor:
    return classify_outputs(model, tokenizer, texts, batch_size, max_length=max_length)


@torch.no_grad()
def sentence_nll(
    model: nn.Module, labels: Sequence[int], ids: Sequence[Sequence[int]], batch_size: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sentence summed NLL [N] and token counts [N] (including <end>)."""
    model.eval()
    nll = torch.zeros(len(ids), dtype=torch.float64)
    device = model_device(model)
    for idx in length_sorted([len(s) for s in ids], batch_size):
        batch = generate_batch([labels[i] for i in idx], [ids[i] for i in idx])
        batch = {k: v.to(device) for k, v in batch.items()}
        nll[idx] = model.sentence_nll(batch["labels"], batch).double().cpu()
    return nll, torch.tensor([len(s) + 1 for s in ids], dtype=torch.float64)


def language_model_nll(
    model: nn.Module, ids: Sequence[Sequence[int]], batch_size: int = 128
) -> tuple[torch.Tensor, int]:
    """Summed NLL per direction [directions] of sentences under a pretrained language model
    (forward first), and the number of pieces each direction predicts (<end> or <start>
    included)."""
    model.eval()
    device = model_device(model)
    total = torch.zeros(2 if model.config.bidirectional else 1, dtype=torch.float64)
    with torch.no_grad():
        for idx in length_sorted([len(s) for s in ids], batch_size):
            batch = {k: v.to(device) for k, v in pretrain_batch([ids[i] for i in idx]).items()}
            total += model.piece_nll(batch["tokens"], batch["lengths"]).double().sum((1, 2)).cpu()
    return total, sum(len(s) + 1 for s in ids)


def corpus_perplexity(model, labels, ids) -> float:
    nll, counts = sentence_nll(model, labels, ids)
    return float(torch.exp(nll.sum() / counts.sum()))

