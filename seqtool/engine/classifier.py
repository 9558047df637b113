"""S1 classifiers in numpy: `nn.classifier.Classifier` (one GRU or several averaged,
`ensemble`) and `nn.ensemble.ClassifierCombination` (classifiers trained apart), at inference.

y_h(t) = GRU(y_h(t-1), x(t)); y = softmax(W_o pool(y_h)), pool one of max, mean, last
(y_h(T), both directions) or concat (all three side by side, as ULMFiT).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from seqtool.config import ClassifierConfig, CombinedClassifierConfig
from seqtool.engine.cells import RNN, at_padding, final_states
from seqtool.engine.ops import (
    Affine,
    Shapes,
    check_lengths,
    check_weights,
    log_softmax,
    logsumexp,
    rnn_shapes,
    take,
)

POOLINGS = ("max", "mean", "last", "concat")  # as nn.common.POOLINGS


def encoding_dim(c: ClassifierConfig) -> int:
    """Size of one GRU's sentence vector (nn.classifier.encoding_dim)."""
    states = c.hidden_dim * (2 if c.bidirectional else 1)
    return states * 3 if c.pooling == "concat" else states


def classifier_shapes(c: ClassifierConfig, prefix: str = "") -> Shapes:
    """The state_dict of nn.classifier.Classifier(c): names and shapes."""
    shapes: Shapes = {}
    for m in range(c.ensemble):
        member = f"{prefix}members.{m}."
        shapes[member + "embedding.weight"] = (c.vocab_size, c.embed_dim)
        shapes.update(rnn_shapes(member + "rnn.", "gru", c.embed_dim, c.hidden_dim, c.layers,
                                 c.bidirectional))
        shapes[member + "output.weight"] = (c.num_classes, encoding_dim(c))
        shapes[member + "output.bias"] = (c.num_classes,)
    return shapes


class GRUClassifier:
    """One member: embedding -> GRU -> pooled states -> class scores."""

    def __init__(self, c: ClassifierConfig, weights: Mapping[str, np.ndarray], prefix: str,
                 dtype: np.dtype):
        self.config = c
        embedding = take(weights, prefix + "embedding.weight", dtype)
        self.rnn = RNN(weights, prefix + "rnn.", "gru", c.layers, c.bidirectional, dtype,
                       embedding)
        self.output = Affine(take(weights, prefix + "output.weight", dtype, copy=False),
                             take(weights, prefix + "output.bias", dtype))

    def encode(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """The pooled sentence vector [B, encoding_dim]."""
        out = self.rnn.run_padded(tokens, lengths)  # [D, T, B, H], reading order
        pooling = self.config.pooling
        if pooling == "last":
            return final_states(out, lengths)
        pad_t, pad_b = at_padding(lengths, out.shape[1])
        pooled = []
        if pooling == "concat":
            pooled.append(final_states(out, lengths))
        if pooling in ("mean", "concat"):  # (max and mean ignore the order of the steps)
            out[:, pad_t, pad_b] = 0
            mean = out.sum(1) / lengths[None, :, None].astype(out.dtype)
        if pooling in ("max", "concat"):
            out[:, pad_t, pad_b] = -np.inf
            pooled.append(np.concatenate(list(out.max(1)), -1))
        if pooling in ("mean", "concat"):
            pooled.append(np.concatenate(list(mean), -1))
        return np.concatenate(pooled, -1) if len(pooled) > 1 else pooled[0]

    def logits(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.output(self.encode(tokens, lengths))


class Classifier:
    """S1 (`nn.classifier.Classifier`): with `ensemble` > 1 the log of the mean class
    distribution of its GRUs."""

    def __init__(self, config: ClassifierConfig | dict, weights: Mapping[str, np.ndarray],
                 dtype: np.dtype = np.float32, prefix: str = "", check: bool = True):
        c = config if isinstance(config, ClassifierConfig) else ClassifierConfig.from_dict(config)
        if c.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {c.pooling!r}: {', '.join(POOLINGS)}")
        if check:
            check_weights(weights, classifier_shapes(c, prefix), "classifier")
        self.config = c
        self.dtype = np.dtype(dtype)
        self.members = [GRUClassifier(c, weights, f"{prefix}members.{m}.", self.dtype)
                        for m in range(c.ensemble)]

    @property
    def encoding_dim(self) -> int:
        return encoding_dim(self.config) * self.config.ensemble

    def encode(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """One vector per sentence [B, encoding_dim]: the sentence embedding."""
        tokens, lengths = check_lengths(tokens, lengths)
        if not len(lengths):
            return np.zeros((0, self.encoding_dim), self.dtype)
        return np.concatenate([m.encode(tokens, lengths) for m in self.members], -1)

    def logits(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Class scores [B, C] (log of the mean distribution for an ensemble): softmax of
        them gives the probabilities."""
        tokens, lengths = check_lengths(tokens, lengths)
        if not len(lengths):
            return np.zeros((0, self.config.num_classes), self.dtype)
        if len(self.members) == 1:
            return self.members[0].logits(tokens, lengths)
        log_probs = np.stack([log_softmax(m.logits(tokens, lengths)) for m in self.members])
        return logsumexp(log_probs, 0) - math.log(len(self.members))

    __call__ = logits


class ClassifierCombination:
    """`nn.ensemble.ClassifierCombination`: classifiers trained apart, each reading the text
    through its own tokenizer (the caller's business); `combine` averages their class
    distributions, each weighted by its number of GRUs."""

    def __init__(self, config: CombinedClassifierConfig | dict,
                 weights: Mapping[str, np.ndarray], dtype: np.dtype = np.float32):
        c = (config if isinstance(config, CombinedClassifierConfig)
             else CombinedClassifierConfig.from_dict(config))
        parts = [ClassifierConfig.from_dict(p) for p in c.parts]
        if len({p.num_classes for p in parts}) != 1:
            raise ValueError("combined classifiers must have the same number of classes")
        shapes: Shapes = {}
        for i, p in enumerate(parts):
            shapes.update(classifier_shapes(p, f"parts.{i}."))
        check_weights(weights, shapes, "classifier combination")
        self.config = c
        self.parts = [Classifier(p, weights, dtype, f"parts.{i}.", check=False)
                      for i, p in enumerate(parts)]

    @property
    def encoding_dim(self) -> int:
        return sum(p.encoding_dim for p in self.parts)

    def combine(self, part_probabilities: Sequence[np.ndarray]) -> np.ndarray:
        """[N, C] class distributions of the parts -> their mean, each weighted by its GRUs."""
        weights = [len(p.members) for p in self.parts]
        if len(part_probabilities) != len(weights):
            raise ValueError(f"{len(weights)} parts, {len(part_probabilities)} distributions")
        return sum(w * q for w, q in zip(weights, part_probabilities)) / sum(weights)
