"""The searches (`search.greedy`, `search.beam_search`: one copy of the source memory per
sentence, each hypothesis's own best tokens, finished sentences leaving the batch, exact early
stopping) return what an independent oracle (`search_oracle.py`: one sentence and one row per
hypothesis at a time, no early stopping) returns on small random float64 models,
`Translator.decode_step` with a group gives each row what one row per hypothesis gives it, and
the searches' fast step (`fast.DecodeStep`) gives what `decode_step` gives."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from search_oracle import beam_oracle, greedy_oracle

from seqtool.config import TranslatorConfig
from seqtool.decoding import search
from seqtool.decoding.search import beam_search, greedy
from seqtool.decoding.steps import translator_steps
from seqtool.nn import fast
from seqtool.nn.translator import SOURCE_KEYS, Translator, select_state
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
    # log-probabilities are float32 (both steps end in log_softmax(logits.float())); the
    # searches add them up in float32 where the oracle adds them in float64
    assert [h.score for h in fast] == pytest.approx([h.score for h in reference], rel=1e-6,
                                                    abs=1e-6)
    for f, r in zip(fast, reference):
        if r.attention is not None:
            np.testing.assert_allclose(np.asarray(f.attention, np.float64),
                                       np.asarray(r.attention, np.float64), rtol=1e-7,
                                       atol=1e-9)


@pytest.mark.parametrize(("rnn", "attention", "feeding"), ARCHITECTURES)
def test_a_grouped_decode_step_gives_each_row_what_a_copied_memory_gives_it(
        rnn, attention, feeding):
    model = random_translator(1, rnn, attention, feeding, layers=2)
    src, lengths = random_sources(2, 4)
    k = 3
    with torch.no_grad():
        memory = model.encode(src, lengths)
        rows = torch.arange(4).repeat_interleave(k)
        copied = {key: select_state(v, rows) for key, v in memory.items()}
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
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("token_gates", [True, False])
def test_the_fast_decode_step_gives_what_decode_step_gives(rnn, attention, feeding, layers,
                                                            dtype, token_gates, monkeypatch):
    """`fast.DecodeStep` (the searches' step) against the plain `Translator.decode_step`: one
    row per sentence and grouped rows, with sentences leaving the batch between steps (its
    copy of the keys must follow). In float32 its products are oneDNN's (`fast.Affine`);
    GRU input gates from the table of every token's share, or (a vocabulary too large for
    the table) from the embeddings."""
    if not token_gates:
        monkeypatch.setattr(fast, "_MAX_TOKEN_GATES", 0)
    model = random_translator(3, rnn, attention, feeding, layers=layers).to(dtype)
    src, lengths = random_sources(4, 5)
    step = fast.DecodeStep(model)
    assert (step.prepared.token_gates is not None) == (token_gates and rnn == "gru")
    with torch.no_grad():
        encoded = model.encode(src, lengths)
        for group in (1, 3):
            rows = torch.arange(5).repeat_interleave(group)
            memory = {key: v if key in SOURCE_KEYS else select_state(v, rows)
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
                    memory, plain = ({key: select_state(v, keep if key in SOURCE_KEYS
                                                                 else rows)
                                      for key, v in m.items()} for m in (memory, plain))
                    prev = prev[rows]


@pytest.mark.parametrize("rows", [1, 7, 320, 700])
def test_affine_gives_what_linear_gives(rows):
    """`fast.Affine`, the fast step's products: oneDNN's on a packed weight in float32 on CPU
    (where this torch has oneDNN, as the CPU wheels do), BLAS in float64 and under autocast;
    any row count, 2-d and 3-d inputs, with and without a bias."""
    g = torch.Generator().manual_seed(rows)
    weight, bias = torch.randn(37, 19, generator=g), torch.randn(37, generator=g)
    x = torch.randn(rows, 19, generator=g)
    for b in (bias, None):
        affine = fast.Affine(weight, b)
        assert (affine.packed is not None) == torch.backends.mkldnn.is_available()
        torch.testing.assert_close(affine(x), torch.nn.functional.linear(x, weight, b))
        torch.testing.assert_close(affine(x.view(rows, 1, 19)),
                                   torch.nn.functional.linear(x, weight, b).view(rows, 1, 37))
        assert torch.equal(affine(x[:1]), affine(x)[:1])  # a row's result ignores the others
        wide = fast.Affine(weight.double(), None if b is None else b.double())
        assert wide.packed is None
        torch.testing.assert_close(wide(x.double()),
                                   torch.nn.functional.linear(x.double(), weight.double(),
                                                              None if b is None else b.double()))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = fast.Affine(weight, bias)(x)
    assert low.dtype == torch.bfloat16
    torch.testing.assert_close(low.float(), torch.nn.functional.linear(x, weight, bias),
                               atol=0.1, rtol=0.02)


@pytest.mark.parametrize(("rows", "width", "m"), [(1, 4000, 10), (5, 8000, 10), (320, 8000, 10),
                                              (7, 8037, 10), (64, 8000, 1), (3, 450, 1),
                                              (4, 50, 3), (9, 12345, 25)])
def test_top_tokens_gives_what_a_full_sort_gives(rows, width, m):
    """`search.top_tokens` (by way of block maxima where the width allows) against a full
    sort, on scores whose best are spread over the blocks, bunched in one, or in the partial
    block."""
    rng = np.random.default_rng(width + m)
    spread = rng.standard_normal((rows, width))
    bunched = spread.copy()
    bunched[:, 200:200 + 2 * m] += 10.0
    tail = spread.copy()
    tail[:, -m:] += 10.0
    peaked = (3 * spread - np.log(np.exp(3 * spread).sum(1, keepdims=True))).astype(np.float32)
    for scores in (spread, bunched, tail, peaked):
        values, columns = search.top_tokens(scores, m)
        expected = np.argsort(-scores, axis=1, kind="stable")[:, :m]
        assert np.array_equal(values, np.take_along_axis(scores, expected, 1))
        assert np.array_equal(columns, expected)


def test_the_fast_step_prepares_weights_once_and_again_after_they_change():
    model = random_translator(5)
    src, lengths = random_sources(5, 3)
    first = fast.DecodeStep(model)
    assert fast.DecodeStep(model).prepared is first.prepared
    with torch.no_grad():
        model.decoder.output.bias.add_(1.0)  # in place, as an optimizer step
        memory = model.encode(src, lengths)
        prev = torch.full((3,), 4)
        step = fast.DecodeStep(model)
        assert step.prepared is not first.prepared
        torch.testing.assert_close(step(memory, prev)[0], model.decode_step(memory, prev)[0])


@pytest.mark.parametrize("beam", [1, 5])
def test_a_search_over_a_large_vocabulary_returns_what_the_oracle_returns(beam):
    """Vocabularies wide enough for `search.top_tokens` to take its block maxima."""
    model = random_translator(11, tgt_vocab=4500)
    src, lengths = random_sources(11, 6)
    limits = lengths + 3
    with torch.no_grad():
        if beam == 1:
            same(greedy(model, src, lengths, limits),
                 greedy_oracle(model, src, lengths, limits))
            return
        for f, r in zip(beam_search(model, src, lengths, limits, beam, 1.0, 2),
                        beam_oracle(model, src, lengths, limits, beam, 1.0, 2),
                        strict=True):
            same(f, r)


@pytest.mark.parametrize(("rnn", "attention", "feeding"), ARCHITECTURES)
@pytest.mark.parametrize("seed", range(4))
def test_greedy_returns_what_the_oracle_returns(rnn, attention, feeding, seed):
    model = random_translator(seed, rnn, attention, feeding)
    src, lengths = random_sources(seed, 23)
    for ratio in (0.5, 2.0):
        limits = (lengths.double() * ratio + 1).long()
        with torch.no_grad():
            same(greedy(model, src, lengths, limits, with_attention=True),
                 greedy_oracle(model, src, lengths, limits, with_attention=True))


CASES = [(seed, *arch, beam, alpha, n_best, greedy_first)
         for seed, (arch, (beam, alpha, n_best), greedy_first) in enumerate(itertools.product(
             ARCHITECTURES, [(2, 1.0, 1), (3, 0.0, 2), (5, 0.6, 3), (4, 2.0, 1), (12, 1.0, 4)],
             (True, False)))]


@pytest.mark.parametrize(("seed", "rnn", "attention", "feeding", "beam", "alpha", "n_best",
                          "greedy_first"), CASES)
def test_beam_search_returns_what_the_oracle_returns(
        seed, rnn, attention, feeding, beam, alpha, n_best, greedy_first):
    model = random_translator(seed, rnn, attention, feeding, tgt_vocab=7 + seed % 5)
    src, lengths = random_sources(seed, 9)
    limits = (lengths.double() * 1.5 + 2).long()
    with torch.no_grad():
        fast = beam_search(model, src, lengths, limits, beam, alpha, n_best,
                           with_attention=seed % 2 == 0, include_greedy=greedy_first)
        plain = beam_oracle(model, src, lengths, limits, beam, alpha, n_best,
                                      with_attention=seed % 2 == 0,
                                      include_greedy=greedy_first)
    for f, r in zip(fast, plain, strict=True):
        same(f, r)


@pytest.mark.parametrize("greedy_rows", [1, 4, 1000])
def test_batches_finish_their_greedy_paths_together_with_the_same_results(greedy_rows,
                                                                          monkeypatch):
    """`beam_search_batches` (as `Translation.translate` calls it): batches of different
    source widths, their greedy paths that left the beam finished together (every batch, a
    few, or all at the end), give each batch what the oracle gives it."""
    monkeypatch.setattr(search, "_GREEDY_ROWS", greedy_rows)
    model = random_translator(20, tgt_vocab=9)
    batches = []
    for seed, (size, width) in enumerate([(9, 3), (8, 7), (10, 5), (7, 9)]):
        src, lengths = random_sources(100 + seed, size, max_len=width)
        batches.append((src, lengths, (lengths.double() * 2 + 3).long()))
    with torch.no_grad():
        steps = translator_steps(model)
        left = [len(search._search(steps, *(np.asarray(x) for x in batch), 2, 1.0, 1, False,
                                   True).left) for batch in batches]
        assert min(left) > 0  # greedy paths left every beam (else this tests nothing)
        found = search.beam_search_batches(model, batches, 2, 1.0, 1, with_attention=True)
        for batch, hyps in zip(batches, found, strict=True):
            reference = beam_oracle(model, *batch, 2, 1.0, 1, with_attention=True)
            for f, r in zip(hyps, reference, strict=True):
                same(f, r)


def test_a_beam_wider_than_the_vocabulary_returns_what_the_oracle_returns():
    model = random_translator(7, tgt_vocab=5)
    src, lengths = random_sources(7, 3, max_len=3)
    limits = lengths + 1
    with torch.no_grad():
        for f, r in zip(beam_search(model, src, lengths, limits, 40, 1.0, 6),
                        beam_oracle(model, src, lengths, limits, 40, 1.0, 6)):
            same(f, r)
