"""An oracle for the searches (`seqtool.decoding.search`) that owes nothing to the code it
checks: one sentence at a time, one row per hypothesis, plain lists, no early stopping (every
hypothesis is expanded until <end> or the length limit), its own length penalty, and the plain
`Translator.decode_step` of the torch model."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from seqtool.text.tokenizer import END, START


@dataclass
class Found:
    tokens: list[int]
    score: float
    attention: list[list[float]] | None = None


def penalty(scored: int, alpha: float) -> float:
    """Wu et al. (2016), written out here on purpose: ((5 + |Y|) / 6) ** alpha."""
    return ((5.0 + scored) / 6.0) ** alpha


def _rows(x, index: list[int]):
    if isinstance(x, torch.Tensor):
        return x[index]
    if isinstance(x, dict):
        return {k: _rows(v, index) for k, v in x.items()}
    return type(x)(_rows(v, index) for v in x)


def _sentence(model, src, lengths, b: int):
    """Sentence b of the batch, alone: its memory (one row) and its source length."""
    n = int(lengths[b])
    return model.encode(src[b : b + 1, :n], lengths[b : b + 1]), n


@torch.no_grad()
def greedy_oracle(model, src, lengths, limits, with_attention: bool = False) -> list[Found]:
    out = []
    for b in range(src.size(0)):
        memory, _ = _sentence(model, src, lengths, b)
        tokens, score, attention, prev = [], 0.0, [], START
        for _ in range(int(limits[b])):
            logp, memory, weights = model.decode_step(memory, torch.tensor([prev]))
            prev = int(logp[0].argmax())
            score += float(logp[0, prev])
            attention.append(weights[0].tolist())
            if prev == END:
                break
            tokens.append(prev)
        out.append(Found(tokens, score, attention[: len(tokens)] if with_attention else None))
    return out


@torch.no_grad()
def beam_oracle(model, src, lengths, limits, beam: int, alpha: float, n_best: int,
                with_attention: bool = False, include_greedy: bool = True) -> list[list[Found]]:
    """Per sentence: at each step the best 2 * beam continuations of all live hypotheses; those
    among the best `beam` that end (<end> or the limit) finish with score log p / penalty, the
    best `beam` that do not end live on. Greedy's translation is among the finished ones."""
    greedy = greedy_oracle(model, src, lengths, limits, with_attention)
    results = []
    for b in range(src.size(0)):
        limit = int(limits[b])
        finished: dict[tuple[int, ...], Found] = {}
        if include_greedy:
            g = greedy[b]
            scored = len(g.tokens) + (len(g.tokens) < limit)
            finished[tuple(g.tokens)] = Found(g.tokens, g.score / penalty(scored, alpha),
                                              g.attention)
        encoded, _ = _sentence(model, src, lengths, b)
        live = [([], 0.0, [])]  # (tokens, log-probability, attention rows)
        memory = encoded
        for t in range(limit):
            prev = torch.tensor([tokens[-1] if tokens else START for tokens, _, _ in live])
            logp, memory, weights = model.decode_step(memory, prev)
            totals = torch.tensor([s for _, s, _ in live], dtype=logp.dtype)[:, None] + logp
            flat = totals.reshape(-1)
            count = min(2 * beam, int(torch.isfinite(flat).sum()))
            best = flat.topk(count)
            vocab = logp.size(1)
            survivors = []
            for rank, (score, index) in enumerate(zip(best.values.tolist(),
                                                      best.indices.tolist())):
                row, token = divmod(index, vocab)
                tokens, _, att = live[row]
                att = att + [weights[row].tolist()]
                if token == END or t + 1 == limit:
                    words = tokens if token == END else tokens + [token]
                    if rank < beam and tuple(words) not in finished:
                        finished[tuple(words)] = Found(
                            words, score / penalty(t + 1, alpha),
                            att[: len(words)] if with_attention else None)
                elif len(survivors) < beam:
                    survivors.append((tokens + [token], score, att, row))
            if not survivors:
                break
            live = [(tokens, score, att) for tokens, score, att, _ in survivors]
            memory = _rows(memory, [row for *_, row in survivors])
        ranked = sorted(finished.values(), key=lambda h: h.score, reverse=True)[:n_best]
        results.append(ranked or [Found([], float("-inf"))])
    return results
