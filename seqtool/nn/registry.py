"""Which model class each task trains, and building one from its saved configuration."""

from __future__ import annotations

from typing import Any

from torch import nn

from seqtool.config import (
    ClassifierConfig,
    CombinedClassifierConfig,
    GeneratorConfig,
    LanguageModelConfig,
    TranslatorConfig,
)
from seqtool.nn.classifier import Classifier
from seqtool.nn.ensemble import ClassifierCombination
from seqtool.nn.generator import Generator
from seqtool.nn.language_model import LanguageModel
from seqtool.nn.translator import Translator

MODELS = {
    "pretrain": (LanguageModel, LanguageModelConfig),
    "classify": (Classifier, ClassifierConfig),
    "generate": (Generator, GeneratorConfig),
    "translate": (Translator, TranslatorConfig),
}


def build_model(task: str, config: dict[str, Any]) -> nn.Module:
    if task == "classify" and "parts" in config:
        return ClassifierCombination(CombinedClassifierConfig.from_dict(config))
    model_cls, config_cls = MODELS[task]
    return model_cls(config_cls.from_dict(config))
