"""Which model class each task trains, and building one from its saved configuration.

Each model's module is imported when a model of its task is built (`seqtool classify` needs
neither the translator nor the generators)."""

from __future__ import annotations

from typing import Any

from torch import nn

import seqtool.config as configs

TASKS = ("pretrain", "classify", "generate", "translate")


def model_classes(task: str) -> tuple[type[nn.Module], type]:
    """The model class and the configuration class of `task`, its module imported now."""
    if task == "pretrain":
        from seqtool.nn.language_model import LanguageModel

        return LanguageModel, configs.LanguageModelConfig
    if task == "classify":
        from seqtool.nn.classifier import Classifier

        return Classifier, configs.ClassifierConfig
    if task == "generate":
        from seqtool.nn.generator import Generator

        return Generator, configs.GeneratorConfig
    if task == "translate":
        from seqtool.nn.translator import Translator

        return Translator, configs.TranslatorConfig
    raise KeyError(task)


def __getattr__(name: str) -> Any:
    if name == "MODELS":  # task -> (model class, configuration class)
        return {task: model_classes(task) for task in TASKS}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_model(task: str, config: dict[str, Any]) -> nn.Module:
    if task == "classify" and "parts" in config:
        from seqtool.nn.ensemble import ClassifierCombination

        return ClassifierCombination(configs.CombinedClassifierConfig.from_dict(config))
    model_cls, config_cls = model_classes(task)
    return model_cls(config_cls.from_dict(config))
