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


@pytest.mark.parametrize("task", list(SMALL))
@pytest.mark.parametrize("half", [False, True])
def test_a_model_given_the_loaded_tensors_equals_one_built_and_filled(task, half):
    """`predict._build_loaded` (the loaded tensors assigned, no copy) gives the model that
    building it and copying the weights in gives: same parameters, dtypes, outputs, ties."""
    import torch

    from seqtool.inference.predict import _build_loaded

    shared = {"shared_embeddings": True} if task == "translate" else {}
    config = dataclasses.asdict(MODELS[task][1](**SMALL[task], **shared))
    torch.manual_seed(0)
    trained = build_model(task, config)
    weights = {k: v.clone() for k, v in trained.state_dict().items()}
    if half:  # as a --half-checkpoint file loads (Checkpoint.load makes fp16 float32)
        weights = {k: v.half().float() for k, v in weights.items()}
    plain = build_model(task, config)
    plain.load_state_dict(weights)
    loaded = _build_loaded(task, config, weights)
    assert not any(t.is_meta for t in [*loaded.parameters(), *loaded.buffers()])
    for (name, a), (_, b) in zip(plain.state_dict(keep_vars=True).items(),
                                 loaded.state_dict(keep_vars=True).items(), strict=True):
        assert torch.equal(a, b) and a.dtype == b.dtype, name
        assert isinstance(b, torch.nn.Parameter) == isinstance(a, torch.nn.Parameter), name
    if task == "translate":
        assert loaded.encoder.embedding.weight is loaded.decoder.embedding.weight
        src = torch.tensor([[5, 6, 7]])
        plain.eval(), loaded.eval()
        with torch.no_grad():
            torch.testing.assert_close(loaded(src, torch.tensor([3]), src),
                                       plain(src, torch.tensor([3]), src), rtol=0, atol=0)
