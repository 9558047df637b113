"""S3 translator in numpy: `nn.translator.Translator` at inference (`encode`, `decode_step`,
`select_state`), with `nn.attention.Attention`; the same answers as `Translator.decode_step`
and its fast version `nn.fast.DecodeStep`, to float rounding.

A bidirectional RNN encoder; an RNN decoder whose state starts at y_h(0) = tanh(W_b [final
states of both directions]) and that attends over all encoder states at every step:
scores (bahdanau) v^T tanh(W_k k_j + W_q y_h(t)), (luong-general) y_h(t)^T W k_j,
(luong-dot) y_h(t)^T k_j; context = Σ_j softmax(scores)_j k_j; the attentional vector
tanh(W_c [y_h(t); context]) gives the next token's scores and, with input feeding, is part of
the next step's input.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from seqtool.config import TranslatorConfig
from seqtool.engine.cells import RNN, TokenGates, final_states, layer_from, text_order
from seqtool.engine.ops import (
    GATES,
    Affine,
    Shapes,
    cell_shapes,
    check_lengths,
    check_weights,
    log_softmax,
    rnn_shapes,
    softmax,
    take,
)

ATTENTIONS = ("bahdanau", "luong-general", "luong-dot")
SOURCE_KEYS = ("keys", "values", "mask")  # as nn.translator.SOURCE_KEYS
State = Any  # list per layer of h [B, H] (GRU) or (h, c) (LSTM), as the torch translator's


def select_state(state: State, rows: np.ndarray) -> State:
    """Keep (and reorder) the rows of a decoder state or of any memory entry (beam search)."""
    if isinstance(state, np.ndarray):
        return state[rows]
    return type(state)(select_state(s, rows) for s in state)


def translator_shapes(c: TranslatorConfig) -> Shapes:
    """The state_dict of nn.translator.Translator(c): names and shapes."""
    enc_dim, h = c.encoder_dim, c.hidden_dim
    shapes: Shapes = {"encoder.embedding.weight": (c.src_vocab_size, c.embed_dim)}
    shapes.update(rnn_shapes("encoder.rnn.", c.rnn, c.embed_dim, enc_dim // 2,
                             c.encoder_layers, True))
    shapes["decoder.embedding.weight"] = (c.tgt_vocab_size, c.embed_dim)
    first_input = c.embed_dim + (h if c.input_feeding else 0)
    for i in range(c.decoder_layers):
        shapes.update(cell_shapes(f"decoder.cells.{i}.", c.rnn, first_input if i == 0 else h, h))
    shapes["decoder.bridge.weight"] = (h * c.decoder_layers, enc_dim)
    shapes["decoder.bridge.bias"] = (h * c.decoder_layers,)
    if c.attention == "bahdanau":
        shapes["decoder.attention.key_proj.weight"] = (c.attention_dim, enc_dim)
        shapes["decoder.attention.query_proj.weight"] = (c.attention_dim, h)
        shapes["decoder.attention.energy.weight"] = (1, c.attention_dim)
    elif c.attention == "luong-general":
        shapes["decoder.attention.key_proj.weight"] = (h, enc_dim)
    shapes["decoder.combine.weight"] = (h, h + enc_dim)
    shapes["decoder.combine.bias"] = (h,)
    shapes["decoder.output.weight"] = (c.tgt_vocab_size, h)
    shapes["decoder.output.bias"] = (c.tgt_vocab_size,)
    return shapes


class Attention:
    """`nn.attention.Attention`: a convex combination of the encoder states, weighted by the
    softmax of the scores; padding gets weight exactly 0."""

    def __init__(self, kind: str, weights: Mapping[str, np.ndarray], prefix: str,
                 dtype: np.dtype):
        self.kind = kind
        self.key_proj = self.query_proj = self.energy = None
        if kind != "luong-dot":
            self.key_proj = Affine(take(weights, prefix + "key_proj.weight", dtype, False), None)
        if kind == "bahdanau":
            self.query_proj = Affine(take(weights, prefix + "query_proj.weight", dtype, False),
                                     None)
            self.energy = take(weights, prefix + "energy.weight", dtype).T.copy()  # [A, 1]

    def precompute(self, values: np.ndarray) -> np.ndarray:
        """Keys for `values` [B, S, D]: once per batch of source sentences."""
        return values if self.key_proj is None else self.key_proj(values)

    def __call__(self, query: np.ndarray, keys: np.ndarray, values: np.ndarray,
                 mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """query [N, k, H]: k queries over each of N sources; keys [N, S, *], values [N, S, D],
        mask [N, S] True at real tokens. Returns the context [N, k, D] and weights [N, k, S]."""
        if self.kind == "bahdanau":
            scores = self._additive_scores(self.query_proj(query), keys)
        else:
            scores = np.matmul(query, keys.transpose(0, 2, 1))
        scores = np.where(mask[:, None], scores, -np.inf)
        weights = softmax(scores)
        return np.matmul(weights, values), weights

    def _additive_scores(self, queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """v^T tanh(k_j + q) [N, k, S] for projected queries [N, k, A] and keys [N, S, A].
        The sums [N, k, S, A] are the largest array of a step: made a few sources at a time,
        each piece stays in the CPU's cache through its tanh and product (half the time of
        one piece for the 320 rows of 64 sentences x beam 5)."""
        n, k, a = queries.shape
        s = keys.shape[1]
        scores = np.empty((n, k, s), queries.dtype)
        chunk = max(1, _CACHED_NUMBERS // max(1, k * s * a))
        energy = np.empty((min(chunk, n), k, s, a), queries.dtype)
        for i in range(0, n, chunk):
            part = energy[:min(chunk, n - i)]
            np.add(keys[i:i + chunk, None], queries[i:i + chunk, :, None], out=part)
            np.tanh(part, out=part)
            np.matmul(part.reshape(-1, a), self.energy, out=scores[i:i + chunk].reshape(-1, 1))
        return scores


_CACHED_NUMBERS = 2**18  # the size of a piece of the additive attention's sums


class Translator:
    """`nn.translator.Translator` for inference (no dropout)."""

    def __init__(self, config: TranslatorConfig | dict, weights: Mapping[str, np.ndarray],
                 dtype: np.dtype = np.float32):
        c = config if isinstance(config, TranslatorConfig) else TranslatorConfig.from_dict(config)
        if c.rnn not in GATES:
            raise ValueError(f"unknown rnn {c.rnn!r}: gru or lstm")
        if c.attention not in ATTENTIONS:
            raise ValueError(f"unknown attention {c.attention!r}: {', '.join(ATTENTIONS)}")
        if c.shared_embeddings and c.src_vocab_size != c.tgt_vocab_size:
            raise ValueError("shared embeddings need one joint vocabulary")
        check_weights(weights, translator_shapes(c), "translator")
        self.config = c
        self.dtype = dtype = np.dtype(dtype)
        self.encoder = RNN(weights, "encoder.rnn.", c.rnn, c.encoder_layers, True, dtype,
                           take(weights, "encoder.embedding.weight", dtype))
        self.embedding = take(weights, "decoder.embedding.weight", dtype)
        self.cells = [layer_from(weights, c.rnn, [f"decoder.cells.{i}.weight_ih"], dtype)
                      for i in range(c.decoder_layers)]
        first, e = self.cells[0], c.embed_dim
        # The embedding's share of the first cell's input gates, biases included, per token;
        # the attentional vector's share (input feeding) is multiplied at each step.
        self.token_gates = TokenGates(first, self.embedding)
        self.feeding_w = np.ascontiguousarray(first.w_ih_t[0, e:]) if c.input_feeding else None
        self.bridge = Affine(take(weights, "decoder.bridge.weight", dtype, copy=False),
                             take(weights, "decoder.bridge.bias", dtype))
        self.attention = Attention(c.attention, weights, "decoder.attention.", dtype)
        combine_t = take(weights, "decoder.combine.weight", dtype).T
        h = c.hidden_dim
        self.combine_hidden = np.ascontiguousarray(combine_t[:h])  # [H, H]
        self.combine_context = np.ascontiguousarray(combine_t[h:])  # [D, H]
        self.combine_bias = take(weights, "decoder.combine.bias", dtype)
        self.output = Affine(take(weights, "decoder.output.weight", dtype, copy=False),
                             take(weights, "decoder.output.bias", dtype))

    def encode(self, src: np.ndarray, src_lengths: np.ndarray) -> dict[str, Any]:
        """Everything the decoder needs about a batch of source sentences [B, S]: the same
        keys as `Translator.encode` (values, keys, mask, state, attentional)."""
        src, lengths = check_lengths(src, src_lengths)
        c = self.config
        out = self.encoder.run_padded(src, lengths)
        values = text_order(out, lengths, src.shape[1])
        hidden = np.tanh(self.bridge(final_states(out, lengths)))
        layers = [np.ascontiguousarray(hidden[:, i * c.hidden_dim:(i + 1) * c.hidden_dim])
                  for i in range(c.decoder_layers)]
        state = [(h, np.zeros_like(h)) for h in layers] if c.rnn == "lstm" else layers
        return {
            "values": values,
            "keys": self.attention.precompute(values),
            "mask": np.arange(src.shape[1])[None] < lengths[:, None],
            "state": state,
            "attentional": np.zeros((len(lengths), c.hidden_dim), self.dtype),
        }

    def _recur(self, prev_tokens: np.ndarray, memory: dict[str, Any]) -> tuple[np.ndarray, list]:
        """The decoder RNN's step: the last layer's output [R, H] and the new state."""
        gates = self.token_gates(prev_tokens[None])[0]
        if self.feeding_w is not None:
            gates += memory["attentional"] @ self.feeding_w
        new_state, x = [], None
        for cell, s in zip(self.cells, memory["state"], strict=True):
            if x is not None:  # a layer above the first reads the output of the one below
                gates = cell.input_gates(x[None])[0]
            if cell.kind == "lstm":
                h, c = cell.step(gates[None], s[0][None], s[1][None])
                x = h[0]
                new_state.append((x, c[0]))
            else:
                x = cell.step(gates[None], s[None])[0][0]
                new_state.append(x)
        return x, new_state

    def step(self, memory: dict[str, Any], prev_tokens: np.ndarray,
             group: int = 1) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
        """`Decoder.step` for every row: the attentional vectors [R, H], the new memory and the
        attention weights [R, S] (`decode_step` without the output layer)."""
        prev_tokens = np.asarray(prev_tokens, dtype=np.int64)
        rows = len(prev_tokens)
        if group < 1 or rows % group or memory["keys"].shape[0] * group != rows:
            raise ValueError(f"{rows} rows do not make groups of {group} over "
                             f"{memory['keys'].shape[0]} source rows")
        hidden, state = self._recur(prev_tokens, memory)
        query = hidden.reshape(rows // group, group, self.config.hidden_dim)
        context, weights = self.attention(query, memory["keys"], memory["values"],
                                          memory["mask"])
        attentional = query @ self.combine_hidden
        attentional += context @ self.combine_context
        attentional += self.combine_bias
        attentional = np.tanh(attentional, out=attentional).reshape(rows, self.config.hidden_dim)
        return attentional, {**memory, "state": state, "attentional": attentional}, \
            weights.reshape(rows, weights.shape[2])

    def decode_step(self, memory: dict[str, Any], prev_tokens: np.ndarray,
                    group: int = 1) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
        """Advance every row by one token: log-probs [R, V], the new memory, the attention
        weights [R, S].

        With `group` = k the R rows are k hypotheses per sentence (sentence-major), and the
        source side of `memory` (SOURCE_KEYS) holds one row per sentence (R / k): each
        sentence's k queries attend over its one copy, as `Translator.decode_step`."""
        attentional, memory, weights = self.step(memory, prev_tokens, group)
        return log_softmax(self.output(attentional), in_place=True), memory, weights

    def forward(self, src: np.ndarray, src_lengths: np.ndarray,
                tgt_in: np.ndarray) -> np.ndarray:
        """Teacher-forced attentional vectors [B, T, H] (`Translator.forward`): the decoder
        reads the reference c(t-1) at step t; `logits` turns them into scores."""
        memory = self.encode(src, src_lengths)
        tgt_in = np.asarray(tgt_in, dtype=np.int64)
        outputs = []
        for t in range(tgt_in.shape[1]):
            attentional, memory, _ = self.step(memory, tgt_in[:, t])
            outputs.append(attentional)
        return np.stack(outputs, 1)

    def logits(self, attentional: np.ndarray) -> np.ndarray:
        """The output layer: next-token scores [..., V] of attentional vectors [..., H]."""
        return self.output(attentional)
