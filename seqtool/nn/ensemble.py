"""S1 classifiers trained apart and combined (`seqtool ensemble`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from seqtool.config import ClassifierConfig, CombinedClassifierConfig
from seqtool.nn.classifier import Classifier


class ClassifierCombination(nn.Module):
    """S1 classifiers trained apart, each reading the text through its own tokenizer (one
    started from word vectors, one from a language model, say). The prediction is the mean
    class distribution over all their GRUs: models started differently make different
    mistakes, which is what averaging needs. `seqtool ensemble` builds one; prediction
    (`predict.classify_outputs`) runs each part on its own pieces and calls `combine`."""

    def __init__(self, config: CombinedClassifierConfig):
        super().__init__()
        self.config = config
        self.parts = nn.ModuleList(Classifier(ClassifierConfig.from_dict(p))
                                   for p in config.parts)
        if len({p.config.num_classes for p in self.parts}) != 1:
            raise ValueError("combined classifiers must have the same number of classes")
        self.tokenizers: list[Any] = []  # one per part, set when loaded (predict.load)

    @property
    def encoding_dim(self) -> int:
        return sum(p.encoding_dim for p in self.parts)

    def combine(self, part_probabilities: list[torch.Tensor]) -> torch.Tensor:
        """[N, C] class distributions of the parts -> their mean, each weighted by its GRUs."""
        weights = [len(p.members) for p in self.parts]
        return sum(w * q for w, q in zip(weights, part_probabilities, strict=True)) / sum(weights)
