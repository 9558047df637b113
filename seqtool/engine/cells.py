"""GRU and LSTM layers in numpy with PyTorch's equations and gate order: nn.GRU and nn.LSTM
(batch_first, several layers, one or two directions) over padded batches as
`nn.common.run_padded` runs them, and nn.GRUCell / nn.LSTMCell steps for decoding.

With y_h(t) the hidden vector and x(t) the input at step t (the course's notation):

    GRU   r = σ(W_r [y_h(t-1); x(t)]),  z = σ(W_z [y_h(t-1); x(t)]),
          n = tanh(W_in x(t) + b_in + r ⊙ (W_hn y_h(t-1) + b_hn)),
          y_h(t) = (1 - z) ⊙ n + z ⊙ y_h(t-1)
    LSTM  i, f, o = σ(W_{i,f,o} [y_h(t-1); x(t)]),  g = tanh(W_g [y_h(t-1); x(t)]),
          c(t) = f ⊙ c(t-1) + i ⊙ g,  y_h(t) = o ⊙ tanh(c(t))

(each W [...] with both of torch's biases). Padding sits at the end of each row; the forward
direction meets it only after the last real token, and the backward direction reads each row
reversed within its own length (like packed sequences), so padding never reaches a real output.

For speed: the input's share of the gates, W_i x(t), is one matrix product for all steps
(for the first layer, a lookup in a table of every token's, filled as tokens come);
the directions of a
layer run side by side, one batched product and one pass of each elementwise operation per
step; σ(a) is computed as (1 + tanh(a / 2)) / 2 with the rows of the σ gates' weights halved
once at construction (exact: a power of two), so each gate block needs a single tanh.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from seqtool.engine.ops import GATES, take

MAX_TOKEN_TABLE = 2**24  # numbers in a token table at most (64 MB in float32)
TABLE_BLOCK = 32  # token ids whose input gates one product computes


def _gate_layout(kind: str, hidden: int) -> tuple[np.ndarray, np.ndarray]:
    """Row order of the prepared weights and each row's scale: the σ gates first, halved.
    GRU rows stay r z n; LSTM rows i f g o become i f o g."""
    h = hidden
    if kind == "gru":
        order = np.arange(3 * h)
        sigmoid_rows = 2 * h
    else:
        order = np.concatenate([np.arange(2 * h), np.arange(3 * h, 4 * h), np.arange(2 * h, 3 * h)])
        sigmoid_rows = 3 * h
    scale = np.ones(len(order))
    scale[:sigmoid_rows] = 0.5
    return order, scale


class Layer:
    """One layer (or cell) of a GRU or LSTM in D directions (1 or 2), run side by side.

    `directions` holds per direction torch's (weight_ih, weight_hh, bias_ih, bias_hh)."""

    def __init__(self, kind: str, directions: list[tuple[np.ndarray, ...]]):
        if kind not in GATES:
            raise ValueError(f"unknown rnn {kind!r}: gru or lstm")
        self.kind = kind
        self.hidden = h = directions[0][1].shape[1]
        order, scale = _gate_layout(kind, h)
        scale = scale.astype(directions[0][0].dtype)
        w_ih, w_hh, bias, b_hn = [], [], [], []
        for weight_ih, weight_hh, bias_ih, bias_hh in directions:
            w_ih.append((weight_ih[order] * scale[:, None]).T)
            w_hh.append((weight_hh[order] * scale[:, None]).T)
            if kind == "gru":  # b_hn stays inside r ⊙ (W_hn y_h + b_hn); b_hr, b_hz fold in
                bias.append((bias_ih + np.concatenate([bias_hh[: 2 * h], np.zeros(h)]))
                            * scale)
                b_hn.append(bias_hh[None, 2 * h:])
            else:
                bias.append((bias_ih + bias_hh)[order] * scale)
        dtype = directions[0][0].dtype
        self.w_ih_t = np.ascontiguousarray(np.stack(w_ih), dtype=dtype)  # [D, I, G]
        self.w_hh_t = np.ascontiguousarray(np.stack(w_hh), dtype=dtype)  # [D, H, G]
        self.bias = np.stack(bias).astype(dtype)[:, None]  # [D, 1, G], b_hn left out
        self.b_hn = np.stack(b_hn).astype(dtype) if kind == "gru" else None  # [D, 1, H]

    @property
    def directions(self) -> int:
        return self.w_ih_t.shape[0]

    @property
    def gates(self) -> int:
        """G: the gate rows of all gates (3 H for a GRU, 4 H for an LSTM)."""
        return self.w_hh_t.shape[2]

    def input_gates(self, x: np.ndarray, columns: slice = slice(None)) -> np.ndarray:
        """W_i x + biases for x [D, N, I] (each direction its own inputs) -> [D, N, G];
        `columns` picks the input columns x stands for."""
        gates = np.matmul(x, self.w_ih_t[:, columns])
        gates += self.bias
        return gates

    def run(self, gates: np.ndarray, h0: np.ndarray | None = None,
            c0: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Outputs y_h(1..T) [D, T, B, H] for input gates [D, T, B, G] from y_h(0) = h0
        [D, B, H] (zeros when None), and the LSTM's last c(T) (None for a GRU)."""
        d, steps, b, _ = gates.shape
        out = np.empty((d, steps, b, self.hidden), gates.dtype)
        h = np.zeros((d, b, self.hidden), gates.dtype) if h0 is None else h0
        c = None
        if self.kind == "lstm":
            c = np.zeros((d, b, self.hidden), gates.dtype) if c0 is None else c0
        work = np.empty(gates.shape[:1] + gates.shape[2:], gates.dtype)  # [D, B, G]
        for t in range(steps):
            c = self._step(gates[:, t], h, c, out[:, t], work)
            h = out[:, t]
        return out, c

    def step(self, gates: np.ndarray, h: np.ndarray,
             c: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """One step (the cell): input gates [D, B, G], state h (and c) [D, B, H] -> new h (and
        c), new arrays (the old state stays as it was)."""
        h_new = np.empty_like(h)
        c_new = self._step(gates, h, c, h_new, np.empty_like(gates))
        return h_new, c_new

    def _step(self, gi: np.ndarray, h: np.ndarray, c: np.ndarray | None, h_new: np.ndarray,
              work: np.ndarray) -> np.ndarray | None:
        """Write y_h(t) into h_new from the input gates gi; returns c(t) for an LSTM."""
        hid = self.hidden
        g = np.matmul(h, self.w_hh_t, out=work)
        if self.kind == "gru":
            rz = g[..., : 2 * hid]
            rz += gi[..., : 2 * hid]
            np.tanh(rz, out=rz)  # of the halved pre-activations: σ = (1 + tanh) / 2
            rz *= 0.5
            rz += 0.5
            n = g[..., 2 * hid:]
            n += self.b_hn
            n *= rz[..., :hid]
            n += gi[..., 2 * hid:]
            np.tanh(n, out=n)
            np.subtract(h, n, out=h_new)  # (1 - z) n + z h = n + z (h - n)
            h_new *= rz[..., hid:]
            h_new += n
            return None
        g += gi
        np.tanh(g, out=g)  # i f o (halved: σ) and g in one pass
        ifo = g[..., : 3 * hid]
        ifo *= 0.5
        ifo += 0.5
        c_new = g[..., hid: 2 * hid] * c
        candidate = g[..., 3 * hid:]
        candidate *= g[..., :hid]
        c_new += candidate
        np.tanh(c_new, out=h_new)
        h_new *= g[..., 2 * hid: 3 * hid]
        return c_new


def layer_from(weights: Mapping[str, np.ndarray], kind: str, names: list[str],
               dtype: np.dtype) -> Layer:
    """A Layer from the state_dict names of each direction's weight_ih (the others follow)."""
    return Layer(kind, [tuple(take(weights, name.replace("weight_ih", part), dtype, copy=False)
                              for part in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))
                        for name in names])


def reading_order(lengths: np.ndarray, steps: int, directions: int) -> np.ndarray:
    """[D, T, B]: the position each direction reads at step j; the backward direction reads
    position n - 1 - j of a row of length n, and padding (j >= n) stays in place."""
    j = np.arange(steps)[:, None]
    forward = np.broadcast_to(j, (steps, len(lengths)))
    if directions == 1:
        return forward[None]
    backward = np.where(j < lengths[None], lengths[None] - 1 - j, j)
    return np.stack([forward, backward])


class TokenGates:
    """The first layer's input gates of embedded tokens, W_i e(token) + biases, where the
    embedding fills the first input columns.

    They come from a table of every token's gates, filled as tokens come, TABLE_BLOCK token
    ids at a time: each block by one product of the same shape, so a token's gates are the
    same bits whatever came before or beside it (a product over other rows may round
    otherwise: AVX-512 kernels do). A one-line call computes a few blocks, a large job the
    table once. Beyond MAX_TOKEN_TABLE numbers nothing is kept: the blocks a batch needs are
    computed for it."""

    def __init__(self, layer: Layer, embedding: np.ndarray):
        self.layer, self.embedding = layer, embedding
        vocab = embedding.shape[0]
        blocks = -(-vocab // TABLE_BLOCK)
        rows = blocks * TABLE_BLOCK
        self.kept = rows * layer.w_ih_t[..., 0, :].size <= MAX_TOKEN_TABLE
        # np.empty: pages cost memory only once a block is written
        self.table = np.empty((layer.directions, rows if self.kept else 0, layer.gates),
                              embedding.dtype)
        self.filled = np.zeros(blocks, bool)

    def block(self, index: int) -> np.ndarray:
        """The gates of token ids [index * TABLE_BLOCK, (index + 1) * TABLE_BLOCK) [D, B, G]
        (rows past the vocabulary from zero vectors)."""
        start, width = index * TABLE_BLOCK, self.embedding.shape[1]
        x = self.embedding[start: start + TABLE_BLOCK]
        if len(x) < TABLE_BLOCK:  # the last block: the same shape as every other
            x = np.concatenate([x, np.zeros((TABLE_BLOCK - len(x), width), x.dtype)])
        layer = self.layer
        return layer.input_gates(np.broadcast_to(x, (layer.directions, *x.shape)),
                                 slice(0, width))

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        """tokens [D, ...] (each direction its own) -> gates [D, ..., G]."""
        needed = np.unique(tokens // TABLE_BLOCK)
        if self.kept:
            table = self.table
            for index in needed[~self.filled[needed]]:
                table[:, index * TABLE_BLOCK: (index + 1) * TABLE_BLOCK] = self.block(index)
                self.filled[index] = True
            ids = tokens
        else:  # only the blocks this batch needs, side by side
            table = np.concatenate([self.block(i) for i in needed], axis=1)
            ids = np.searchsorted(needed, tokens // TABLE_BLOCK) * TABLE_BLOCK \
                + tokens % TABLE_BLOCK
        gates = np.empty(tokens.shape + (self.layer.gates,), table.dtype)
        for d in range(len(tokens)):
            np.take(table[d], ids[d], axis=0, out=gates[d])
        return gates


class RNN:
    """nn.GRU / nn.LSTM (batch_first) of `layers` layers, one or two directions, under the
    state_dict `prefix` (e.g. "encoder.rnn.")."""

    def __init__(self, weights: Mapping[str, np.ndarray], prefix: str, kind: str, layers: int,
                 bidirectional: bool, dtype: np.dtype, embedding: np.ndarray | None = None):
        suffixes = ("", "_reverse") if bidirectional else ("",)
        self.layers = [layer_from(weights, kind, [f"{prefix}weight_ih_l{i}{s}" for s in suffixes],
                                  dtype) for i in range(layers)]
        self.kind = kind
        self.embedding = embedding
        self.token_gates = None if embedding is None else TokenGates(self.layers[0], embedding)

    @property
    def hidden(self) -> int:
        return self.layers[0].hidden

    def run_padded(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        """Outputs [D, T, B, H] of the last layer over token ids [B, >=T] (T = the longest
        length), each direction in its reading order (`reading_order`), from zero states.
        Values at padding are not zeroed here (`at_padding`)."""
        steps = int(lengths.max()) if len(lengths) else 0
        order = reading_order(lengths, steps, self.layers[0].directions)
        batch = np.arange(len(lengths))[None]
        gates = self.token_gates(tokens.T[order, batch])
        out, _ = self.layers[0].run(gates)
        for layer in self.layers[1:]:
            x = np.concatenate([o[od, batch] for o, od in zip(out, order)], -1)  # in text order
            d, b = layer.directions, len(lengths)
            x_read = np.stack([x[od, batch] for od in order]).reshape(d, steps * b, x.shape[2])
            out, _ = layer.run(layer.input_gates(x_read).reshape(d, steps, b, layer.gates))
        return out

    def run_from(self, gates: np.ndarray, h0: np.ndarray,
                 c0: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """One direction from given states, without padding (a generator): the first layer's
        input gates [T, N, G], states [L, N, H] -> last layer's outputs [T, N, H] and the
        states h(T), c(T) [L, N, H] of every layer."""
        hs, cs = [], []
        x = None
        for i, layer in enumerate(self.layers):
            if i > 0:
                steps, n, _ = x.shape
                gates = layer.input_gates(x.reshape(1, steps * n, x.shape[2]))[0]
                gates = gates.reshape(steps, n, layer.gates)
            out, c = layer.run(gates[None], h0[i][None], None if c0 is None else c0[i][None])
            x = out[0]
            hs.append(x[-1])
            cs.append(None if c is None else c[0])
        return x, np.stack(hs), None if c0 is None else np.stack(cs)


def at_padding(lengths: np.ndarray, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(step, row) indices of the padding positions of a [T, B] batch."""
    return np.nonzero(np.arange(steps)[:, None] >= lengths[None])


def final_states(out: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The last layer's final states [B, D * H]: each direction's output after reading the
    whole row (step n - 1 in its reading order), directions side by side as torch's."""
    rows = np.arange(len(lengths))
    return np.concatenate([o[lengths - 1, rows] for o in out], -1)


def text_order(out: np.ndarray, lengths: np.ndarray, width: int) -> np.ndarray:
    """Outputs [D, T, B, H] in reading order -> [B, width, D * H] in text order, zeros at
    padding (and beyond T up to `width`), as `run_padded` returns them."""
    d, steps, b, hid = out.shape
    order = reading_order(lengths, steps, d)
    result = np.zeros((b, width, d * hid), out.dtype)
    batch = np.arange(b)[None]
    for i in range(d):
        result[:, :steps, i * hid:(i + 1) * hid] = out[i][order[i], batch].transpose(1, 0, 2)
    pad_t, pad_b = at_padding(lengths, steps)
    result[pad_b, pad_t] = 0
    return result
