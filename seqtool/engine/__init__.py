"""Inference without torch: the forward passes of every model of `seqtool.nn` in numpy.

`build(task, config, weights)` makes the numpy twin of `nn.registry.build_model(task, config)`
from the same configuration and the same weights (a dict of arrays with exactly the torch
model's `state_dict()` names and shapes), in eval mode (no dropout). The answers are torch's
to float rounding (tests/test_engine.py). Nothing here imports torch.

- classify: `classifier.Classifier` (`encode`, `logits`) or, for a configuration with
  "parts", `classifier.ClassifierCombination` (`parts`, `combine`).
- generate: `generator.Generator` (`start`, `step`, `select`, `forward`).
- translate: `translator.Translator` (`encode`, `decode_step`, `forward`;
  `translator.select_state`).
- pretrain: `language_model.LanguageModel` (`predicting_states`, `piece_nll`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

TASKS = ("classify", "generate", "translate", "pretrain")


def build(task: str, config: dict[str, Any], weights: Mapping[str, np.ndarray],
          dtype: Any = np.float32) -> Any:
    """The numpy model of `task` for `config` with `weights` (name -> array), computing in
    `dtype` (float32 or float64). KeyError for a missing weight, ValueError for an unexpected
    one, a wrong shape or a configuration the torch model would refuse."""
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, not {dtype}")
    if task == "classify":
        from seqtool.engine.classifier import Classifier, ClassifierCombination

        if "parts" in config:
            return ClassifierCombination(config, weights, dtype)
        return Classifier(config, weights, dtype)
    if task == "generate":
        from seqtool.engine.generator import Generator

        return Generator(config, weights, dtype)
    if task == "translate":
        from seqtool.engine.translator import Translator

        return Translator(config, weights, dtype)
    if task == "pretrain":
        from seqtool.engine.language_model import LanguageModel

        return LanguageModel(config, weights, dtype)
    raise ValueError(f"no numpy model for task {task!r}: {', '.join(TASKS)}")
