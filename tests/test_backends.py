"""The numpy and torch backends give the same answers through the one implementation of each
algorithm (`decoding/`): the searches, sampling and classification scoring, on small random
models of several architectures and on the shipped models; and the package answers with
torch made unimportable."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT, small_generator

from seqtool import engine
from seqtool.config import ClassifierConfig, TranslatorConfig
from seqtool.decoding.sampling import sample
from seqtool.decoding.scoring import classify_outputs
from seqtool.decoding.search import beam_search, greedy
from seqtool.nn.classifier import Classifier
from seqtool.nn.translator import Translator
from seqtool.text.tokenizer import PAD

pytestmark = pytest.mark.usefixtures("one_thread")


def twin(task: str, model: torch.nn.Module):
    """The numpy model of a torch model, from its state dict."""
    weights = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    return engine.build(task, model.config.to_dict(), weights)


def random_translator(seed: int, rnn: str, attention: str, feeding: bool) -> Translator:
    torch.manual_seed(seed)
    config = TranslatorConfig(src_vocab_size=13, tgt_vocab_size=11, embed_dim=8, hidden_dim=8,
                              attention_dim=6, dropout=0.0, rnn=rnn, attention=attention,
                              input_feeding=feeding)
    model = Translator(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.6)
    return model


def random_sources(seed: int, batch: int = 7, max_len: int = 6):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_len + 1, batch)
    src = rng.integers(4, 13, (batch, int(lengths.max())))
    src[np.arange(src.shape[1])[None, :] >= lengths[:, None]] = PAD
    return src, lengths


@pytest.mark.parametrize(("rnn", "attention", "feeding"),
                         [("gru", "bahdanau", True), ("lstm", "luong-general", True),
                          ("gru", "luong-dot", False)])
@pytest.mark.parametrize("seed", range(3))
def test_the_searches_find_the_same_translations_on_both_backends(rnn, attention, feeding,
                                                                  seed):
    model = random_translator(seed, rnn, attention, feeding)
    src, lengths = random_sources(seed)
    limits = lengths * 2 + 2
    numpy_model = twin("translate", model)
    for search in (lambda m: [[h] for h in greedy(m, src, lengths, limits, True)],
                   lambda m: beam_search(m, src, lengths, limits, 4, 1.0, 3, True)):
        a, b = search(model), search(numpy_model)
        for hyps_a, hyps_b in zip(a, b, strict=True):
            assert [h.tokens for h in hyps_a] == [h.tokens for h in hyps_b]
            assert [h.score for h in hyps_a] == pytest.approx([h.score for h in hyps_b],
                                                              abs=1e-4)
            np.testing.assert_allclose(np.asarray(hyps_a[0].attention, float),
                                       np.asarray(hyps_b[0].attention, float), atol=1e-5)


@pytest.mark.parametrize("guidance", [0.0, 1.5])
@pytest.mark.parametrize("options", [{}, {"top_k": 3}, {"top_p": 0.8}, {"temperature": 0.0}])
def test_a_seed_draws_the_same_samples_on_both_backends(guidance, options):
    model = small_generator(4, num_classes=3).float()
    numpy_model = twin("generate", model)
    labels = np.asarray([0, 1, 2, 1, 0, 2] * 3)
    a = sample(model, labels, [5, 6], 12, generator=7, guidance=guidance, **options)
    b = sample(numpy_model, labels, [5, 6], 12, generator=7, guidance=guidance, **options)
    assert [h.tokens for h in a] == [h.tokens for h in b]
    assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-4)
    c = sample(model, labels, [5, 6], 12, generator=8, guidance=guidance, **options)
    if options.get("temperature") != 0.0:
        assert [h.tokens for h in a] != [h.tokens for h in c]  # the seed matters


class Pieces:
    """A stand-in tokenizer: each text is its characters' codes, folded into the vocabulary."""

    def encode_batch(self, texts, max_length=0):
        return [[4 + ord(c) % 40 for c in t] for t in texts]


