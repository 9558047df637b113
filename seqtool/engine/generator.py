"""S2 generator in numpy: `nn.generator.Generator` at inference, as `decoding/sampling.py`
drives it (the whole prompt first, then one token at a time, rows kept or dropped between
steps).

y_h(0) = tanh(W_i x) from the class x (the hidden and cell state of every layer); an LSTM
predicts c(t) from c(t-1): logits = W_o (B y_h(t)) + b_o + b_class, with the bottleneck B
when the output shares the input embeddings at another size, the class also fed at every
step with `class_every_step`, and a per-class bias b_class with `class_bias`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from seqtool.config import GeneratorConfig
from seqtool.engine.cells import RNN
from seqtool.engine.ops import Affine, Shapes, check_weights, rnn_shapes, take


def generator_shapes(c: GeneratorConfig) -> Shapes:
    """The state_dict of nn.generator.Generator(c): names and shapes."""
    input_dim = c.embed_dim + (c.class_dim if c.class_every_step else 0)
    out_dim = c.embed_dim if c.tie_embeddings else c.hidden_dim
    shapes: Shapes = {"initial.weight": (c.num_classes, c.layers * 2 * c.hidden_dim)}
    if c.class_every_step:
        shapes["class_input.weight"] = (c.num_classes, c.class_dim)
    shapes["embedding.weight"] = (c.vocab_size, c.embed_dim)
    shapes.update(rnn_shapes("rnn.", "lstm", input_dim, c.hidden_dim, c.layers, False))
    if c.tie_embeddings and c.hidden_dim != c.embed_dim:
        shapes["bottleneck.weight"] = (c.embed_dim, c.hidden_dim)
        shapes["bottleneck.bias"] = (c.embed_dim,)
    shapes["output.weight"] = (c.vocab_size, out_dim)
    shapes["output.bias"] = (c.vocab_size,)
    if c.class_bias:
        shapes["class_bias.weight"] = (c.num_classes, c.vocab_size)
    return shapes


@dataclass
class GeneratorState:
    """What the generator carries from one step to the next, one row per sequence."""

    labels: np.ndarray  # [N] the class of each row
    h: np.ndarray  # [layers, N, H]
    c: np.ndarray  # [layers, N, H]

    def __len__(self) -> int:
        return len(self.labels)


class Generator:
    """`nn.generator.Generator` for inference (no dropout)."""

    def __init__(self, config: GeneratorConfig | dict, weights: Mapping[str, np.ndarray],
                 dtype: np.dtype = np.float32):
        c = config if isinstance(config, GeneratorConfig) else GeneratorConfig.from_dict(config)
        check_weights(weights, generator_shapes(c), "generator")
        self.config = c
        self.dtype = dtype = np.dtype(dtype)
        self.initial = take(weights, "initial.weight", dtype)
        self.embedding = take(weights, "embedding.weight", dtype)
        self.rnn = RNN(weights, "rnn.", "lstm", c.layers, False, dtype)
        first = self.rnn.layers[0]
        e = c.embed_dim
        # The class's share of the first layer's input gates, biases included, per class.
        if c.class_every_step:
            class_input = take(weights, "class_input.weight", dtype)
            self.class_gates = first.input_gates(class_input[None], slice(e, None))[0]
        else:
            self.class_gates = np.broadcast_to(first.bias[0], (c.num_classes, first.bias.shape[2]))
        self.embedding_w = np.ascontiguousarray(first.w_ih_t[0, :e])  # [E, G]
        self.bottleneck = None
        if "bottleneck.weight" in weights:
            self.bottleneck = Affine(take(weights, "bottleneck.weight", dtype, copy=False),
                                     take(weights, "bottleneck.bias", dtype))
        self.output = Affine(take(weights, "output.weight", dtype, copy=False), None)
        # The output bias and the class bias, per class: one addition per step.
        bias = take(weights, "output.bias", dtype)
        if c.class_bias:
            self.class_output_bias = bias + take(weights, "class_bias.weight", dtype)
        else:
            self.class_output_bias = np.broadcast_to(bias, (c.num_classes, c.vocab_size))

    def initial_state(self, labels: np.ndarray) -> GeneratorState:
        """y_h(0) = tanh(W_i x): the class sets the LSTM's hidden and cell state of every
        layer."""
        c = self.config
        state = np.tanh(self.initial[labels]).reshape(len(labels), c.layers, 2, c.hidden_dim)
        return GeneratorState(labels, np.ascontiguousarray(state[:, :, 0].transpose(1, 0, 2)),
                              np.ascontiguousarray(state[:, :, 1].transpose(1, 0, 2)))

    def _gates(self, labels: np.ndarray, inputs: np.ndarray) -> np.ndarray:
        """The first layer's input gates [T, N, G] for input tokens [N, T]."""
        gates = self.embedding[inputs.T] @ self.embedding_w
        gates += self.class_gates[labels]
        return gates

    def _logits(self, labels: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Next-token logits [..., N, V] from the last layer's outputs [..., N, H]."""
        if self.bottleneck is not None:
            out = self.bottleneck(out)
        logits = self.output(out)
        logits += self.class_output_bias[labels]
        return logits

    def _run(self, state: GeneratorState, inputs: np.ndarray):
        out, h, c = self.rnn.run_from(self._gates(state.labels, inputs), state.h, state.c)
        return out, GeneratorState(state.labels, h, c)

    def forward(self, labels: np.ndarray, inputs: np.ndarray,
                state: GeneratorState | None = None) -> tuple[np.ndarray, GeneratorState]:
        """Teacher-forced next-token logits [N, T, V] for input tokens [N, T] (from <start>),
        and the state after them (`Generator.forward` without lengths)."""
        labels, inputs = _ids(labels), _ids(inputs)
        out, state = self._run(state or self.initial_state(labels), inputs)
        return self._logits(labels, out).transpose(1, 0, 2), state

    __call__ = forward

    def start(self, labels: np.ndarray,
              inputs: np.ndarray) -> tuple[np.ndarray, GeneratorState]:
        """Read inputs [N, T] (<start> and the prompt) from the class's initial state: the
        logits [N, V] of the token after them, and the state."""
        labels, inputs = _ids(labels), _ids(inputs)
        if inputs.ndim != 2 or inputs.shape[0] != len(labels) or inputs.shape[1] < 1:
            raise ValueError(f"inputs must be [N, T >= 1] for {len(labels)} labels")
        out, state = self._run(self.initial_state(labels), inputs)
        return self._logits(labels, out[-1]), state

    def step(self, state: GeneratorState,
             tokens: np.ndarray) -> tuple[np.ndarray, GeneratorState]:
        """Read one token per row [N]: the logits [N, V] of the next one, and the new state."""
        tokens = _ids(tokens)
        x = self.embedding[tokens] @ self.embedding_w
        x += self.class_gates[state.labels]
        hs, cs = [], []
        for i, layer in enumerate(self.rnn.layers):
            if i > 0:
                x = layer.input_gates(hs[-1][None])[0]
            h, c = layer.step(x[None], state.h[i][None], state.c[i][None])
            hs.append(h[0])
            cs.append(c[0])
        return self._logits(state.labels, hs[-1]), GeneratorState(state.labels, np.stack(hs),
                                                                  np.stack(cs))

    def select(self, state: GeneratorState, rows: np.ndarray) -> GeneratorState:
        """Keep (and reorder) the rows `rows` [K] of a state."""
        rows = _ids(rows)
        return GeneratorState(state.labels[rows], state.h[:, rows], state.c[:, rows])


def _ids(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)
