"""Unit tests of decoding with small random translators (no training), like Joey NMT's
test/unit/test_search.py. Every expected value is computed on the same machine by another
route (a search that never stops early, an exhaustive enumeration, teacher-forced scoring),
so no test depends on how a particular CPU rounds."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from seqtool.config import TranslatorConfig
from seqtool.decoding import search
from seqtool.decoding.search import (
    beam_search,
    best_reachable,
    greedy,
    length_penalty,
    may_improve,
    normalised_score,
)
from seqtool.nn.translator import Translator
from seqtool.text.tokenizer import END, PAD

SRC_VOCAB = 11
TOL = 1e-4  # log-probs are float32: sums of the same terms in another order differ this much


def random_translator(seed: int, tgt_vocab: int = 9, rnn: str = "gru",
                      attention: str = "bahdanau") -> Translator:
    """A tiny float64 translator with peaked, seed-dependent output distributions."""
    torch.manual_seed(seed)
    config = TranslatorConfig(src_vocab_size=SRC_VOCAB, tgt_vocab_size=tgt_vocab, embed_dim=6,
                              hidden_dim=6, attention_dim=5, dropout=0.0, rnn=rnn,
                              attention=attention)
    model = Translator(config).double().eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.5)  # wider than the training init: varied, peaked choices
    return model


def random_sources(seed: int, batch: int, max_len: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, max_len + 1, (batch,), generator=g)
    src = torch.randint(4, SRC_VOCAB, (batch, int(lengths.max())), generator=g)
    src[torch.arange(src.size(1))[None, :] >= lengths[:, None]] = PAD
    return src, lengths


def limits_for(lengths: torch.Tensor, ratio: float = 1.0) -> torch.Tensor:
    return (lengths.double() * ratio + 5).long()  # as Translation.translate computes them


def single(src: torch.Tensor, lengths: torch.Tensor, b: int):
    n = int(lengths[b])
    return src[b : b + 1, :n], lengths[b : b + 1]


pytestmark = pytest.mark.usefixtures("one_thread")


CASES = [(seed, beam, alpha, n_best)
         for seed, (beam, alpha, n_best) in enumerate(itertools.product(
             (2, 3, 5), (0.0, 0.6, 1.0, 2.0), (1, 2)))
         if n_best <= beam]


# ------------------------------------------------------------------ the stopping rule


@given(log_prob=st.floats(-50, 0), length=st.integers(0, 30), extra=st.integers(1, 30),
       added=st.floats(-20, 0), alpha=st.floats(-1, 3))
def test_best_reachable_bounds_every_completion(log_prob, length, extra, added, alpha):
    """No completion of a live hypothesis (more tokens, each of log-prob <= 0, within the
    limit) finishes above the bound, and a completion of probability 1 reaches it."""
    limit = length + extra + 3
    bound = best_reachable(log_prob, length, limit, alpha)
    for final in range(length + 1, limit + 1):
        assert (log_prob + added) / length_penalty(final, alpha) <= bound + 1e-12
    assert any(math.isclose(log_prob / length_penalty(final, alpha), bound, abs_tol=1e-12)
               for final in range(length + 1, limit + 1))


@given(best_live=st.floats(-50, 0), finished=st.lists(st.floats(-20, 0), max_size=6),
       length=st.integers(0, 20), extra=st.integers(1, 20), alpha=st.floats(0, 3),
       n_best=st.integers(1, 4))
def test_a_sentence_closes_only_when_no_live_hypothesis_can_enter_the_n_best(
        best_live, finished, length, extra, alpha, n_best):
    limit = length + extra
    open_ = may_improve(best_live, finished, length, limit, alpha, n_best)
    if len(finished) < n_best:
        assert open_
        return
    threshold = sorted(finished, reverse=True)[n_best - 1]
    can_beat = any(best_live / length_penalty(final, alpha) > threshold
                   for final in range(length + 1, limit + 1))
    assert open_ == can_beat


@pytest.mark.parametrize(("seed", "beam", "alpha", "n_best"), CASES)
def test_stopping_early_returns_what_searching_to_the_limit_returns(
        monkeypatch, seed, beam, alpha, n_best):
    """The real stopping rule against a search that keeps every sentence open until its length
    limit: the n-best lists must be identical. One sentence per call, so both searches do the
    very same arithmetic up to the point where the first one stops."""
    model = random_translator(seed)
    src, lengths = random_sources(seed, 4)
    with torch.no_grad():
        found = [beam_search(model, *single(src, lengths, b), limits_for(lengths[b : b + 1]),
                             beam, alpha, n_best)[0] for b in range(4)]
        monkeypatch.setattr(search, "may_improve",
                            lambda best_live, finished, length, limit, *_: length < limit)
        full = [beam_search(model, *single(src, lengths, b), limits_for(lengths[b : b + 1]),
                            beam, alpha, n_best)[0] for b in range(4)]
    for early, late in zip(found, full):
        assert [h.tokens for h in early] == [h.tokens for h in late]
        assert [h.score for h in early] == [h.score for h in late]


def test_the_rule_keeps_sentences_open_that_the_old_rule_closed(monkeypatch):
    """Guard against a relapse: closing once `beam` hypotheses have finished (the old rule)
    loses to searching on for some random models (with a strong length penalty). Both runs
    follow the same beams, so the old result can never be the better one."""
    def old_rule(best_live, finished, length, limit, alpha, n_best):
        return length < limit and len(finished) < 3

    differ = 0
    for seed in range(40):
        model = random_translator(seed)
        src, lengths = random_sources(seed, 1)
        limit = limits_for(lengths, 2.0)
        with torch.no_grad():
            exact = beam_search(model, src, lengths, limit, 3, 2.0, include_greedy=False)[0][0]
            with monkeypatch.context() as m:
                m.setattr(search, "may_improve", old_rule)
                old = beam_search(model, src, lengths, limit, 3, 2.0,
                                  include_greedy=False)[0][0]
        assert exact.score >= old.score
        differ += exact.score > old.score
    assert differ > 0


# ------------------------------------------------------------------ exhaustive search


def all_translations(vocab: int, limit: int) -> list[list[int]]:
    """Every output a search can produce: tokens then <end> within the limit, or `limit`
    tokens without <end>."""
    words = [t for t in range(vocab) if t != END]
    out = [list(p) for n in range(limit) for p in itertools.product(words, repeat=n)]
    return out + [list(p) for p in itertools.product(words, repeat=limit)]


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("seed", range(4))
def test_a_beam_wide_enough_finds_the_exhaustive_best(seed, alpha):
    """With a beam that prunes nothing (vocabulary 5, limit 4), beam search returns the best
    and the n-best of all translations, scored by teacher forcing under the documented
    objective: log-probability of tokens + <end> over ((5 + length) / 6) ** alpha."""
    vocab, limit = 5, 4
    model = random_translator(seed, tgt_vocab=vocab)
    src, lengths = random_sources(seed, 1)
    limits = torch.tensor([limit])
    candidates = all_translations(vocab, limit)
    with torch.no_grad():
        scores = normalised_score(model, src.expand(len(candidates), -1),
                                  lengths.expand(len(candidates)),
                                  limits.expand(len(candidates)), candidates, alpha)
        hyps = beam_search(model, src, lengths, limits, beam=(vocab - 1) ** (limit - 1) * vocab,
                           alpha=alpha, n_best=4)[0]
    best = sorted(scores, reverse=True)[:4]
    assert [h.score for h in hyps] == pytest.approx(best, abs=TOL)
    rescored = dict(zip(map(tuple, candidates), scores))
    for h in hyps:
        assert rescored[tuple(h.tokens)] == pytest.approx(h.score, abs=TOL)


# ------------------------------------------------------------------ documented behaviour


@pytest.mark.parametrize("seed", range(6))
def test_beam_1_without_length_penalty_is_greedy(seed):
    """With alpha = 0 a finished hypothesis can only be beaten by a live one of higher
    probability, which greedy would have chosen: beam 1 is greedy."""
    model = random_translator(seed)
    src, lengths = random_sources(seed, 5)
    limits = limits_for(lengths)
    with torch.no_grad():
        g = greedy(model, src, lengths, limits)
        b = beam_search(model, src, lengths, limits, beam=1, alpha=0.0)
    assert [h.tokens for h in g] == [hs[0].tokens for hs in b]
    assert [h.score for h in g] == pytest.approx([hs[0].score for hs in b], abs=TOL)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("beam", [1, 3, 5])
def test_beam_never_scores_below_greedy(seed, beam):
    """Greedy's translation is among beam search's candidates, so however the beam prunes,
    its result scores at least greedy's under beam's own objective."""
    model = random_translator(seed)
    src, lengths = random_sources(seed, 5)
    limits = limits_for(lengths)
    with torch.no_grad():
        g = greedy(model, src, lengths, limits)
        b = beam_search(model, src, lengths, limits, beam=beam, alpha=1.0)
        greedy_scores = normalised_score(model, src, lengths, limits, [h.tokens for h in g])
    for hs, gs in zip(b, greedy_scores):
        assert hs[0].score >= gs - TOL


@pytest.mark.parametrize(("seed", "beam", "alpha", "n_best"),
                         [(s, 5, a, 5) for s, a in enumerate((0.0, 0.6, 1.0, 2.0))])
def test_n_best_are_distinct_sorted_and_scored_as_documented(seed, beam, alpha, n_best):
    model = random_translator(seed)
    src, lengths = random_sources(seed, 4)
    limits = limits_for(lengths)
    with torch.no_grad():
        results = beam_search(model, src, lengths, limits, beam, alpha, n_best)
    for b, hyps in enumerate(results):
        assert len(hyps) == n_best
        assert len({tuple(h.tokens) for h in hyps}) == n_best
        scores = [h.score for h in hyps]
        assert scores == sorted(scores, reverse=True)
        with torch.no_grad():
            rescored = normalised_score(model, src[b : b + 1].expand(n_best, -1),
                                        lengths[b : b + 1].expand(n_best),
                                        limits[b : b + 1].expand(n_best),
                                        [h.tokens for h in hyps], alpha)
        assert rescored == pytest.approx(scores, abs=TOL)


def test_length_penalty_formula():
    assert length_penalty(7, 0.0) == 1.0
    assert length_penalty(1, 1.0) == 1.0
    assert length_penalty(7, 1.0) == pytest.approx(2.0)
    assert length_penalty(19, 0.5) == pytest.approx(2.0)


def test_a_larger_length_penalty_never_shortens_the_best_translation():
    """The best translation minimises log(-log p) - alpha * log((5 + length) / 6), a line in
    alpha per translation, so its length cannot shrink as alpha grows; checked with the beam
    that prunes nothing, over random models."""
    vocab, limit = 4, 5
    grew = 0
    for seed in range(4):
        model = random_translator(seed, tgt_vocab=vocab)
        src, lengths = random_sources(seed, 1)
        with torch.no_grad():
            best_lengths = [len(beam_search(model, src, lengths, torch.tensor([limit]),
                                            (vocab - 1) ** (limit - 1) * vocab, alpha)[0][0].tokens)
                            for alpha in (0.0, 0.5, 1.0, 2.0, 4.0)]
        assert best_lengths == sorted(best_lengths)
        grew += best_lengths[-1] > best_lengths[0]
    assert grew > 0


@pytest.mark.parametrize("ratio", [0.0, 1.0, 2.5])
def test_no_translation_exceeds_the_length_limit(ratio):
    """A model that never says <end> runs to the limit, ratio * source length + 5, and there
    greedy and beam stop."""
    model = random_translator(0)
    with torch.no_grad():
        model.decoder.output.bias[END] = -1e4
    src, lengths = random_sources(1, 4)
    limits = limits_for(lengths, ratio)
    with torch.no_grad():
        g = greedy(model, src, lengths, limits)
        b = beam_search(model, src, lengths, limits, 3, 1.0, n_best=3)
    for limit, gh, bh in zip(limits.tolist(), g, b):
        assert len(gh.tokens) == limit
        assert [len(h.tokens) for h in bh] == [limit] * 3


@pytest.mark.parametrize(("rnn", "attention"),
                         [("gru", "bahdanau"), ("lstm", "luong-general"), ("gru", "luong-dot")])
def test_a_sentence_alone_equals_the_same_sentence_in_a_padded_batch(rnn, attention):
    model = random_translator(3, rnn=rnn, attention=attention)
    src, lengths = random_sources(5, 6, max_len=8)
    limits = limits_for(lengths)
    with torch.no_grad():
        batch_greedy = greedy(model, src, lengths, limits, with_attention=True)
        batch_beam = beam_search(model, src, lengths, limits, 4, 1.0, 2, with_attention=True)
        for b in range(src.size(0)):
            s, n = single(src, lengths, b)
            alone_greedy = greedy(model, s, n, limits[b : b + 1], with_attention=True)[0]
            alone_beam = beam_search(model, s, n, limits[b : b + 1], 4, 1.0, 2,
                                     with_attention=True)[0]
            assert alone_greedy.tokens == batch_greedy[b].tokens
            assert alone_greedy.score == pytest.approx(batch_greedy[b].score, abs=TOL)
            assert torch.tensor(alone_greedy.attention).shape == (len(alone_greedy.tokens),
                                                                  int(n))
            assert [h.tokens for h in alone_beam] == [h.tokens for h in batch_beam[b]]
            assert [h.score for h in alone_beam] == pytest.approx(
                [h.score for h in batch_beam[b]], abs=TOL)
            torch.testing.assert_close(torch.tensor(alone_beam[0].attention),
                                       torch.tensor(batch_beam[b][0].attention))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_search_runs_on_the_gpu_and_agrees_with_the_cpu():
    model = random_translator(2)
    src, lengths = random_sources(2, 5)
    limits = limits_for(lengths)
    with torch.no_grad():
        cpu = beam_search(model, src, lengths, limits, 3, 1.0, 2)
        gpu_model = model.cuda()
        gpu = beam_search(gpu_model, src.cuda(), lengths.cuda(), limits.cuda(), 3, 1.0, 2)
        g = greedy(gpu_model, src.cuda(), lengths.cuda(), limits.cuda())
        normalised_score(gpu_model, src.cuda(), lengths.cuda(), limits.cuda(),
                         [h.tokens for h in g])
    for a, b in zip(cpu, gpu):
        assert [h.score for h in a] == pytest.approx([h.score for h in b], abs=1e-4)