@pytest.mark.parametrize(("pooling", "bidirectional", "layers", "ensemble"),
                         [("max", True, 1, 1), ("mean", False, 2, 1), ("last", True, 2, 1),
                          ("concat", True, 1, 3)])
def test_class_probabilities_and_vectors_agree_on_both_backends(pooling, bidirectional, layers,
                                                                ensemble):
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(50, 3, embed_dim=8, hidden_dim=9, layers=layers,
                                        bidirectional=bidirectional, pooling=pooling,
                                        ensemble=ensemble, dropout=0.0)).eval()
    numpy_model = twin("classify", model)
    texts = ["a", "A fine film.", "", "dull and long " * 5, "ok"]
    for encode_only in (False, True):
        a = classify_outputs(model, Pieces(), texts, batch_size=2, encode_only=encode_only)
        b = classify_outputs(numpy_model, Pieces(), texts, batch_size=2, encode_only=encode_only)
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_the_shipped_models_answer_alike_on_both_backends():
    import seqtool

    lines = (ROOT / "corpora" / "sentiment" / "movie-snippets" / "test.tsv").read_text()
    texts = [line.split("\t", 1)[1] for line in lines.splitlines()[:120]]
    a, b = (seqtool.load("classify", backend=x).classify(texts) for x in ("torch", "numpy"))
    assert [r.label for r in a] == [r.label for r in b]
    assert max(abs(x.probabilities[k] - y.probabilities[k]) for x, y in zip(a, b)
               for k in x.probabilities) <= 1e-5
    sources = (ROOT / "corpora" / "translation" / "bible-fr-en" / "test.fr").read_text()
    sources = sources.splitlines()[:12]
    a, b = (seqtool.load("translate", backend=x).translate(sources, beam=3)
            for x in ("torch", "numpy"))
    assert [r.translation for r in a] == [r.translation for r in b]
    a, b = (seqtool.load("generate", backend=x).generate("positive", n=4, seed=3)
            for x in ("torch", "numpy"))
    assert [r.text for r in a] == [r.text for r in b]


NO_TORCH = ("import sys; sys.modules['torch'] = None; sys.argv[0] = 'seqtool'; "
            "from seqtool.cli import main; main()")


def test_classify_translate_and_generate_answer_without_torch(tmp_path):
    """With torch made unimportable, the three tasks answer (numpy), and a command that needs
    torch says in one line what to install."""
    def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", NO_TORCH, *args], input=stdin,
                              capture_output=True, text=True, cwd=tmp_path, timeout=300)

    labels = run("classify", "A gorgeous, witty, seductive movie.", "Dull and far too long.")
    assert labels.returncode == 0, labels.stderr
    assert [line.split()[0] for line in labels.stdout.splitlines()] == ["positive", "negative"]
    translated = run("translate", "--beam", "5", stdin="Dieu est amour.\n")
    assert translated.returncode == 0, translated.stderr
    assert "God" in translated.stdout
    generated = run("generate", "--label", "positive", "-n", "2", "--seed", "1")
    assert generated.returncode == 0, generated.stderr
    assert len(generated.stdout.splitlines()) == 2
    forced = run("classify", "--backend", "torch", "A fine film.")
    assert forced.returncode != 0
    assert forced.stderr.count("\n") == 1 and "seqtool[torch]" in forced.stderr


def test_auto_moves_a_large_translation_job_to_torch_with_the_same_answers(monkeypatch):
    """`backend="auto"` answers on numpy, and moves to torch for a job of AUTO_TORCH_FROM
    texts (where torch's faster steps repay its import); an explicit backend never moves."""
    import seqtool
    from seqtool.inference import predict

    monkeypatch.setitem(predict.AUTO_TORCH_FROM, "translate", 3)
    texts = ["Dieu est amour.", "Au commencement était la Parole.", "Je suis le chemin."]
    auto, fixed = seqtool.load("translate"), seqtool.load("translate", backend="numpy")
    few = auto.translate(texts[:2])
    assert auto.loaded.backend == "numpy"
    many = auto.translate(texts)
    assert auto.loaded.backend == "torch" and fixed.translate(texts) == many
    assert few == many[:2] and fixed.loaded.backend == "numpy"
