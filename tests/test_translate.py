"""S3: the toy translator learns its pairs; decoding options keep lines aligned."""

from __future__ import annotations

import json

from conftest import TOY, run_cli

from seqtool.data import read_parallel

PAIRS = read_parallel(TOY / "en-de.tsv")


def test_toy_pairs_translate_back_exactly(toy_translator):
    for beam in ("1", "5"):
        out = run_cli("translate", "-m", toy_translator, "--beam", beam,
                      input="".join(p.src + "\n" for p in PAIRS)).output.splitlines()
        assert out == [p.tgt for p in PAIRS], beam


def test_empty_lines_stay_aligned(toy_translator):
    out = run_cli("translate", "-m", toy_translator,
                  input="i love my cat\n\ni love water\n").output
    assert out == "ich liebe meine katze\n\nich liebe wasser\n"


def test_n_best_jsonl(toy_translator):
    out = run_cli("translate", "-m", toy_translator, "--beam", "4", "--n-best", "3",
                  "--format", "jsonl", "i love my cat").output
    record = json.loads(out)
    scores = [h["score"] for h in record["n_best"]]
    assert len(scores) == 3 and scores == sorted(scores, reverse=True)
    assert record["n_best"][0]["translation"] == record["translation"] == "ich liebe meine katze"


def test_attention_png_and_terminal_view(toy_translator, tmp_path):
    png = tmp_path / "att.png"
    result = run_cli("translate", "-m", toy_translator, "--beam", "3", "--attention", png,
                     "--show-attention", "i love my cat")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "attention" in result.output


def test_evaluate_translate_reports_bleu_with_signature(toy_translator):
    report = json.loads(run_cli("evaluate", "translate", "-m", toy_translator,
                                "--src", TOY / "en-de.en", "--ref", TOY / "en-de.de",
                                "--json").output)
    assert round(report["bleu"], 6) == 100 and round(report["chrf"], 6) == 100
    assert report["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    assert report["sentences_per_s"] > 0
