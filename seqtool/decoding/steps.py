"""The step interface the searches call (`search.py`), and its numpy implementation.

A backend decodes with a `TranslatorSteps`: it encodes a batch of sources, advances rows by one
token, and keeps, reorders, pads and joins the rows of its own memory (a dict of arrays, or
lists / tuples of them, per key). The searches see log-probabilities and attention weights as
numpy arrays, and nothing else of the backend: one search serves numpy and torch alike.

    encode(src [B, S] int64, lengths [B]) -> memory
    step(memory, prev [R] int64, group=1) -> (log-probs [R, V] numpy, memory, weights)
    numpy(weights) -> [R, S] float32;  positions(source) -> S
    select(parts, rows) / pad(source, width) / join([parts, ...])
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from seqtool.decoding.rows import join_rows, map_rows

SOURCE_KEYS = ("keys", "values", "mask")  # the parts of an encoded memory per source


class TranslatorSteps(Protocol):
    def encode(self, src: np.ndarray, lengths: np.ndarray) -> dict: ...
    def step(self, memory: dict, prev: np.ndarray, group: int = 1
             ) -> tuple[np.ndarray, dict, Any]: ...
    def numpy(self, x: Any) -> np.ndarray: ...
    def positions(self, source: dict) -> int: ...
    def select(self, parts: dict, rows: np.ndarray) -> dict: ...
    def pad(self, source: dict, width: int) -> dict: ...
    def join(self, parts: list[dict]) -> dict: ...


def translator_steps(model: Any, fast: bool = True, precision: str = "fp32") -> TranslatorSteps:
    """The steps of `model`: a numpy translator (`seqtool.engine`), a torch `Translator`
    (`fast` = its fast decoding step), or steps already."""
    if hasattr(model, "step") and hasattr(model, "join"):
        return model
    if type(model).__module__.startswith("seqtool.engine"):
        return NumpyTranslatorSteps(model)
    from seqtool.decoding.torch_steps import TorchTranslatorSteps

    return TorchTranslatorSteps(model, fast=fast, precision=precision)


class NumpyTranslatorSteps:
    """`TranslatorSteps` over a numpy translator of `seqtool.engine`."""

    def __init__(self, model: Any):
        self.model = model

    def encode(self, src: np.ndarray, lengths: np.ndarray) -> dict:
        return self.model.encode(src, lengths)

    def step(self, memory: dict, prev: np.ndarray, group: int = 1):
        logp, memory, weights = self.model.decode_step(memory, prev, group)
        return np.asarray(logp), memory, weights

    def numpy(self, x: Any) -> np.ndarray:
        return np.asarray(x, np.float32)

    def positions(self, source: dict) -> int:
        return int(source["mask"].shape[1])

    def select(self, parts: dict, rows: np.ndarray) -> dict:
        return map_rows(parts, lambda x: x[rows])

    def pad(self, source: dict, width: int) -> dict:
        def padded(x: np.ndarray) -> np.ndarray:
            missing = width - x.shape[1]
            if not missing:
                return x
            return np.pad(x, [(0, 0), (0, missing)] + [(0, 0)] * (x.ndim - 2))
        return map_rows(source, padded)

    def join(self, parts: list[dict]) -> dict:
        return join_rows(parts, np.concatenate)
