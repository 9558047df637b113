"""seqtool.nn.registry: every task builds its model class from a saved configuration."""

from __future__ import annotations

import dataclasses

import pytest

from seqtool.config import ClassifierConfig, GeneratorConfig
from seqtool.nn.classifier import Classifier
from seqtool.nn.ensemble import ClassifierCombination
from seqtool.nn.generator import Generator
from seqtool.nn.language_model import LanguageModel
from seqtool.nn.registry import MODELS, build_model
from seqtool.nn.translator import Translator

SMALL = {"pretrain": dict(vocab_size=20, embed_dim=4, hidden_dim=4),
         "classify": dict(vocab_size=20, num_classes=2, embed_dim=4, hidden_dim=4),
         "generate": dict(vocab_size=20, num_classes=2, embed_dim=4, hidden_dim=4),
         "translate": dict(src_vocab_size=20, tgt_vocab_size=20, embed_dim=4, hidden_dim=4,
                           attention_dim=4)}


@pytest.mark.parametrize("task, model_cls", [
    ("pretrain", LanguageModel), ("classify", Classifier), ("generate", Generator),
    ("translate", Translator)])
def test_every_task_builds_its_model(task, model_cls):
    assert MODELS[task][0] is model_cls
    config = dataclasses.asdict(MODELS[task][1](**SMALL[task]))
    model = build_model(task, config)
    assert type(model) is model_cls
    assert dataclasses.asdict(model.config) == config


def test_a_classifier_configuration_with_parts_builds_a_combination():
    part = dataclasses.asdict(ClassifierConfig(**SMALL["classify"]))
    model = build_model("classify", {"parts": [part, part]})
    assert isinstance(model, ClassifierCombination) and len(model.parts) == 2


def test_an_unknown_task_fails():
    with pytest.raises(KeyError):
        build_model("summarize", dataclasses.asdict(GeneratorConfig(**SMALL["generate"])))
