"""S3: the toy translator learns its pairs; decoding options keep lines aligned."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import TINY_TRANSLATE, TOY, run_cli

from seqtool.data import read_parallel
from seqtool.models import Translator, TranslatorConfig, run_packed, run_padded

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


@pytest.mark.parametrize("attention", ["bahdanau", "luong-general", "luong-dot"])
def test_hand_written_backward_equals_autograd(attention):
    """The fast training path (recurrence.py) gives autograd's gradients of the step loop."""
    torch.manual_seed(0)
    config = TranslatorConfig(src_vocab_size=30, tgt_vocab_size=30, embed_dim=8, hidden_dim=6,
                              attention=attention, attention_dim=5, dropout=0.0)
    model = Translator(config).double()
    src = torch.randint(4, 30, (3, 7))
    src_lengths = torch.tensor([7, 4, 2])
    tgt = torch.randint(4, 30, (3, 5))
    direction = torch.randn(3, 5, 6, dtype=torch.double)
    results = []
    for decode in (model._decode_steps, model._decode_fused):
        model.zero_grad()
        hidden = decode(model.encode(src, src_lengths), model.decoder.embedding(tgt))
        (hidden * direction).sum().backward()
        results.append((hidden.detach(), {n: p.grad for n, p in model.named_parameters()}))
    (steps, step_grads), (fused, fused_grads) = results
    torch.testing.assert_close(fused, steps, rtol=1e-10, atol=1e-12)
    for name, grad in step_grads.items():
        torch.testing.assert_close(fused_grads[name], grad, rtol=1e-8, atol=1e-12, msg=name)


@pytest.mark.parametrize("rnn", [torch.nn.GRU, torch.nn.LSTM])
@pytest.mark.parametrize("bidirectional", [True, False])
def test_padded_rnn_equals_packed(rnn, bidirectional):
    torch.manual_seed(0)
    module = rnn(5, 4, 2, batch_first=True, bidirectional=bidirectional).double()
    x = torch.randn(3, 6, 5, dtype=torch.double)
    lengths = torch.tensor([6, 3, 1])
    out, final = run_padded(module, x, lengths)
    packed_out, h_n = run_packed(module, x, lengths)
    h_n = h_n[0] if isinstance(h_n, tuple) else h_n
    torch.testing.assert_close(out, packed_out)
    torch.testing.assert_close(final, torch.cat(list(h_n[-(2 if bidirectional else 1):]), -1))


def test_luong_attention_learns_the_toy_pairs(tmp_path):
    data = TOY / "en-de.tsv"
    for kind in ("luong-general", "luong-dot"):
        out = tmp_path / f"{kind}.pt"
        run_cli("train", "translate", "--train", data, "--dev", data, "--out", out,
                "--attention", kind, *TINY_TRANSLATE)
        translated = run_cli("translate", "-m", out, "i love my cat", "i love water").output
        assert translated == "ich liebe meine katze\nich liebe wasser\n", kind
    odd = run_cli("train", "translate", "--train", data, "--dev", data, "--out",
                  tmp_path / "odd.pt", "--attention", "luong-dot", *TINY_TRANSLATE,
                  "--hidden-dim", "47", ok=False)
    assert odd.exit_code == 1 and "even hidden size" in odd.output
