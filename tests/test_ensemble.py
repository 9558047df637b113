"""`seqtool ensemble`: classifiers trained apart, each on its own tokenizer, vote as one."""

from __future__ import annotations

import pytest
import torch
from conftest import TINY_CLASSIFY, TOY, run_cli, run_seqtool

from seqtool.checkpoint import Checkpoint
from seqtool.decoding.scoring import classify_outputs
from seqtool.inference.predict import load
from seqtool.nn.ensemble import ClassifierCombination

TEXTS = ["what a wonderful film", "dull and far too long", "I loved it", "not good at all"]


@pytest.fixture(scope="module")
def other_classifier(tmp_path_factory):
    """A second toy classifier on another tokenizer (30 pieces), two GRUs in it."""
    out = tmp_path_factory.mktemp("other") / "other.pt"
    options = [*TINY_CLASSIFY, "--vocab-size", "30", "--ensemble", "2", "--epochs", "5",
               "--seed", "3"]
    data = TOY / "sentiment.tsv"
    run_cli("train", "classify", "--train", data, "--dev", data, "--out", out, *options)
    return out


def probabilities(path, encode_only=False, backend="torch"):
    loaded = load(path, "classify", backend=backend)
    return torch.from_numpy(classify_outputs(loaded.model, loaded.tokenizer, TEXTS,
                                             encode_only=encode_only))


@pytest.mark.parametrize("backend", ["torch", "numpy"])
def test_the_combination_is_the_mean_over_all_grus_each_on_its_own_pieces(
        tmp_path, toy_classifier, other_classifier, backend):
    out = tmp_path / "combined.pt"
    run_cli("ensemble", toy_classifier, other_classifier, "-o", out)
    combined = load(out, "classify", backend=backend)
    assert isinstance(combined.model, ClassifierCombination) == (backend == "torch")
    assert type(combined.model).__name__ == "ClassifierCombination"
    sizes = [load(p, "classify").tokenizer.vocab_size for p in (toy_classifier, other_classifier)]
    assert sizes[0] != sizes[1]
    assert [t.vocab_size for t in combined.model.tokenizers] == sizes
    one, two = (probabilities(p, False, backend) for p in (toy_classifier, other_classifier))
    assert not torch.allclose(one, two, atol=1e-3)  # the test can tell the weights apart
    torch.testing.assert_close(probabilities(out, False, backend), (one + 2 * two) / 3)
    vectors = probabilities(out, True, backend)
    torch.testing.assert_close(vectors, torch.cat([probabilities(toy_classifier, True, backend),
                                                   probabilities(other_classifier, True,
                                                                 backend)], -1))
    assert vectors.shape[1] == combined.model.encoding_dim
    assert [p["members"] for p in combined.checkpoint.meta["parts"]] == [1, 2]


def test_a_combination_combines_again_as_its_parts_and_works_from_the_command_line(
        tmp_path, toy_classifier, other_classifier):
    first = tmp_path / "first.pt"
    run_cli("ensemble", toy_classifier, other_classifier, "-o", first)
    again = tmp_path / "again.pt"
    run_cli("ensemble", first, toy_classifier, "-o", again, "--half-checkpoint")
    parts = Checkpoint.load(again).meta["parts"]
    assert [p["from"] for p in parts] == [str(toy_classifier), str(other_classifier),
                                          str(toy_classifier)]
    one, two = probabilities(toy_classifier), probabilities(other_classifier)
    torch.testing.assert_close(probabilities(again), (2 * one + 2 * two) / 4,
                               atol=2e-3, rtol=0)  # fp16 weights
    result = run_cli("classify", "-m", again, "--format", "tsv", *TEXTS)
    assert len(result.output.splitlines()) == len(TEXTS)
    report = run_cli("evaluate", "classify", "-m", again, "-i", TOY / "sentiment.tsv",
                     "--format", "json")
    assert '"accuracy"' in report.output


def test_labels_must_agree(tmp_path, toy_classifier, other_classifier):
    ckpt = Checkpoint.load(other_classifier)
    ckpt.labels = list(reversed(ckpt.labels))
    swapped = tmp_path / "swapped.pt"
    ckpt.save(swapped)
    result = run_seqtool("ensemble", toy_classifier, swapped, "-o", tmp_path / "c.pt")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(swapped) in result.stderr and "differ" in result.stderr
    assert not (tmp_path / "c.pt").exists()


def test_bad_inputs_are_one_line_errors(tmp_path, toy_classifier, toy_generator):
    cases = [
        (["ensemble", toy_classifier, toy_generator, "-o", tmp_path / "c.pt"],
         "not a classify model"),
        (["ensemble", toy_classifier, "-o", tmp_path / "c.pt"], "two or more"),
        (["ensemble", toy_classifier, toy_classifier, "-o", toy_classifier],
         "refusing to overwrite"),
    ]
    for args, message in cases:
        result = run_seqtool(*args)
        assert result.returncode == 1, args
        assert message in result.stderr and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_a_combination_missing_a_tokenizer_is_damaged(tmp_path, toy_classifier,
                                                      other_classifier):
    out = tmp_path / "combined.pt"
    run_cli("ensemble", toy_classifier, other_classifier, "-o", out)
    ckpt = Checkpoint.load(out)
    del ckpt.tokenizers["src1"]
    ckpt.save(out)
    result = run_seqtool("classify", "-m", out, "fine")
    assert result.returncode == 1 and "damaged checkpoint: no tokenizer 'src1'" in result.stderr
