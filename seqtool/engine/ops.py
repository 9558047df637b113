"""The numerical pieces every numpy model shares: stable (log-)softmax, sigmoid, affine maps on
weights prepared once, and the check that a weight dictionary fits a configuration.

Mirrors torch.softmax / torch.log_softmax / torch.sigmoid / nn.Linear at inference, and the
names and shapes of `Module.state_dict()` (the weights of one model file feed both backends).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

Shapes = dict[str, tuple[int, ...]]


def sigmoid(x: np.ndarray) -> np.ndarray:
    """σ(x) = (1 + tanh(x / 2)) / 2: the same function as 1 / (1 + e^-x), without an exp that
    overflows for large |x| (and np.tanh is vectorised)."""
    y = np.tanh(x * 0.5)
    y *= 0.5
    y += 0.5
    return y


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """exp(x - max) / sum: never overflows; -inf entries (masked) get exactly 0."""
    y = x - x.max(axis=axis, keepdims=True)
    np.exp(y, out=y)
    y /= y.sum(axis=axis, keepdims=True)
    return y


def log_softmax(x: np.ndarray, axis: int = -1, in_place: bool = False) -> np.ndarray:
    """x - logsumexp(x), shifted by the maximum first so that exp never overflows; with
    `in_place`, written over x (one vocabulary-sized array fewer per decoding step)."""
    shifted = x if in_place else x.copy()
    shifted -= x.max(axis=axis, keepdims=True)
    total = np.exp(shifted).sum(axis=axis, keepdims=True)
    shifted -= np.log(total)
    return shifted


def logsumexp(x: np.ndarray, axis: int = 0) -> np.ndarray:
    top = x.max(axis=axis, keepdims=True)
    return np.squeeze(top, axis) + np.log(np.exp(x - top).sum(axis=axis))


class Affine:
    """y = x W^T + b (nn.Linear) with W^T kept contiguous, made once: BLAS then reads it as it
    is at every call."""

    def __init__(self, weight: np.ndarray, bias: np.ndarray | None):
        self.weight_t = np.array(weight.T, order="C")  # [in, out], a copy
        self.bias = bias

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = x @ self.weight_t
        if self.bias is not None:
            y += self.bias
        return y


def check_weights(weights: Mapping[str, np.ndarray], shapes: Shapes, what: str) -> None:
    """Raise KeyError for a missing name, ValueError for an unexpected name or a wrong shape:
    `weights` must hold exactly the `state_dict()` of the torch model `what` names."""
    missing = [name for name in shapes if name not in weights]
    if missing:
        raise KeyError(f"{what}: weights lack {len(missing)} tensor(s) the configuration "
                       f"needs: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''}")
    extra = [name for name in weights if name not in shapes]
    if extra:
        raise ValueError(f"{what}: weights hold {len(extra)} tensor(s) the configuration has "
                         f"no place for: {', '.join(extra[:5])}"
                         f"{' ...' if len(extra) > 5 else ''}")
    for name, shape in shapes.items():
        got = tuple(np.shape(weights[name]))
        if got != shape:
            raise ValueError(f"{what}: weight {name!r} has shape {list(got)}, the configuration "
                             f"needs {list(shape)}")


def take(weights: Mapping[str, np.ndarray], name: str, dtype: np.dtype,
         copy: bool = True) -> np.ndarray:
    """One weight as a contiguous array of `dtype`: a copy (later edits of the caller's arrays
    do not reach the model), or without `copy` where the caller makes its own."""
    if copy:
        return np.array(weights[name], dtype=dtype, order="C", copy=True)
    return np.asarray(weights[name], dtype=dtype, order="C")


def rnn_shapes(prefix: str, kind: str, input_dim: int, hidden: int, layers: int,
               bidirectional: bool) -> Shapes:
    """The state_dict shapes of nn.GRU / nn.LSTM (`kind`) under `prefix`."""
    gates = GATES[kind] * hidden
    directions = ("", "_reverse") if bidirectional else ("",)
    shapes: Shapes = {}
    for layer in range(layers):
        width = input_dim if layer == 0 else hidden * len(directions)
        for d in directions:
            shapes[f"{prefix}weight_ih_l{layer}{d}"] = (gates, width)
            shapes[f"{prefix}weight_hh_l{layer}{d}"] = (gates, hidden)
            shapes[f"{prefix}bias_ih_l{layer}{d}"] = (gates,)
            shapes[f"{prefix}bias_hh_l{layer}{d}"] = (gates,)
    return shapes


def cell_shapes(prefix: str, kind: str, input_dim: int, hidden: int) -> Shapes:
    """The state_dict shapes of nn.GRUCell / nn.LSTMCell (`kind`) under `prefix`."""
    gates = GATES[kind] * hidden
    return {f"{prefix}weight_ih": (gates, input_dim), f"{prefix}weight_hh": (gates, hidden),
            f"{prefix}bias_ih": (gates,), f"{prefix}bias_hh": (gates,)}


GATES = {"gru": 3, "lstm": 4}  # gate blocks in a weight's rows: r z n | i f g o


def check_lengths(tokens: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int64 arrays tokens [B, T] and lengths [B], each length within 1..T."""
    tokens = np.asarray(tokens, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if tokens.ndim != 2 or lengths.shape != (tokens.shape[0],):
        raise ValueError(f"tokens must be [B, T] and lengths [B], not {list(tokens.shape)} and "
                         f"{list(lengths.shape)}")
    if lengths.size and (lengths.min() < 1 or lengths.max() > tokens.shape[1]):
        raise ValueError("every length must be between 1 and the padded width")
    return tokens, lengths
