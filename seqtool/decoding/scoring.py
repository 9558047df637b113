"""Models applied to many inputs in length-sorted batches: class probabilities, sentence
vectors, likelihoods. Used by inference and by training's dev evaluation alike."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from seqtool.config import MAX_INPUT_LENGTH
from seqtool.engine.ops import log_softmax, softmax
from seqtool.text.batching import length_sorted, pad_ids
from seqtool.text.tokenizer import END, START, Tokenizer


def classify_outputs(
    model: Any, tokenizer: Tokenizer, texts: Sequence[str], batch_size: int = 128,
    encode_only: bool = False, max_length: int = MAX_INPUT_LENGTH,
) -> np.ndarray:
    """Class probabilities [N, C] (or sentence vectors with `encode_only`), float32 numpy, in
    input order, from a classifier of either backend.

    Inputs longer than `max_length` pieces are cut (0 = no limit; a warning on stderr)."""
    scorer = classifier_scorer(model)
    if scorer.parts is not None:  # a combination: each part reads its own pieces
        encoded: dict[int, list[list[int]]] = {}  # parts that share a tokenizer share them
        outputs = []
        for part, part_tokenizer in zip(scorer.parts, scorer.tokenizers, strict=True):
            if id(part_tokenizer) not in encoded:
                encoded[id(part_tokenizer)] = part_tokenizer.encode_batch(
                    list(texts), max_length=max_length)
            outputs.append(_classify_ids(part, encoded[id(part_tokenizer)], batch_size,
                                         encode_only))
        return np.concatenate(outputs, -1) if encode_only else scorer.combine(outputs)
    return _classify_ids(scorer, tokenizer.encode_batch(list(texts), max_length=max_length),
                         batch_size, encode_only)


def _classify_ids(scorer: Any, ids: list[list[int]], batch_size: int,
                  encode_only: bool) -> np.ndarray:
    dim = scorer.encoding_dim if encode_only else scorer.num_classes
    out = np.zeros((len(ids), dim), np.float32)
    with scorer.pass_of(len(ids)):
        for idx in length_sorted([len(s) for s in ids], batch_size):
            tokens, lengths = pad_ids([ids[i] for i in idx])
            if encode_only:
                out[idx] = scorer.encode(tokens, lengths)
            else:
                out[idx] = softmax(np.asarray(scorer.logits(tokens, lengths), np.float32))
    return out


def classifier_scorer(model: Any) -> Any:
    """What `classify_outputs` calls: encode / logits (numpy in, numpy out), encoding_dim,
    num_classes, parts / tokenizers / combine (combinations), pass_of (a context for a pass
    over N texts)."""
    if type(model).__module__.startswith("seqtool.engine"):
        return NumpyClassifier(model)
    from seqtool.decoding.torch_steps import TorchClassifier

    return TorchClassifier(model)


class NumpyClassifier:
    """`classifier_scorer` of a numpy classifier of `seqtool.engine`."""

    def __init__(self, model: Any):
        self.model = model
        self.encoding_dim = model.encoding_dim
        self.num_classes = model.config.num_classes
        parts = getattr(model, "parts", None)
        self.parts = [NumpyClassifier(p) for p in parts] if parts is not None else None
        self.tokenizers = getattr(model, "tokenizers", None)

    def encode(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.model.encode(tokens, lengths)

    def logits(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.model.logits(tokens, lengths)

    def combine(self, probabilities: list[np.ndarray]) -> np.ndarray:
        return np.asarray(self.model.combine(probabilities), np.float32)

    def pass_of(self, count: int) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext()


def classify_probabilities(
    model, tokenizer, texts, batch_size: int = 128, max_length: int = MAX_INPUT_LENGTH
) -> np.ndarray:
    return classify_outputs(model, tokenizer, texts, batch_size, max_length=max_length)


def sentence_nll(
    model: Any, labels: Sequence[int], ids: Sequence[Sequence[int]], batch_size: int = 128
) -> tuple[np.ndarray, np.ndarray]:
    """-log p(x|c) of each sentence x under its class c [N] (float64), and its token counts
    [N] (including <end>), under a generator of either backend."""
    nll = np.zeros(len(ids), np.float64)
    numpy_model = type(model).__module__.startswith("seqtool.engine")
    for idx in length_sorted([len(s) for s in ids], batch_size):
        ys = np.asarray([labels[i] for i in idx], np.int64)
        inputs, lengths = pad_ids([[START, *ids[i]] for i in idx])
        targets, _ = pad_ids([[*ids[i], END] for i in idx])
        if numpy_model:  # a unidirectional model: padding after a sentence cannot reach it
            logp = log_softmax(model.forward(ys, inputs)[0])
            picked = np.take_along_axis(logp, targets[..., None], -1)[..., 0]
            within = np.arange(targets.shape[1]) < lengths[:, None]
            nll[idx] = -np.where(within, picked, 0.0).sum(1)
        else:
            nll[idx] = _torch_sentence_nll(model, ys, inputs, targets, lengths)
    return nll, np.asarray([len(s) + 1 for s in ids], np.float64)


def _torch_sentence_nll(model: Any, labels: np.ndarray, inputs: np.ndarray,
                        targets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    import torch

    from seqtool.device import model_device

    model.eval()
    device = model_device(model)
    batch = {"inputs": inputs, "targets": targets, "lengths": lengths}
    batch = {k: torch.as_tensor(v, device=device) for k, v in batch.items()}
    with torch.no_grad():
        nll = model.sentence_nll(torch.as_tensor(labels, device=device), batch)
    return nll.double().cpu().numpy()


def language_model_nll(
    model: Any, ids: Sequence[Sequence[int]], batch_size: int = 128
) -> tuple[Any, int]:
    """Summed NLL per direction [directions] of sentences under a pretrained language model
    (forward first), and the number of pieces each direction predicts (<end> or <start>
    included)."""
    import torch

    from seqtool.device import model_device
    from seqtool.nn.batches import pretrain_batch

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
    return float(np.exp(float(nll.sum()) / float(counts.sum())))

