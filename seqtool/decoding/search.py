"""Decoding for the translator: greedy and batched beam search (sampling for the generator is
`sampling.py`), written once for every backend.

The searches are numpy bookkeeping around a backend's `TranslatorSteps` (`steps.py`): it encodes
sources, advances rows by one token (log-probabilities come back as a numpy array) and keeps,
reorders and joins the rows of its own memory. All searches work on a whole batch of
sentences at once; beam search keeps `beam` hypotheses per sentence, batch * beam rows.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from seqtool.decoding.steps import SOURCE_KEYS, TranslatorSteps, translator_steps
from seqtool.text.tokenizer import END, PAD, START


@dataclass
class Hypothesis:
    tokens: list[int]
    score: float  # log-probability, divided by the length penalty in beam search
    attention: list[list[float]] | None = field(default=None, repr=False)  # [target][source]


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


def _reachable(log_prob: np.ndarray, length: np.ndarray, limit: np.ndarray,
               alpha: float) -> np.ndarray:
    """`best_reachable` for arrays of rows (float64, as Python computes it); every row has
    `length` < `limit`."""
    def penalty(n):
        return ((5.0 + n.astype(np.float64)) / 6.0) ** alpha if alpha else 1.0
    return np.maximum(log_prob / penalty(length + 1), log_prob / penalty(limit))


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


def top_tokens(scores: np.ndarray, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's best `m` scores (best first) and their columns, for [rows, V] scores.

    The best m of a row lie in the m blocks (of `_BLOCK` columns) with the best maxima, so it
    takes each block's maximum (one cheap pass), the m best blocks, and the best m of their
    m * `_BLOCK` scores and of the last, partial block's: on [320, 8000] far less work than
    partitioning every row. Among exactly equal scores the columns chosen are left open."""
    rows, width = scores.shape
    if m == 1:
        column = scores.argmax(1)[:, None]
        return np.take_along_axis(scores, column, 1), column
    blocks = width // _BLOCK
    if blocks >= 4 * m:
        body = blocks * _BLOCK
        blocked = scores[:, :body].reshape(rows, blocks, _BLOCK)
        best_blocks = _best_unsorted(blocked.max(axis=2), m)  # [rows, m]
        candidates = np.take_along_axis(blocked, best_blocks[:, :, None], 1).reshape(rows, -1)
        columns = (best_blocks[:, :, None] * _BLOCK + np.arange(_BLOCK)).reshape(rows, -1)
        if body < width:
            candidates = np.concatenate([candidates, scores[:, body:]], 1)
            tail = np.broadcast_to(np.arange(body, width), (rows, width - body))
            columns = np.concatenate([columns, tail], 1)
    else:
        candidates, columns = scores, None
    best = _best_unsorted(candidates, m)
    values = np.take_along_axis(candidates, best, 1)
    order = np.argsort(-values, axis=1, kind="stable")
    best = np.take_along_axis(best, order, 1)
    values = np.take_along_axis(values, order, 1)
    return values, best if columns is None else np.take_along_axis(columns, best, 1)


def _best_unsorted(scores: np.ndarray, m: int) -> np.ndarray:
    """The columns of each row's best `m` scores, in no particular order."""
    if m >= scores.shape[1]:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape).copy()
    return np.argpartition(-scores, m - 1, axis=1)[:, :m]


_BLOCK = 100  # columns per block of `top_tokens`


def _topk(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's `k` best values (best first) and their columns, for small rows."""
    index = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, index, 1), index


def greedy(
    model: Any, src: Any, src_lengths: Any, max_lengths: Any, with_attention: bool = False,
) -> list[Hypothesis]:
    """The most likely token at every step, for every sentence of the batch at once.

    `model` is a translator of either backend (or its `TranslatorSteps`); src [B, S] ids,
    src_lengths [B] and max_lengths [B] are arrays (numpy, or anything numpy reads).
    Finished sentences leave the batch (a few at a time, `_COMPACT`), so the remaining steps
    cost only the sentences still being decoded."""
    steps = translator_steps(model)
    src, src_lengths = np.asarray(src, np.int64), np.asarray(src_lengths, np.int64)
    memory = steps.encode(src, src_lengths)
    batch = src.shape[0]
    prev = np.full(batch, START, np.int64)
    found = _greedy_rows(steps, memory, prev, np.zeros(batch, np.float32),
                         [int(x) for x in np.asarray(max_lengths)], with_attention)
    return [Hypothesis(tokens, score, None if att is None else att[:, :n].tolist())
            for (tokens, score, att), n in zip(found, src_lengths.tolist())]


