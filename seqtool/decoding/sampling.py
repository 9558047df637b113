"""Sampling for the S2 generator: the model reads its own y(t-1), one sequence per label, all
in parallel; temperature, top-k, top-p, classifier-free guidance and the lexicon shape each
draw."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from seqtool.decoding.lexicon import Lexicon
from seqtool.decoding.search import Hypothesis
from seqtool.nn.generator import Generator
from seqtool.text.tokenizer import END, PAD, START


def sample(
    model: Generator, labels: torch.Tensor, prompt: list[int], max_tokens: int,
    temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
    generator: torch.Generator | None = None, guidance: float = 0.0,
    lexicon: Lexicon | None = None, no_repeat_ngram: int = 0,
) -> list[Hypothesis]:
    """Draw one sequence per label, all in parallel; the model reads its own y(t-1).

    Temperature 0 is greedy decoding. With `guidance` g > 0 the next-token scores are
    log p(y|c) + g * (log p(y|c) - mean over the other classes c' of log p(y|c')), i.e.
    classifier-free guidance (Sanchez et al., 2023) with the other classes as the contrast:
    it sharpens what is specific to the requested class. The returned score is the
    log-probability of the sampled tokens (after the prompt) under the model itself.

    With a `lexicon` each row samples only among the pieces that keep its words inside it
    (`Lexicon.allowed`); a row with no allowed piece samples freely.

    With `no_repeat_ngram` N > 0 no row repeats an N-gram of its own (prompt included;
    `seqtool.decoding.ngrams`); a row that the rule would leave without a choice keeps them all.
    """
    found = dict(sample_stream(model, labels, prompt, max_tokens, temperature, top_k, top_p,
                              generator, guidance, lexicon, no_repeat_ngram))
    return [found[i] for i in range(labels.size(0))]


def sample_stream(
    model: Generator, labels: torch.Tensor, prompt: list[int], max_tokens: int,
    temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0,
    generator: torch.Generator | None = None, guidance: float = 0.0,
    lexicon: Lexicon | None = None, no_repeat_ngram: int = 0,
) -> Iterator[tuple[int, Hypothesis]]:
    """`sample`, yielding (row, hypothesis) as each row ends, so a caller can show it at once
    (and keep it when interrupted); rows ending at the same step come in row order."""
    n = labels.size(0)
    device = labels.device
    num_classes = model.config.num_classes
    guided = guidance > 0 and num_classes > 1
    # Row block k runs the model conditioned on class (label + k) mod C; block 0 is the label.
    blocks = num_classes if guided else 1
    all_labels = torch.cat([(labels + k) % num_classes for k in range(blocks)])
    inputs = torch.tensor([[START, *prompt]], device=device).expand(n * blocks, -1)
    logits, state = model(all_labels, inputs)
    logits = logits[:, -1].float()
    tokens: list[torch.Tensor] = []
    scores = torch.zeros(n, device=device)
    done = torch.zeros(n, dtype=torch.bool, device=device)
    if lexicon is not None:
        tails = [lexicon.tail_of("".join(lexicon.texts[i] for i in prompt))] * n
    histories = [list(prompt) for _ in range(n)]  # for no_repeat_ngram

    def finished(rows: list[int]) -> Iterator[tuple[int, Hypothesis]]:
        table = torch.stack(tokens, 1)[rows].tolist() if tokens else [[] for _ in rows]
        for i, row in zip(rows, table, strict=True):
            length = row.index(END) if END in row else len(row)
            yield i, Hypothesis(row[:length], float(scores[i]))

    for _ in range(max_tokens):
        logp_all = torch.log_softmax(logits, dim=-1).view(blocks, n, -1)
        logp = logp_all[0].clone()
        logp[:, PAD] = float("-inf")
        logp[:, START] = float("-inf")
        steer = logp
        if guided:
            steer = logp + guidance * (logp - logp_all[1:].mean(0))
        if lexicon is not None:
            allowed = torch.stack([lexicon.allowed(t) for t in tails]).to(device)
            allowed |= ~allowed.any(-1, keepdim=True)
            steer = steer.masked_fill(~allowed, float("-inf"))
        if no_repeat_ngram > 0:
            steer = ban_repeats(steer, histories, no_repeat_ngram)
        if temperature <= 0:
            choice = steer.argmax(-1)
        else:
            choice = _sample_from(steer / temperature, top_k, top_p, generator)
        choice = choice.masked_fill(done, PAD)
        scores += logp.gather(1, choice[:, None]).squeeze(1).masked_fill(done, 0.0)
        tokens.append(choice)
        if no_repeat_ngram > 0:
            for history, token in zip(histories, choice.tolist(), strict=True):
                history.append(token)
        ended = (choice == END) & ~done
        done |= ended
        if bool(ended.any()):
            yield from finished(ended.nonzero().flatten().tolist())
        if bool(done.all()):
            return
        if lexicon is not None:
            tails = [lexicon.advance(t, c) for t, c in zip(tails, choice.tolist(), strict=True)]
        feed = choice.masked_fill(done, START).repeat(blocks)[:, None]
        step_logits, state = model(all_labels, feed, state=state)
        logits = step_logits[:, -1].float()
    yield from finished((~done).nonzero().flatten().tolist())  # cut at max_tokens


def ban_repeats(scores: torch.Tensor, histories: list[list[int]], n: int) -> torch.Tensor:
    """`scores` with the tokens that would repeat an n-gram of each row's history at -inf; a
    row left with no finite score keeps its scores (better a repeat than no token)."""
    from seqtool.decoding.ngrams import banned_per_row

    rows, ids = [], []
    for row, banned in enumerate(banned_per_row(histories, n)):
        rows.extend([row] * len(banned))
        ids.extend(banned)
    if not rows:
        return scores
    banned = scores.index_put((torch.tensor(rows, device=scores.device),
                               torch.tensor(ids, device=scores.device)),
                              torch.tensor(float("-inf"), device=scores.device, dtype=scores.dtype))
    stuck = ~banned.isfinite().any(-1, keepdim=True) & scores.isfinite().any(-1, keepdim=True)
    return torch.where(stuck, scores, banned)


def _sample_from(scores: torch.Tensor, top_k: int, top_p: float, generator) -> torch.Tensor:
    if top_k > 0:
        kth = scores.topk(min(top_k, scores.size(-1)), dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = scores.sort(dim=-1, descending=True)
        probs = torch.softmax(sorted_scores, dim=-1)
        # Keep the smallest set whose mass reaches top_p (the first token always stays).
        drop = probs.cumsum(-1) - probs > top_p
        sorted_scores = sorted_scores.masked_fill(drop, float("-inf"))
        scores = torch.full_like(scores, float("-inf")).scatter(1, order, sorted_scores)
    probs = torch.softmax(scores, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(1)
