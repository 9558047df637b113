"""Quality checks of the shipped models that run in seconds."""

from __future__ import annotations

import json

from conftest import ROOT, run_cli

SENTIMENT = ROOT / "corpora" / "sentiment" / "movie-snippets"
BIBLE = ROOT / "corpora" / "translation" / "bible-fr-en"


def test_shipped_classifier_reaches_078_on_test():
    report = json.loads(run_cli("evaluate", "classify", "--data", SENTIMENT / "test.tsv",
                                "--json").output)
    assert report["examples"] == 1058
    assert report["accuracy"] >= 0.78


def test_shipped_generator_conditions_on_its_class():
    report = json.loads(run_cli("evaluate", "generate", "--data", SENTIMENT / "test.tsv",
                                "--samples", "20", "--json").output)
    assert report["perplexity"] < report["perplexity_wrong_class"]
    for label, m in report["per_class"].items():
        assert m["perplexity"] < m["perplexity_wrong_class"], label


def test_shipped_translator_translates(tmp_path):
    src, ref = tmp_path / "s.fr", tmp_path / "r.en"
    src.write_text("".join((BIBLE / "test.fr").read_text().splitlines(True)[:150]))
    ref.write_text("".join((BIBLE / "test.en").read_text().splitlines(True)[:150]))
    report = json.loads(run_cli("evaluate", "translate", "--src", src, "--ref", ref,
                                "--beam", "1", "--json").output)
    assert report["bleu"] > 20
    out = run_cli("translate", input="Dieu est amour.\n\n").output
    assert out.endswith("\n\n") and "God" in out
