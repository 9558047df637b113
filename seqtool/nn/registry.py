"""Which model class each task trains, and building one from its saved configuration.

Each model's module is imported when a model of its task is built (`seqtool classify` needs
neither the translator nor the generators)."""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from seqtool import config as configs

_MODELS = {
    "pretrain": ("seqtool.nn.language_model", "LanguageModel", "LanguageModelConfig"),
    "classify": ("seqtool.nn.classifier", "Classifier", "ClassifierConfig"),
    "generate": ("seqtool.nn.generator", "Generator", "GeneratorConfig"),
    "translate": ("seqtool.nn.translator", "Translator", "TranslatorConfig"),
}


def model_classes(task: str) -> tuple[type[nn.Module], type]:
    """The model class and the configuration class of `task`."""
    module, model_name, config_name = _MODELS[task]
    return getattr(importlib.import_module(module), model_name), getattr(configs, config_name)


def __getattr__(name: str) -> Any:
    if name == "MODELS":  # task -> (model class, configuration class)
        return {task: model_classes(task) for task in _MODELS}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_model(task: str, config: dict[str, Any]) -> nn.Module:
    if task == "classify" and "parts" in config:
        from seqtool.nn.ensemble import ClassifierCombination

        return ClassifierCombination(configs.CombinedClassifierConfig.from_dict(config))
    model_cls, config_cls = model_classes(task)
    return model_cls(config_cls.from_dict(config))
