"""The fast searches (`search.greedy`, `search.beam_search`: one copy of the source memory per
sentence, each hypothesis's own best tokens, finished sentences leaving the batch) return the
same hypotheses as the plain ones they replaced (`reference.py`) on small random float64
models, `Translator.decode_step` with a group gives each row what one row per hypothesis
gives it, and the searches' fast step (`fast.DecodeStep`) gives what `decode_step` gives."""

from __future__ import annotations

import itertools

import pytest
import torch

from seqtool.config import TranslatorConfig
from seqtool.decoding import search
from seqtool.decoding.reference import beam_search_reference, greedy_reference
from seqtool.decoding.search import beam_search, greedy
from seqtool.nn import fast
from seqtool.nn.translator import SOURCE_KEYS, Translator
from seqtool.text.tokenizer import PAD

SRC_VOCAB = 11
ARCHITECTURES = [("gru", "bahdanau", True), ("lstm", "luong-general", True),
                 ("gru", "luong-dot", False), ("lstm", "bahdanau", False)]


def random_translator(seed: int, rnn: str = "gru", attention: str = "bahdanau",
                      input_feeding: bool = True, tgt_vocab: int = 9,
                      layers: int = 1) -> Translator:
    torch.manual_seed(seed)
    config = TranslatorConfig(src_vocab_size=SRC_VOCAB, tgt_vocab_size=tgt_vocab, embed_dim=6,
                              hidden_dim=6, attention_dim=5, dropout=0.0, rnn=rnn,
                              attention=attention, input_feeding=input_feeding,
                              decoder_layers=layers)
    model = Translator(config).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)  # peaked, varied choices
    return model


def random_sources(seed: int, batch: int, max_len: int = 7):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (batch,), generator=g)
    src = torch.randint(4, SRC_VOCAB, (batch, int(lengths.max())), generator=g)
    src[torch.arange(src.size(1))[None, :] >= lengths[:, None]] = PAD
    return src, lengths


pytestmark = pytest.mark.usefixtures("one_thread")


def same(fast, reference):
    assert [h.tokens for h in fast] == [h.tokens for h in reference]
    assert [h.score for h in fast] == pytest.approx([h.score for h in reference], abs=1e-9)
    for f, r in zip(fast, reference):
        if r.attention is not None:
            torch.testing.assert_close(torch.tensor(f.attention, dtype=torch.float64),
                                       torch.tensor(r.attention, dtype=torch.float64))


@pytest.mark.parametrize(("rnn", "attention", "feeding"), ARCHITECTURES)
def test_a_grouped_decode_step_gives_each_row_what_a_copied_memory_gives_it(
        rnn, attention, feeding):
    model = random_translator(1, rnn, attention, feeding, layers=2)
    src, lengths = random_sources(2, 4)
    k = 3
    with torch.no_grad():
        memory = model.encode(src, lengths)
        rows = torch.arange(4).repeat_interleave(k)
        copied = search._select_memory(memory, rows)
        grouped = {key: v if key in SOURCE_KEYS else copied[key] for key, v in memory.items()}
        prev = torch.randint(4, 9, (4 * k,), generator=torch.Generator().manual_seed(0))
        for _ in range(3):
            logp_c, copied, w_c = model.decode_step(copied, prev)
            logp_g, grouped, w_g = model.decode_step(grouped, prev, k)
            torch.testing.assert_close(logp_g, logp_c)
            torch.testing.assert_close(w_g, w_c)
            prev = logp_c.argmax(-1)


@pytest.mark.parametrize(("rnn", "attention", "feeding"), ARCHITECTURES)
@pytest.mark.parametrize("layers", [1, 2])
def test_the_fast_decode_step_gives_what_decode_step_gives(rnn, attention, feeding, layers):
    """`fast.DecodeStep` (the searches' step) against the plain `Translator.decode_step`: one
    row per sentence and grouped rows, with sentences leaving the batch between steps (its
    copy of the keys must follow)."""
    model = random_translator(3, rnn, attention, feeding, layers=layers)
    src, lengths = random_sources(4, 5)
    step = fast.DecodeStep(model)
    with torch.no_grad():
        encoded = model.encode(src, lengths)
        for group in (1, 3):
            rows = torch.arange(5).repeat_interleave(group)
            memory = {key: v if key in SOURCE_KEYS else search.select_state(v, rows)
                      for key, v in encoded.items()}
            plain = memory
            prev = torch.randint(4, 9, (5 * group,), generator=torch.Generator().manual_seed(0))
            for t in range(4):
                logp_f, memory, w_f = step(memory, prev, group)
                logp_p, plain, w_p = model.decode_step(plain, prev, group)
                torch.testing.assert_close(logp_f, logp_p)
                torch.testing.assert_close(w_f, w_p)
                torch.testing.assert_close(memory["attentional"], plain["attentional"])
                prev = logp_p.argmax(-1)
                if t == 1:  # the second sentence leaves
                    keep = torch.tensor([0, 2, 3, 4])
                    rows = (keep[:, None] * group + torch.arange(group)).view(-1)
                    memory, plain = ({key: search.select_state(v, keep if key in SOURCE_KEYS
                                                                 else rows)
                                      for key, v in m.items()} for m in (memory, plain))
                    prev = prev[rows]


@pytest.mark.parametrize(("rnn", "attention", "feeding"), ARCHITECTURES)
@pytest.mark.parametrize("seed", range(4))
def test_greedy_returns_what_the_reference_returns(rnn, attention, feeding, seed):
    model = random_translator(seed, rnn, attention, feeding)
    src, lengths = random_sources(seed, 23)
    for ratio in (0.5, 2.0):
        limits = (lengths.double() * ratio + 1).long()
        with torch.no_grad():
            same(greedy(model, src, lengths, limits, with_attention=True),
                 greedy_reference(model, src, lengths, limits, with_attention=True))


CASES = [(seed, *arch, beam, alpha, n_best, greedy_first)
         for seed, (arch, (beam, alpha, n_best), greedy_first) in enumerate(itertools.product(
             ARCHITECTURES, [(2, 1.0, 1), (3, 0.0, 2), (5, 0.6, 3), (4, 2.0, 1), (12, 1.0, 4)],
             (True, False)))]


@pytest.mark.parametrize(("seed", "rnn", "attention", "feeding", "beam", "alpha", "n_best",
                          "greedy_first"), CASES)
def test_beam_search_returns_what_the_reference_returns(
        seed, rnn, attention, feeding, beam, alpha, n_best, greedy_first):
    model = random_translator(seed, rnn, attention, feeding, tgt_vocab=7 + seed % 5)
    src, lengths = random_sources(seed, 9)
    limits = (lengths.double() * 1.5 + 2).long()
    with torch.no_grad():
        fast = beam_search(model, src, lengths, limits, beam, alpha, n_best,
                           with_attention=seed % 2 == 0, include_greedy=greedy_first)
        plain = beam_search_reference(model, src, lengths, limits, beam, alpha, n_best,
                                      with_attention=seed % 2 == 0,
                                      include_greedy=greedy_first)
    for f, r in zip(fast, plain, strict=True):
        same(f, r)


def test_a_beam_wider_than_the_vocabulary_returns_what_the_reference_returns():
    model = random_translator(7, tgt_vocab=5)
    src, lengths = random_sources(7, 3, max_len=3)
    limits = lengths + 1
    with torch.no_grad():
        for f, r in zip(beam_search(model, src, lengths, limits, 40, 1.0, 6),
                        beam_search_reference(model, src, lengths, limits, 40, 1.0, 6)):
            same(f, r)