def _greedy_rows(
    steps: TranslatorSteps, memory: dict, prev: np.ndarray, scores: np.ndarray,
    limits: list[int], with_attention: bool, floors: tuple | None = None,
) -> list[tuple[list[int], float, np.ndarray | None] | None]:
    """Greedy decoding of each row of `memory` (one row per sentence) from the token `prev`,
    with log-probability `scores` [rows] (float32) so far and at most `limits` more tokens:
    per row the tokens (without <end>), the final log-probability, and the attention
    [tokens, S] when asked.

    floors = (floor, scored, alpha) [rows each; floor float64, scored int]: a row is dropped
    (None) once its translation could no longer score above `floor` (`best_reachable`, with
    `scored` tokens scored before `prev` and its full length limit), since it could then not
    enter its sentence's n-best list."""
    batch = prev.shape[0]
    done = np.zeros(batch, bool)
    dropped = np.zeros(batch, bool)
    row_limits = np.asarray(limits, np.int64)
    history = np.zeros((batch, 0), np.int64)
    att_history: np.ndarray | None = None
    sentence = list(range(batch))  # the original row of each row
    out: list = [None] * batch
    t = 0
    while sentence:
        logp, memory, weights = steps.step(memory, prev)
        prev = logp.argmax(1)
        best_logp = logp[np.arange(len(prev)), prev]
        prev[done] = PAD
        scores = scores + np.where(done, np.float32(0), best_logp)
        history = np.concatenate([history, prev[:, None]], 1)
        if with_attention:
            w = steps.numpy(weights)[:, None]
            att_history = w if att_history is None else np.concatenate([att_history, w], 1)
        t += 1
        ending = (prev == END) | (row_limits <= t)
        if floors is not None:
            floor, scored, alpha = floors
            dropped |= ~done & ~ending & (
                _reachable(scores.astype(np.float64), scored + t, scored + row_limits, alpha)
                <= floor)
        done |= ending | dropped
        n_done = int(done.sum())
        if n_done == len(sentence) or n_done >= max(1, len(sentence) // _COMPACT):
            for i in np.flatnonzero(done).tolist():
                b = sentence[i]
                if dropped[i]:
                    continue  # out[b] stays None
                row = history[i].tolist()
                # Without <end> a row ran to its limit.
                length = row.index(END) if END in row else min(limits[b], len(row))
                a = att_history[i, :length] if att_history is not None else None
                out[b] = (row[:length], float(scores[i]), a)
            if n_done == len(sentence):
                break
            keep = np.flatnonzero(~done)
            sentence = [sentence[i] for i in keep.tolist()]
            memory = steps.select(memory, keep)
            prev, scores, row_limits = prev[keep], scores[keep], row_limits[keep]
            history, done, dropped = history[keep], done[keep], dropped[keep]
            if floors is not None:
                floors = (floors[0][keep], floors[1][keep], floors[2])
            if att_history is not None:
                att_history = att_history[keep]
    return out


_COMPACT = 8  # greedy drops finished rows once they are 1/8 of the batch (or all of it)


def beam_search(
    model: Any, src: Any, src_lengths: Any, max_lengths: Any, beam: int = 5, alpha: float = 1.0,
    n_best: int = 1, with_attention: bool = False, include_greedy: bool = True,
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
    closing later changes nothing.

    The source side of the memory stays one copy per sentence (a step's group = beam), and
    each step's best 2 * beam come from each hypothesis's own best 2 * beam tokens.
    """
    return beam_search_batches(model, [(src, src_lengths, max_lengths)], beam, alpha, n_best,
                               with_attention, include_greedy)[0]


def beam_search_batches(
    model: Any, batches: Iterable[tuple[Any, Any, Any]], beam: int = 5, alpha: float = 1.0,
    n_best: int = 1, with_attention: bool = False, include_greedy: bool = True,
) -> list[list[list[Hypothesis]]]:
    """`beam_search` of each batch (src, src_lengths, max_lengths), in order; the same
    results. The greedy paths that left the beams of several batches are finished together,
    about `_GREEDY_ROWS` at a time: on their own, a batch's few dozen made small, slow steps
    (a tenth of the test set's time)."""
    steps = translator_steps(model)
    results: list[list[list[Hypothesis]]] = []
    pending: list[_Searched] = []
    for src, src_lengths, max_lengths in batches:
        pending.append(_search(steps, np.asarray(src, np.int64),
                               np.asarray(src_lengths, np.int64), np.asarray(max_lengths),
                               beam, alpha, n_best, with_attention, include_greedy))
        if sum(len(searched.left) for searched in pending) >= _GREEDY_ROWS:
            results += _finish(steps, pending)
            pending = []
    return results + _finish(steps, pending)


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


def _state_of(memory: dict) -> dict:
    return {key: v for key, v in memory.items() if key not in SOURCE_KEYS}


def _source_of(memory: dict) -> dict:
    return {key: memory[key] for key in SOURCE_KEYS}


def _search(steps: TranslatorSteps, src, src_lengths, max_lengths, beam, alpha, n_best,
            with_attention, include_greedy) -> _Searched:
    """`beam_search` but for its greedy paths that left the beam (`_Searched.left`)."""
    k = beam
    batch = src.shape[0]
    encoded = steps.encode(src, src_lengths)
    limits = [int(x) for x in max_lengths.tolist()]
    src_len = [int(x) for x in src_lengths.tolist()]
    finished: list[list[Hypothesis]] = [[] for _ in range(batch)]
    greedy_tokens: list[list[int] | None] = [None] * batch
    following = dict.fromkeys(range(batch), 0) if include_greedy else {}  # sentence -> row
    left: list[tuple] = []  # greedy paths that left the beam, to finish on their own
    memory = encoded
    alive = np.full((batch, k), -np.inf, np.float32)
    alive[:, 0] = 0.0
    prev = np.full(batch, START, np.int64)
    history = np.zeros((batch * k, 0), np.int64)
    att_history: np.ndarray | None = None
    active = list(range(batch))  # original sentence index of each row group
    at_limit_all = np.asarray(limits)
    active_rows = np.arange(batch)
    t = 0
    while active:
        if t == 0:  # all k hypotheses are <start>: one row per sentence, then k copies of it
            logp, memory, weights = steps.step(memory, prev)
            copies = np.repeat(np.arange(batch), k)
            memory = {**steps.select(_state_of(memory), copies), **_source_of(memory)}
            logp = logp[copies]
            weights = steps.numpy(weights)[copies] if with_attention else None
        else:
            logp, memory, weights = steps.step(memory, prev, k)
            weights = steps.numpy(weights) if with_attention else None
        vocab = logp.shape[-1]
        n = len(active)
        if with_attention:
            w = weights[:, None]
            att_history = w if att_history is None else np.concatenate([att_history, w], 1)
        # The best 2k of all k * vocab continuations are among the best 2k of each hypothesis.
        m = min(2 * k, vocab)
        row_scores, row_tokens = top_tokens(logp, m)
        candidates = (alive.reshape(-1, 1) + row_scores).reshape(n, k * m)
        top_scores, top_index = _topk(candidates, 2 * k)
        top_beam = top_index // m
        top_token = np.take_along_axis(row_tokens.reshape(n, k * m), top_index, 1)
        greedy_step = _follow_greedy(following, active, k, t, limits, row_tokens, candidates,
                                     history, att_history, src_len, alpha, finished,
                                     greedy_tokens)
        at_limit = at_limit_all[active_rows] <= t + 1
        ends = (top_token == END) | at_limit[:, None]
        for i, j in np.argwhere(ends[:, :k] & np.isfinite(top_scores[:, :k])).tolist():
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
        alive, keep = _topk(np.where(ends, np.float32(-np.inf), top_scores), k)
        t += 1
        best_live = alive[:, 0].tolist()
        still = [i for i, b in enumerate(active)
                 if may_improve(best_live[i], [h.score for h in finished[b]], t, limits[b],
                                alpha, n_best)]
        if greedy_step:  # where greedy's next hypothesis is now, or it leaves the beam
            kept = np.take_along_axis(top_index, keep, 1).tolist()
            open_now = set(still)
            for i, j, token, score in greedy_step:
                b = active[i]
                if i in open_now and j * m in kept[i]:
                    following[b] = kept[i].index(j * m)
                    continue
                del following[b]
                r = i * k + j
                state = steps.select(_state_of(memory), np.array([r]))
                prefix_att = att_history[r] if att_history is not None else None
                left.append((b, state, token, score, history[r].tolist() + [token],
                             prefix_att))
        if not still:
            break
        origin = np.arange(n)[:, None] * k + np.take_along_axis(top_beam, keep, 1)
        prev = np.take_along_axis(top_token, keep, 1)
        source = _source_of(memory)
        if len(still) < n:
            rows = np.asarray(still)
            alive, origin, prev = alive[rows], origin[rows], prev[rows]
            active_rows = active_rows[rows]
            active = [active[i] for i in still]
            source = steps.select(source, rows)
        origin, prev = origin.reshape(-1), prev.reshape(-1)
        memory = {**steps.select(_state_of(memory), origin), **source}
        history = np.concatenate([history[origin], prev[:, None]], 1)
        if att_history is not None:
            att_history = att_history[origin]
    sentences = np.asarray([b for b, *_ in left], np.int64)
    source = steps.select(_source_of(encoded), sentences) if left else {}
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
    index = np.asarray([i * k + j for i, j in groups])
    m = row_tokens.shape[1]
    tokens = row_tokens[index, 0].tolist()
    scores = candidates.reshape(-1, m)[index, 0]  # float32, as greedy adds them up
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


def _finish(steps: TranslatorSteps, batches: list[_Searched]) -> list[list[list[Hypothesis]]]:
    """Decode greedily on their own, all together, the greedy paths that left the beams of
    `batches` (or whose sentence closed first), from where they left; put each translation
    first among its sentence's finished hypotheses; return each batch's n-best lists."""
    paths = [(searched, path) for searched in batches for path in searched.left]
    if paths:
        _finish_greedy(steps, batches, paths)
    results = []
    for searched in batches:
        results.append([sorted(hyps, key=lambda h: h.score, reverse=True)[:searched.n_best]
                        or [Hypothesis([], float("-inf"))] for hyps in searched.finished])
    return results


def _finish_greedy(steps: TranslatorSteps, batches: list[_Searched], paths: list[tuple]
                   ) -> None:
    """`_finish` for the `paths` (searched batch, left path), whose source memories are
    padded to the longest source among them."""
    with_left = [searched for searched in batches if searched.left]
    width = max(steps.positions(searched.source) for searched in with_left)
    memory = {**steps.join([steps.pad(searched.source, width) for searched in with_left]),
              **steps.join([state for _, (_, state, *_) in paths])}
    prev = np.asarray([token for _, (_, _, token, *_) in paths], np.int64)
    scores = np.asarray([score for _, (_, _, _, score, *_) in paths], np.float32)
    steps_done = np.asarray([len(prefix) for _, (*_, prefix, _) in paths])
    # A greedy translation that cannot score above the n_best-th finished one is not
    # returned: stop decoding it as soon as that is sure.
    floor = [sorted((h.score for h in s.finished[b]), reverse=True)[s.n_best - 1]
             if len(s.finished[b]) >= s.n_best else float("-inf") for s, (b, *_) in paths]
    alpha = batches[0].alpha
    floors = (np.asarray(floor, np.float64), steps_done, alpha)
    found = _greedy_rows(steps, memory, prev, scores,
                         [s.limits[b] - n for (s, (b, *_)), n in zip(paths, steps_done)],
                         batches[0].with_attention, floors)
    for (s, (b, _, _, _, prefix, prefix_att)), result in zip(paths, found):
        if result is None:
            continue
        tokens, score, att = result
        words = prefix + tokens
        attention = None
        if s.with_attention:
            attention = np.concatenate([prefix_att[: len(prefix)],
                                        att[:, : prefix_att.shape[1]]])[:, : s.src_len[b]]
            attention = attention.tolist()
        scored = len(words) + (len(words) < s.limits[b])
        s.finished[b] = [h for h in s.finished[b] if h.tokens != words]
        s.finished[b].insert(0, Hypothesis(words, score / length_penalty(scored, alpha),
                                           attention))


def normalised_score(
    model: Any, src: Any, src_lengths: Any, max_lengths: Any, targets: list[list[int]],
    alpha: float = 1.0, precision: str = "fp32",
) -> list[float]:
    """Beam search's objective for given translations (e.g. greedy's): the log-probability of
    the tokens plus <end> (none for a translation cut at its length limit), divided by
    length_penalty of the scored tokens. Teacher-forced, one sentence per row of `src`, with
    the model's plain step (torch: in `precision`)."""
    steps = translator_steps(model, fast=False, precision=precision)
    limits = [int(x) for x in np.asarray(max_lengths)]
    scored = [list(t) + ([END] if len(t) < lim else []) for t, lim in zip(targets, limits)]
    memory = steps.encode(np.asarray(src, np.int64), np.asarray(src_lengths, np.int64))
    prev = np.full(len(scored), START, np.int64)
    total = np.zeros(len(scored), np.float64)
    for t in range(max(len(s) for s in scored)):
        logp, memory, _ = steps.step(memory, prev)
        prev = np.asarray([s[t] if t < len(s) else PAD for s in scored], np.int64)
        step = logp[np.arange(len(scored)), prev].astype(np.float64)
        total += np.where([t < len(s) for s in scored], step, 0.0)
    return [float(x) / length_penalty(len(s), alpha) for x, s in zip(total.tolist(), scored)]
