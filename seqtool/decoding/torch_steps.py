"""The torch backend's half of the algorithms written once in `decoding/`: `TranslatorSteps`
over a torch `Translator` (`steps.py`), `GeneratorSteps` over a torch `Generator`
(`sampling.py`) and the classifier scorer (`scoring.py`). A translator's step is
`nn.fast.DecodeStep` (or the plain `Translator.decode_step`), under the precision asked for;
results come back as numpy arrays (no copy on the CPU)."""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

from seqtool.decoding.rows import join_rows, map_rows
from seqtool.device import autocast, model_device
from seqtool.nn.fast import decode_step as fast_step


class TorchTranslatorSteps:
    def __init__(self, model: torch.nn.Module, fast: bool = True, precision: str = "fp32"):
        self.model = model.eval()
        self.device = model_device(model)
        self.precision = precision
        self.decode = fast_step(model) if fast else model.decode_step

    @torch.no_grad()
    def encode(self, src: np.ndarray, lengths: np.ndarray) -> dict:
        with autocast(self.device, self.precision):
            return self.model.encode(torch.as_tensor(src, device=self.device),
                                     torch.as_tensor(lengths, device=self.device))

    @torch.no_grad()
    def step(self, memory: dict, prev: np.ndarray, group: int = 1):
        with autocast(self.device, self.precision):
            logp, memory, weights = self.decode(
                memory, torch.as_tensor(prev, device=self.device), group)
        if logp.dtype not in (torch.float32, torch.float64):
            logp = logp.float()
        return logp.cpu().numpy(), memory, weights

    def numpy(self, x: Any) -> np.ndarray:
        return x.float().cpu().numpy()

    def positions(self, source: dict) -> int:
        return int(source["mask"].size(1))

    def select(self, parts: dict, rows: np.ndarray) -> dict:
        index = torch.as_tensor(rows, dtype=torch.long, device=self.device)
        return map_rows(parts, lambda x: x.index_select(0, index))

    def pad(self, source: dict, width: int) -> dict:
        def padded(x: torch.Tensor) -> torch.Tensor:
            missing = width - x.size(1)
            if not missing:
                return x
            return torch.nn.functional.pad(x, (0, 0) * (x.dim() - 2) + (0, missing))
        return map_rows(source, padded)

    def join(self, parts: list[dict]) -> dict:
        return join_rows(parts, torch.cat)


class TorchGeneratorSteps:
    """`GeneratorSteps` over a torch `Generator` (logits come back as numpy)."""

    def __init__(self, model: torch.nn.Module):
        self.model = model.eval()
        self.device = model_device(model)
        self.num_classes = model.config.num_classes

    @torch.no_grad()
    def start(self, labels: np.ndarray, inputs: np.ndarray):
        labels = torch.as_tensor(labels, device=self.device)
        logits, state = self.model(labels, torch.as_tensor(inputs, device=self.device))
        return logits[:, -1].float().cpu().numpy(), (labels, state)

    @torch.no_grad()
    def step(self, state, tokens: np.ndarray):
        labels, recurrent = state
        feed = torch.as_tensor(tokens, device=self.device)[:, None]
        logits, recurrent = self.model(labels, feed, state=recurrent)
        return logits[:, -1].float().cpu().numpy(), (labels, recurrent)


class TorchClassifier:
    """`scoring.classifier_scorer` of a torch classifier (or combination of classifiers)."""

    def __init__(self, model: torch.nn.Module):
        from seqtool.nn.ensemble import ClassifierCombination

        self.model = model.eval()
        self.device = model_device(model)
        self.encoding_dim = model.encoding_dim
        self.num_classes = model.config.num_classes
        combined = isinstance(model, ClassifierCombination)
        self.parts = [TorchClassifier(p) for p in model.parts] if combined else None
        self.tokenizers = getattr(model, "tokenizers", None)

    @torch.no_grad()
    def encode(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.model.encode(*self._tensors(tokens, lengths)).float().cpu().numpy()

    @torch.no_grad()
    def logits(self, tokens: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        return self.model(*self._tensors(tokens, lengths)).float().cpu().numpy()

    def combine(self, probabilities: list[np.ndarray]) -> np.ndarray:
        parts = [torch.from_numpy(p) for p in probabilities]
        return self.model.combine(parts).float().numpy()

    def pass_of(self, count: int):
        """A pass over a handful of texts runs on one thread: more only wait for each other."""
        from seqtool.checkpoint import one_thread

        return one_thread() if count <= FEW_TEXTS else contextlib.nullcontext()

    def _tensors(self, tokens: np.ndarray, lengths: np.ndarray):
        return (torch.as_tensor(tokens, device=self.device),
                torch.as_tensor(lengths, device=self.device))


FEW_TEXTS = 8  # inputs this small run on one thread
