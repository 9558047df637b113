"""Decoding for the translator: greedy and batched beam search (sampling for the generator is
`sampling.py`).

All searches work on a whole batch of sentences at once; beam search keeps `beam` hypotheses
per sentence in one tensor of batch * beam rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch

from seqtool.nn import fast
from seqtool.nn.translator import SOURCE_KEYS, Translator, select_state
from seqtool.text.tokenizer import END, PAD, START


@dataclass
class Hypothesis:
    tokens: list[int]
    score: float  # log-probability, divided by the length penalty in beam search
    attention: list[list[float]] | None = field(default=None, repr=False)  # [target][source]


def _select_memory(memory: dict, index: torch.Tensor) -> dict:
    return {k: select_state(v, index) for k, v in memory.items()}


def greedy(
    model: Translator, src: torch.Tensor, src_lengths: torch.Tensor, max_lengths: torch.Tensor,
    with_attention: bool = False, memory: dict | None = None,
) -> list[Hypothesis]:
    """The most likely token at every step, for every sentence of the batch at once.

    Finished sentences leave the batch (a few at a time, `_COMPACT`), so the remaining steps
    cost only the sentences still being decoded; `memory` is `model.encode`'s, when the caller
    has it already. Returns what `reference.greedy_reference` returns (tests/test_search_fast.py).
    """
    if memory is None:
        memory = model.encode(src, src_lengths)
    batch = src.size(0)
    prev = torch.full((batch,), START, dtype=torch.long, device=src.device)
    found = _greedy_rows(fast.decode_step(model), memory, prev,
                         torch.zeros(batch, device=src.device),
                         [int(x) for x in max_lengths.tolist()], with_attention)
    src_len = [int(x) for x in src_lengths.tolist()]
    return [Hypothesis(tokens, score, None if att is None else att[:, :n].tolist())
            for (tokens, score, att), n in zip(found, src_len)]


def _greedy_rows(
    step, memory: dict, prev: torch.Tensor, scores: torch.Tensor,
    limits: list[int], with_attention: bool, floors: tuple | None = None,
) -> list[tuple[list[int], float, torch.Tensor | None] | None]:
    """Greedy decoding of each row of `memory` (one row per sentence) from the token `prev`
    with `step` (`Translator.decode_step` or its fast version),
    with log-probability `scores` [rows] (float32) so far and at most `limits` more tokens:
    per row the tokens (without <end>), the final log-probability, and the attention
    [tokens, S] when asked.

    floors = (floor, scored, alpha) [rows each; floor float64, scored int]: a row is dropped
    (None) once its translation could no longer score above `floor` (`best_reachable`, with
    `scored` tokens scored before `prev` and its full length limit), since it could then not
    enter its sentence's n-best list."""
    device = prev.device
    batch = prev.size(0)
    done = torch.zeros(batch, dtype=torch.bool, device=device)
    dropped = torch.zeros(batch, dtype=torch.bool, device=device)
    row_limits = torch.as_tensor(limits, device=device)
    history = torch.zeros(batch, 0, dtype=torch.long, device=device)
    att_history: torch.Tensor | None = None
    sentence = list(range(batch))  # the original row of each row
    out: list = [None] * batch
    t = 0
    while sentence:
        logp, memory, weights = step(memory, prev)
        best_logp, prev = (x.squeeze(1) for x in fast.top_tokens(logp, 1))
        prev = prev.masked_fill(done, PAD)
        scores += best_logp.masked_fill(done, 0.0)
        history = torch.cat([history, prev[:, None]], 1)
        if with_attention:
            w = weights.unsqueeze(1)
            att_history = w if att_history is None else torch.cat([att_history, w], 1)
        t += 1
        ending = (prev == END) | (row_limits <= t)
        if floors is not None:
            floor, scored, alpha = floors
            dropped |= ~done & ~ending & (
                _reachable(scores.double(), scored + t, scored + row_limits, alpha) <= floor)
        done |= ending | dropped
        n_done = int(done.sum())
        if n_done == len(sentence) or n_done >= max(1, len(sentence) // _COMPACT):
            ended = done.nonzero().squeeze(1)
            gone = dropped[ended].tolist()
            for i, row, drop in zip(ended.tolist(), history[ended].tolist(), gone):
                b = sentence[i]
                if drop:
                    continue  # out[b] stays None
                # Without <end> a row ran to its limit.
                length = row.index(END) if END in row else min(limits[b], len(row))
                a = att_history[i, :length] if att_history is not None else None
                out[b] = (row[:length], float(scores[i]), a)
            if n_done == len(sentence):
                break
            keep = (~done).nonzero().squeeze(1)
            sentence = [sentence[i] for i in keep.tolist()]
            memory = _select_memory(memory, keep)
            prev, scores, row_limits = prev[keep], scores[keep], row_limits[keep]
            history, done, dropped = history[keep], done[keep], dropped[keep]
            if floors is not None:
                floors = (floors[0][keep], floors[1][keep], floors[2])
            if att_history is not None:
                att_history = att_history[keep]
    return out


_COMPACT = 8  # greedy drops finished rows once they are 1/8 of the batch (or all of it)


def length_penalty(length: int, alpha: float) -> float:
    """Wu et al. (2016): ((5 + length) / 6) ** alpha; alpha = 0 ranks by plain log-probability.

    `length` counts the scored tokens: the translation's tokens plus <end> when it has one
    (a translation cut at the length limit has no <end>).
    """
    return ((5.0 + length) / 6.0) ** alpha if alpha else 1.0


def best_reachable(log_prob: float, length: int, limit: int, alpha: float) -> float:
    """The best length-normalised score a live hypothesis of `length` scored tokens and
    log-probability `log_prob` can still finish with, given the sentence's length `limit`.

    Adding tokens never raises the log-probability (log-probs <= 0), so the best case adds
    tokens of probability 1; the length penalty then divides a non-positive number, which is
    largest under the largest penalty reachable (at the limit when alpha > 0, at the shortest
    finish when alpha < 0). The penalty is monotonic in the length, so one of the two ends is it.
    """
    if length >= limit:
        return float("-inf")  # nothing can follow: the hypothesis has already ended
    return max(log_prob / length_penalty(length + 1, alpha),
               log_prob / length_penalty(limit, alpha))


def _reachable(log_prob: torch.Tensor, length: torch.Tensor, limit: torch.Tensor,
               alpha: float) -> torch.Tensor:
    """`best_reachable` for tensors of rows (float64, as Python computes it); every row has
    `length` < `limit`."""
    def penalty(n):
        return ((5.0 + n.double()) / 6.0) ** alpha if alpha else torch.ones_like(log_prob)
    return torch.maximum(log_prob / penalty(length + 1), log_prob / penalty(limit))


def may_improve(
    best_live: float, finished: list[float], length: int, limit: int, alpha: float, n_best: int
) -> bool:
    """Whether a sentence must stay open: fewer than `n_best` hypotheses have finished, or its
    best live hypothesis (log-probability `best_live` over `length` tokens) could still finish
    above the `n_best`-th best finished score. If not, no descendant of any live hypothesis
    can enter the n-best list, so closing the sentence changes no result."""
    if len(finished) < n_best:
        return length < limit
    threshold = sorted(finished, reverse=True)[n_best - 1]
    return best_reachable(best_live, length, limit, alpha) > threshold


def beam_search(
    model: Translator, src: torch.Tensor, src_lengths: torch.Tensor, max_lengths: torch.Tensor,
    beam: int = 5, alpha: float = 1.0, n_best: int = 1, with_attention: bool = False,
    include_greedy: bool = True,
) -> list[list[Hypothesis]]:
    """Batched beam search; returns the `n_best` best finished hypotheses of every sentence,
    best first, scored by log-probability / length_penalty.

    Each step scores beam * vocabulary continuations per sentence and keeps the best 2 * beam:
    those that end (<end>, or the sentence's length limit) among the best `beam` are set aside
    with their length-normalised score, the best `beam` others stay alive. A sentence stays open
    while a live hypothesis could still finish among its `n_best` (`may_improve`), so stopping
    early returns exactly what searching on to the length limit would. Closed sentences leave
    the batch, so the remaining steps cost only what is still being searched.

    Greedy's translation is among the finished ones: a beam prunes, and greedy's path can
    leave it (16 of the 987 Bible test sentences), so without it beam 5 could return a
    translation that scores below beam 1's. Greedy's path starts as the beam's best
    hypothesis, so it is followed inside the beam (its next token is the best of its row);
    only where it leaves the beam, or its sentence closes first, is the rest decoded greedily
    on its own, after the search (`_greedy_rows`), and only while it could still score above
    the sentence's n_best-th finished hypothesis (else it could not be returned). A sentence
    then closes no earlier than if greedy's translation had been known from the start, and
    closing later changes nothing. Each step is `fast.decode_step(model)`.

    The source side of the memory stays one copy per sentence (`Translator.decode_step` with
    group = beam), and each step's best 2 * beam come from each hypothesis's own best 2 * beam
    tokens. It returns what `reference.beam_search_reference` returns, which copies the
    memory for every hypothesis, reorders it at every step and decodes greedily first
    (tests/test_search_fast.py).
    """
    return beam_search_batches(model, [(src, src_lengths, max_lengths)], beam, alpha, n_best,
                               with_attention, include_greedy)[0]


def beam_search_batches(
    model: Translator, batches: Iterable[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    beam: int = 5, alpha: float = 1.0, n_best: int = 1, with_attention: bool = False,
    include_greedy: bool = True,
) -> list[list[list[Hypothesis]]]:
    """`beam_search` of each batch (src, src_lengths, max_lengths), in order; the same
    results. The greedy paths that left the beams of several batches are finished together,
    about `_GREEDY_ROWS` at a time: on their own, a batch's few dozen made small, slow steps
    (a tenth of the test set's time)."""
    step = fast.decode_step(model)
    results: list[list[list[Hypothesis]]] = []
    pending: list[_Searched] = []
    for src, src_lengths, max_lengths in batches:
        pending.append(_search(model, step, src, src_lengths, max_lengths, beam, alpha, n_best,
                               with_attention, include_greedy))
        if sum(len(searched.left) for searched in pending) >= _GREEDY_ROWS:
            results += _finish(step, pending)
            pending = []
    return results + _finish(step, pending)


_GREEDY_ROWS = 256


@dataclass
class _Searched:
    """A batch after its beam search, before the greedy paths that left its beam are
    finished (`_finish`)."""
    finished: list[list[Hypothesis]]  # per sentence
    left: list[tuple]  # (sentence, decoder state, next token, log-prob, tokens, attention)
    source: dict  # the source memory (SOURCE_KEYS) of each left path's sentence
    limits: list[int]
    src_len: list[int]
    alpha: float
    n_best: int
    with_attention: bool


def _search(model, step, src, src_lengths, max_lengths, beam, alpha, n_best, with_attention,
            include_greedy) -> _Searched:
    """`beam_search` but for its greedy paths that left the beam (`_Searched.left`)."""
    device = src.device
    k = beam
    batch = src.size(0)
    encoded = model.encode(src, src_lengths)
    limits = [int(x) for x in max_lengths.tolist()]
    src_len = [int(x) for x in src_lengths.tolist()]
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    greedy_tokens: list[list[int] | None] = [None] * batch
    following = dict.fromkeys(range(batch), 0) if include_greedy else {}  # sentence -> row
    left: list[tuple] = []  # greedy paths that left the beam, to finish on their own
    memory = encoded
    alive = torch.full((batch, k), float("-inf"), device=device)
    alive[:, 0] = 0.0
    prev = torch.full((batch,), START, dtype=torch.long, device=device)
    history = torch.zeros(batch * k, 0, dtype=torch.long, device=device)
    att_history: torch.Tensor | None = None
    active = list(range(batch))  # original sentence index of each row group
    at_limit_all = torch.as_tensor(limits, device=device)
    active_rows = torch.arange(batch, device=device)
    t = 0
    while active:
        if t == 0:  # all k hypotheses are <start>: one row per sentence, then k copies of it
            logp, memory, weights = step(memory, prev)
            copies = torch.arange(batch, device=device).repeat_interleave(k)
            memory = {key: v if key in SOURCE_KEYS else select_state(v, copies)
                      for key, v in memory.items()}
            logp, weights = logp.index_select(0, copies), weights.index_select(0, copies)
        else:
            logp, memory, weights = step(memory, prev, k)
        vocab = logp.size(-1)
        n = len(active)
        if with_attention:
            w = weights.unsqueeze(1)
            att_history = w if att_history is None else torch.cat([att_history, w], 1)
        # The best 2k of all k * vocab continuations are among the best 2k of each hypothesis.
        m = min(2 * k, vocab)
        row_scores, row_tokens = fast.top_tokens(logp, m)
        candidates = (alive.view(-1, 1) + row_scores).view(n, k * m)
        top_scores, top_index = candidates.topk(2 * k, dim=1)
        top_beam, top_token = top_index // m, row_tokens.view(n, k * m).gather(1, top_index)
        greedy_step = _follow_greedy(following, active, k, t, limits, row_tokens, candidates,
                                     history, att_history, src_len, alpha, finished,
                                     greedy_tokens)
        at_limit = at_limit_all[active_rows] <= t + 1
        ends = (top_token == END) | at_limit[:, None]
        end_rows = (ends[:, :k] & torch.isfinite(top_scores[:, :k])).nonzero().tolist()
        for i, j in end_rows:
            b = active[i]
            r = i * k + int(top_beam[i, j])
            tokens = history[r].tolist()
            if int(top_token[i, j]) != END:
                tokens.append(int(top_token[i, j]))
            if tokens == greedy_tokens[b]:
                continue  # greedy's translation, already there
            attention = None
            if att_history is not None:
                attention = att_history[r, : len(tokens), : src_len[b]].tolist()
            score = float(top_scores[i, j]) / length_penalty(t + 1, alpha)
            finished[b].append(Hypothesis(tokens, score, attention))
        # The best k candidates that did not end stay alive (best first).
        masked = top_scores.masked_fill(ends, float("-inf"))
        alive, keep = masked.topk(k, dim=1)
        t += 1
        best_live = alive[:, 0].tolist()
        still = [i for i, b in enumerate(active)
                 if may_improve(best_live[i], [h.score for h in finished[b]], t, limits[b],
                                alpha, n_best)]
        if greedy_step:  # where greedy's next hypothesis is now, or it leaves the beam
            kept = top_index.gather(1, keep).tolist()
            open_now = set(still)
            for i, j, token, score in greedy_step:
                b = active[i]
                if i in open_now and j * m in kept[i]:
                    following[b] = kept[i].index(j * m)
                    continue
                del following[b]
                r = i * k + j
                state = _select_memory({key: v for key, v in memory.items()
                                        if key not in SOURCE_KEYS},
                                       torch.tensor([r], device=device))
                prefix_att = att_history[r] if att_history is not None else None
                left.append((b, state, token, score, history[r].tolist() + [token],
                             prefix_att))
        if not still:
            break
        origin = (torch.arange(n, device=device)[:, None] * k + top_beam.gather(1, keep))
        prev = top_token.gather(1, keep)
        source = {key: memory[key] for key in SOURCE_KEYS}
        if len(still) < n:
            rows = torch.tensor(still, device=device)
            alive, origin, prev = alive[rows], origin[rows], prev[rows]
            active_rows = active_rows[rows]
            active = [active[i] for i in still]
            source = _select_memory(source, rows)
        origin, prev = origin.view(-1), prev.view(-1)
        memory = {**_select_memory({key: v for key, v in memory.items()
                                    if key not in SOURCE_KEYS}, origin), **source}
        history = torch.cat([history[origin], prev[:, None]], dim=1)
        if att_history is not None:
            att_history = att_history[origin]
    sentences = torch.tensor([b for b, *_ in left], dtype=torch.long, device=device)
    source = {key: encoded[key].index_select(0, sentences) for key in SOURCE_KEYS}
    return _Searched(finished, left, source, limits, src_len, alpha, n_best, with_attention)


def _follow_greedy(following, active, k, t, limits, row_tokens, candidates, history,
                   att_history, src_len, alpha, finished, greedy_tokens) -> list[tuple]:
    """Greedy's next token in each sentence whose greedy path is still in the beam: where it
    ends (<end> or the limit), greedy's translation goes first among the finished ones;
    else (row index i, its beam row j, the token, its log-probability) for `beam_search` to
    find among the kept hypotheses."""
    if not following:
        return []
    groups = [(i, following[b]) for i, b in enumerate(active) if b in following]
    index = torch.tensor([i * k + j for i, j in groups], device=row_tokens.device)
    m = row_tokens.size(1)
    tokens = row_tokens[index, 0].tolist()
    scores = candidates.view(-1, m)[index, 0]  # float32, as greedy adds them up
    out = []
    for (i, j), token, score in zip(groups, tokens, scores, strict=True):
        b = active[i]
        if token != END and t + 1 < limits[b]:
            out.append((i, j, token, score))
            continue
        del following[b]
        r = i * k + j
        words = history[r].tolist() + ([token] if token != END else [])
        attention = None
        if att_history is not None:
            attention = att_history[r, : len(words), : src_len[b]].tolist()
        greedy_tokens[b] = words
        finished[b].insert(0, Hypothesis(words, float(score) / length_penalty(t + 1, alpha),
                                         attention))
    return out


def _finish(step, batches: list[_Searched]) -> list[list[list[Hypothesis]]]:
    """Decode greedily on their own, all together, the greedy paths that left the beams of
    `batches` (or whose sentence closed first), from where they left; put each translation
    first among its sentence's finished hypotheses; return each batch's n-best lists."""
    paths = [(searched, path) for searched in batches for path in searched.left]
    if paths:
        _finish_greedy(step, batches, paths)
    results = []
    for searched in batches:
        results.append([sorted(hyps, key=lambda h: h.score, reverse=True)[:searched.n_best]
                        or [Hypothesis([], float("-inf"))] for hyps in searched.finished])
    return results


def _finish_greedy(step, batches: list[_Searched], paths: list[tuple]) -> None:
    """`_finish` for the `paths` (searched batch, left path), whose source memories are
    padded to the longest source among them."""
    width = max(searched.source["mask"].size(1) for searched in batches if searched.left)
    memory = {}
    for key in SOURCE_KEYS:
        parts = [searched.source[key] for searched in batches if searched.left]
        memory[key] = torch.cat([_pad_source(part, width) for part in parts])
    states = [state for _, (_, state, *_) in paths]
    for key in states[0]:
        memory[key] = _cat_state([state[key] for state in states])
    device = memory["mask"].device
    prev = torch.tensor([token for _, (_, _, token, *_) in paths], device=device)
    scores = torch.stack([score for _, (_, _, _, score, *_) in paths])
    steps = [len(prefix) for _, (*_, prefix, _) in paths]
    # A greedy translation that cannot score above the n_best-th finished one is not
    # returned: stop decoding it as soon as that is sure.
    floor = [sorted((h.score for h in s.finished[b]), reverse=True)[s.n_best - 1]
             if len(s.finished[b]) >= s.n_best else float("-inf") for s, (b, *_) in paths]
    alpha = batches[0].alpha
    floors = (torch.tensor(floor, dtype=torch.float64, device=device),
              torch.tensor(steps, device=device), alpha)
    found = _greedy_rows(step, memory, prev, scores,
                         [s.limits[b] - n for (s, (b, *_)), n in zip(paths, steps)],
                         batches[0].with_attention, floors)
    for (s, (b, _, _, _, prefix, prefix_att)), result in zip(paths, found):
        if result is None:
            continue
        tokens, score, att = result
        words = prefix + tokens
        attention = None
        if s.with_attention:
            attention = torch.cat([prefix_att[: len(prefix)], att[:, : prefix_att.size(1)]]
                                  )[:, : s.src_len[b]].tolist()
        scored = len(words) + (len(words) < s.limits[b])
        s.finished[b] = [h for h in s.finished[b] if h.tokens != words]
        s.finished[b].insert(0, Hypothesis(words, score / length_penalty(scored, alpha),
                                           attention))


def _pad_source(part: torch.Tensor, width: int) -> torch.Tensor:
    """A source tensor [n, S, ...] (keys, values, mask) padded to `width` positions (zeros,
    False: masked, so attention gives them no weight)."""
    missing = width - part.size(1)
    if not missing:
        return part
    return torch.nn.functional.pad(part, (0, 0) * (part.dim() - 2) + (0, missing))


def _cat_state(parts: list):
    """Join states (tensors, or lists / tuples of them) along the batch dimension."""
    if isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return type(parts[0])(_cat_state([p[i] for p in parts]) for i in range(len(parts[0])))


@torch.no_grad()
def normalised_score(
    model: Translator, src: torch.Tensor, src_lengths: torch.Tensor, max_lengths: torch.Tensor,
    targets: list[list[int]], alpha: float = 1.0,
) -> list[float]:
    """Beam search's objective for given translations (e.g. greedy's): the log-probability of
    the tokens plus <end> (none for a translation cut at its length limit), divided by
    length_penalty of the scored tokens. Teacher-forced, one sentence per row of `src`."""
    limits = [int(x) for x in max_lengths.tolist()]
    scored = [list(t) + ([END] if len(t) < lim else []) for t, lim in zip(targets, limits)]
    steps = max(len(s) for s in scored)
    memory = model.encode(src, src_lengths)
    padded = torch.full((len(scored), steps), PAD, dtype=torch.long, device=src.device)
    for b, s in enumerate(scored):
        padded[b, : len(s)] = torch.as_tensor(s, device=src.device)
    lengths = torch.as_tensor([len(s) for s in scored], device=src.device)
    prev = torch.full((len(scored),), START, dtype=torch.long, device=src.device)
    total = torch.zeros(len(scored), dtype=torch.float64, device=src.device)
    for t in range(steps):
        logp, memory, _ = model.decode_step(memory, prev)
        prev = padded[:, t]
        step = logp.gather(1, prev[:, None]).squeeze(1).double()
        total += step.masked_fill(lengths <= t, 0.0)
    return [float(x) / length_penalty(len(s), alpha) for x, s in zip(total.tolist(), scored)]
