"""The pretraining language model in numpy: `nn.language_model.LanguageModel` at inference
(`predicting_states`, `piece_nll`), for perplexities without torch.

The forward direction's y_h(t), having read pieces 0..t, predicts piece t + 1; the backward
direction's (when bidirectional), having read pieces t..n+1, predicts piece t - 1; both
through a bottleneck and the output layer tied to the input embeddings.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from seqtool.config import LanguageModelConfig
from seqtool.engine.cells import RNN, text_order
from seqtool.engine.ops import (
    GATES,
    Affine,
    Shapes,
    check_lengths,
    check_weights,
    log_softmax,
    rnn_shapes,
    take,
)


def language_model_shapes(c: LanguageModelConfig) -> Shapes:
    """The state_dict of nn.language_model.LanguageModel(c): names and shapes."""
    shapes: Shapes = {"embedding.weight": (c.vocab_size, c.embed_dim)}
    shapes.update(rnn_shapes("rnn.", c.rnn, c.embed_dim, c.hidden_dim, c.layers,
                             c.bidirectional))
    shapes["bottleneck.weight"] = (c.embed_dim, c.hidden_dim)
    shapes["bottleneck.bias"] = (c.embed_dim,)
    shapes["output.weight"] = (c.vocab_size, c.embed_dim)
    shapes["output.bias"] = (c.vocab_size,)
    return shapes


class LanguageModel:
    """`nn.language_model.LanguageModel` for inference (no dropout)."""

    def __init__(self, config: LanguageModelConfig | dict, weights: Mapping[str, np.ndarray],
                 dtype: np.dtype = np.float32):
        c = (config if isinstance(config, LanguageModelConfig)
             else LanguageModelConfig.from_dict(config))
        if c.rnn not in GATES:
            raise ValueError(f"unknown rnn {c.rnn!r}: gru or lstm")
        if c.bidirectional and c.layers > 1:
            raise ValueError("a bidirectional language model has one layer")
        check_weights(weights, language_model_shapes(c), "language model")
        self.config = c
        self.dtype = dtype = np.dtype(dtype)
        self.rnn = RNN(weights, "rnn.", c.rnn, c.layers, c.bidirectional, dtype,
                       take(weights, "embedding.weight", dtype))
        self.bottleneck = Affine(take(weights, "bottleneck.weight", dtype, copy=False),
                                 take(weights, "bottleneck.bias", dtype))
        self.output = Affine(take(weights, "output.weight", dtype, copy=False),
                             take(weights, "output.bias", dtype))

    def predicting_states(self, tokens: np.ndarray,
                          lengths: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per direction, the states [B, T-1, H] and the pieces [B, T-1] they predict, for
        `<start> x(1) ... x(n) <end>` batches [B, T]."""
        tokens, lengths = check_lengths(tokens, lengths)
        h = self.config.hidden_dim
        out = text_order(self.rnn.run_padded(tokens, lengths), lengths, tokens.shape[1])
        pairs = [(out[:, :-1, :h], tokens[:, 1:])]
        if self.config.bidirectional:
            pairs.append((out[:, 1:, h:], tokens[:, :-1]))
        return pairs

    def piece_nll(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """NLL [directions, B, T-1] of every piece (zero at padding): forward from the left
        context, backward from the right."""
        tokens, lengths = check_lengths(tokens, lengths)
        real = np.arange(tokens.shape[1] - 1)[None] < (lengths - 1)[:, None]
        nll = []
        for states, targets in self.predicting_states(tokens, lengths):
            per_piece = np.zeros(targets.shape, self.dtype)
            hidden, wanted = states[real], targets[real]
            parts = []
            for start in range(0, len(hidden), 512):  # vocabulary-sized rows, 512 at a time
                log_probs = log_softmax(self.output(self.bottleneck(hidden[start:start + 512])),
                                        in_place=True)
                rows = np.arange(len(log_probs))
                parts.append(-log_probs[rows, wanted[start:start + 512]])
            if parts:
                per_piece[real] = np.concatenate(parts)
            nll.append(per_piece)
        return np.stack(nll)
