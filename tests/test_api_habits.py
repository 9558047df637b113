"""An API that meets Python habits (issue 30, item 4): one string in, one result out (a list
in, a list out); the API in dir(seqtool); a readable repr; seqtool.train returns the model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import seqtool
from seqtool.results import ClassifyResult, TranslateResult
from tests.conftest import TOY


def test_one_text_gives_one_result_and_a_list_a_list(toy_classifier):
    classifier = seqtool.load("classify", toy_classifier, device="cpu")
    one = classifier.classify("I love my cat.")
    assert isinstance(one, ClassifyResult) and one.text == "I love my cat."
    many = classifier.classify(["I love my cat.", "It rains."])
    assert isinstance(many, list) and len(many) == 2 and many[0] == one
    assert classifier.classify(text for text in ["a", "b", "c"])[2].text == "c"  # any iterable
    assert classifier.classify([]) == []
    vector = classifier.embed("I love my cat.")
    assert vector.shape == (classifier.embedding_size,)
    assert np.array_equal(vector, classifier.embed(["I love my cat."])[0])


def test_translate_takes_one_string_too(toy_translator):
    translator = seqtool.load("translate", toy_translator, device="cpu")
    one = translator.translate("the house", beam=2)
    assert isinstance(one, TranslateResult) and one.source == "the house"
    [same] = translator.translate(["the house"], beam=2)
    assert same == one


def test_texts_that_are_not_strings_fail_clearly(toy_classifier):
    classifier = seqtool.load("classify", toy_classifier, device="cpu")
    with pytest.raises(TypeError, match="each text must be a str, not int"):
        classifier.classify(["fine", 3])
    with pytest.raises(TypeError, match="not bytes"):
        classifier.classify(b"I love my cat.")


def test_dir_shows_the_api_without_importing_torch():
    code = ("import sys, seqtool; names = dir(seqtool); "
            "print(' '.join(n for n in names if not n.startswith('_'))); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[1] == "False"
    public = out[0].split()
    assert set(seqtool.__all__) == set(public)
    assert {"load", "train", "evaluate", "models", "ClassifyResult"} <= set(public)


def test_a_loaded_model_says_what_it_is(toy_classifier, toy_translator):
    text = repr(seqtool.load("classify", toy_classifier, device="cpu"))
    assert text.startswith("<LoadedClassifier 'classify'") and "object at 0x" not in text
    assert "labels=['negative', 'positive']" in text and str(toy_classifier) in text
    assert "device='cpu'" in text
    assert "labels" not in repr(seqtool.load("translate", toy_translator, device="cpu"))


def test_models_lists_the_shipped_models():
    rows = seqtool.models()
    assert {"sentiment", "brown-genre", "bible-fr-en", "english-gru-lm"} <= {
        r["name"] for r in rows}
    assert all({"task", "domain", "score", "bytes"} <= set(r) for r in rows)


def test_train_returns_the_trained_model_loaded(tmp_path):
    data = str(TOY / "sentiment.tsv")
    options = dict(vocab_size=60, embed_dim=8, hidden_dim=8, max_tokens=64, lr=0.01,
                   warmup_steps=0, schedule="constant", quiet=True, device="cpu")
    lm = seqtool.train("pretrain", train=data, dev=data, out=str(tmp_path / "lm.pt"),
                       epochs=1, **options)
    assert lm.task == "pretrain" and lm.summary["steps"] > 0
    classifier = seqtool.train("classify", train=data, dev=data, init=lm,
                               out=str(tmp_path / "c.pt"), epochs=2, **options)
    assert classifier.path == str(tmp_path / "c.pt") and classifier.summary["steps"] > 0
    assert classifier.labels == ["negative", "positive"]
    assert classifier.classify("I love my cat.").label in classifier.labels
    from seqtool.checkpoint import Checkpoint

    command = Checkpoint.load(tmp_path / "c.pt").meta["command"]
    assert f"init={str(tmp_path / 'lm.pt')!r}" in command  # the file, not the object
