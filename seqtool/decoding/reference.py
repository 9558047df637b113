"""The plain searches that `search.greedy` and `search.beam_search` are checked against
(tests/test_search_fast.py): every step recomputes and reorders the whole memory, one row per
hypothesis. `bench_translate.py` times them side by side ("before")."""

from __future__ import annotations

import torch

from seqtool.decoding import search
from seqtool.decoding.search import Hypothesis, _select_memory, length_penalty
from seqtool.nn.translator import Translator
from seqtool.text.tokenizer import END, PAD, START


def greedy_reference(
    model: Translator, src: torch.Tensor, src_lengths: torch.Tensor, max_lengths: torch.Tensor,
    with_attention: bool = False,
) -> list[Hypothesis]:
    """The most likely token at every step, for every sentence of the batch at once."""
    memory = model.encode(src, src_lengths)
    batch = src.size(0)
    prev = torch.full((batch,), START, dtype=torch.long, device=src.device)
    done = torch.zeros(batch, dtype=torch.bool, device=src.device)
    tokens, scores, attention = [], torch.zeros(batch, device=src.device), []
    for t in range(int(max_lengths.max())):
        logp, memory, weights = model.decode_step(memory, prev)
        best_logp, prev = logp.max(dim=-1)
        prev = prev.masked_fill(done, PAD)
        scores += best_logp.masked_fill(done, 0.0)
        tokens.append(prev)
        if with_attention:
            attention.append(weights)
        done |= (prev == END) | (t + 1 >= max_lengths.to(src.device))
        if bool(done.all()):
            break
    token_rows = torch.stack(tokens, 1).tolist()
    att = torch.stack(attention, 1) if with_attention else None
    limits = [int(x) for x in max_lengths.tolist()]
    out = []
    for b, row in enumerate(token_rows):
        # Without <end> a row ran to its limit (its tokens may include <pad> itself).
        length = row.index(END) if END in row else min(limits[b], len(row))
        a = att[b, :length, : int(src_lengths[b])].tolist() if att is not None else None
        out.append(Hypothesis(row[:length], float(scores[b]), a))
    return out



def beam_search_reference(
    model: Translator, src: torch.Tensor, src_lengths: torch.Tensor, max_lengths: torch.Tensor,
    beam: int = 5, alpha: float = 1.0, n_best: int = 1, with_attention: bool = False,
    include_greedy: bool = True,
) -> list[list[Hypothesis]]:
    """The plain batched beam search (the reference for `search.beam_search`); returns the
    `n_best` best finished hypotheses of every sentence, best first, scored by
    log-probability / length_penalty.

    Each step scores beam * vocabulary continuations per sentence and keeps the best 2 * beam:
    those that end (<end>, or the sentence's length limit) among the best `beam` are set aside
    with their length-normalised score, the best `beam` others stay alive. A sentence stays open
    while a live hypothesis could still finish among its `n_best` (`may_improve`), so stopping
    early returns exactly what searching on to the length limit would. Closed sentences leave
    the batch, so the remaining steps cost only what is still being searched.

    Greedy's translation starts out among the finished ones: a beam prunes, and greedy's path
    can leave it (16 of the 987 Bible test sentences), so without it beam 5 could return a
    translation that scores below beam 1's. It costs one greedy pass and lets sentences close
    sooner.
    """
    device = src.device
    k = beam
    batch = src.size(0)
    memory = _select_memory(model.encode(src, src_lengths),
                            torch.arange(batch, device=device).repeat_interleave(k))
    alive = torch.full((batch, k), float("-inf"), device=device)
    alive[:, 0] = 0.0
    prev = torch.full((batch * k,), START, dtype=torch.long, device=device)
    history = torch.zeros(batch * k, 0, dtype=torch.long, device=device)
    att_history: torch.Tensor | None = None
    limits = [int(x) for x in max_lengths.tolist()]
    src_len = [int(x) for x in src_lengths.tolist()]
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    if include_greedy:
        found = greedy_reference(model, src, src_lengths, max_lengths, with_attention)
        for b, (h, limit) in enumerate(zip(found, limits)):
            scored = len(h.tokens) + (len(h.tokens) < limit)  # <end> is scored when it came
            finished[b].append(Hypothesis(h.tokens, h.score / length_penalty(scored, alpha),
                                          h.attention))
    active = list(range(batch))  # original sentence index of each row group
    at_limit_all = torch.as_tensor(limits, device=device)
    active_rows = torch.arange(batch, device=device)
    t = 0
    while active:
        logp, memory, weights = model.decode_step(memory, prev)
        vocab = logp.size(-1)
        n = len(active)
        if with_attention:
            w = weights.unsqueeze(1)
            att_history = w if att_history is None else torch.cat([att_history, w], 1)
        candidates = (alive.view(-1, 1) + logp).view(n, k * vocab)
        top_scores, top_index = candidates.topk(2 * k, dim=1)
        top_beam, top_token = top_index // vocab, top_index % vocab
        at_limit = at_limit_all[active_rows] <= t + 1
        ends = (top_token == END) | at_limit[:, None]
        end_rows = (ends[:, :k] & torch.isfinite(top_scores[:, :k])).nonzero().tolist()
        for i, j in end_rows:
            b = active[i]
            r = i * k + int(top_beam[i, j])
            tokens = history[r].tolist()
            if int(top_token[i, j]) != END:
                tokens.append(int(top_token[i, j]))
            attention = None
            if att_history is not None:
                attention = att_history[r, : len(tokens), : src_len[b]].tolist()
            if include_greedy and tokens == finished[b][0].tokens:
                continue  # greedy's translation, already there
            score = float(top_scores[i, j]) / length_penalty(t + 1, alpha)
            finished[b].append(Hypothesis(tokens, score, attention))
        # The best k candidates that did not end stay alive (best first).
        masked = top_scores.masked_fill(ends, float("-inf"))
        alive, keep = masked.topk(k, dim=1)
        t += 1
        best_live = alive[:, 0].tolist()
        still = [i for i, b in enumerate(active)
                 if search.may_improve(best_live[i], [h.score for h in finished[b]], t,
                                       limits[b], alpha, n_best)]
        if not still:
            break
        origin = (torch.arange(n, device=device)[:, None] * k + top_beam.gather(1, keep))
        prev = top_token.gather(1, keep)
        if len(still) < n:
            rows = torch.tensor(still, device=device)
            alive, origin, prev = alive[rows], origin[rows], prev[rows]
            active_rows = active_rows[rows]
            active = [active[i] for i in still]
        origin, prev = origin.view(-1), prev.view(-1)
        memory = _select_memory(memory, origin)
        history = torch.cat([history[origin], prev[:, None]], dim=1)
        if att_history is not None:
            att_history = att_history[origin]
    results = []
    for b in range(batch):
        hyps = sorted(finished[b], key=lambda h: h.score, reverse=True)[:n_best]
        results.append(hyps or [Hypothesis([], float("-inf"))])
    return results
