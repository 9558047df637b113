"""Sampling for the S2 generator, written once for every backend: the model reads its own
y(t-1), one sequence per label, all in parallel; temperature, top-k, top-p, classifier-free
guidance and the lexicon shape each draw.

The backend gives a `GeneratorSteps` (logits of the next token as numpy arrays); every draw
comes from one numpy generator, so a seed gives the same samples whichever backend runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

from seqtool.decoding.lexicon import Lexicon
from seqtool.decoding.search import Hypothesis
from seqtool.engine.ops import log_softmax
from seqtool.text.tokenizer import END, PAD, START


class GeneratorSteps(Protocol):
    num_classes: int

    def start(self, labels: np.ndarray, inputs: np.ndarray) -> tuple[np.ndarray, Any]: ...
    def step(self, state: Any, tokens: np.ndarray) -> tuple[np.ndarray, Any]: ...


def generator_steps(model: Any) -> GeneratorSteps:
    """The steps of `model`: a numpy generator (`seqtool.engine`), a torch `Generator`, or
    steps already."""
    if hasattr(model, "start") and hasattr(model, "step") and hasattr(model, "num_classes"):
        return model
    if type(model).__module__.startswith("seqtool.engine"):
        return NumpyGeneratorSteps(model)
    from seqtool.decoding.torch_steps import TorchGeneratorSteps

    return TorchGeneratorSteps(model)


class NumpyGeneratorSteps:
    """`GeneratorSteps` over a numpy generator of `seqtool.engine`."""

    def __init__(self, model: Any):
        self.model = model
        self.num_classes = model.config.num_classes

    def start(self, labels: np.ndarray, inputs: np.ndarray) -> tuple[np.ndarray, Any]:
        return self.model.start(labels, inputs)

    def step(self, state: Any, tokens: np.ndarray) -> tuple[np.ndarray, Any]:
        return self.model.step(state, tokens)


def random_generator(seed: int | np.random.Generator | None) -> np.random.Generator:
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def sample(
    model: Any, labels: Any, prompt: list[int], max_tokens: int, temperature: float = 1.0,
    top_k: int = 0, top_p: float = 1.0, generator: int | np.random.Generator | None = None,
    guidance: float = 0.0, lexicon: Lexicon | None = None, no_repeat_ngram: int = 0,
) -> list[Hypothesis]:
    """Draw one sequence per label, all in parallel; the model reads its own y(t-1).

    Temperature 0 is greedy decoding. With `guidance` g > 0 the next-token scores are
    log p(y|c) + g * (log p(y|c) - mean over the other classes c' of log p(y|c')), i.e.
    classifier-free guidance (Sanchez et al., 2023) with the other classes as the contrast:
    it sharpens what is specific to the requested class. The returned score is the
    log-probability of the sampled tokens (after the prompt) under the model itself.

    With a `lexicon` each row samples only among the pieces that keep its words inside it
    (`Lexicon.allowed`); a row with no allowed piece samples freely. With `no_repeat_ngram`
    N > 0 no row repeats an N-gram of its own (prompt included; `ngrams.py`); a row that the
    rule would leave without a choice keeps them all. `generator` is a seed or a numpy random
    generator.
    """
    labels = np.asarray(labels, np.int64)
    found = dict(sample_stream(model, labels, prompt, max_tokens, temperature, top_k, top_p,
                               generator, guidance, lexicon, no_repeat_ngram))
    return [found[i] for i in range(len(labels))]


def sample_stream(
    model: Any, labels: Any, prompt: list[int], max_tokens: int, temperature: float = 1.0,
    top_k: int = 0, top_p: float = 1.0, generator: int | np.random.Generator | None = None,
    guidance: float = 0.0, lexicon: Lexicon | None = None, no_repeat_ngram: int = 0,
) -> Iterator[tuple[int, Hypothesis]]:
    """`sample`, yielding (row, hypothesis) as each row ends, so a caller can show it at once
    (and keep it when interrupted); rows ending at the same step come in row order."""
    steps = generator_steps(model)
    rng = random_generator(generator)
    labels = np.asarray(labels, np.int64)
    n = len(labels)
    num_classes = steps.num_classes
    guided = guidance > 0 and num_classes > 1
    # Row block k runs the model conditioned on class (label + k) mod C; block 0 is the label.
    blocks = num_classes if guided else 1
    all_labels = np.concatenate([(labels + k) % num_classes for k in range(blocks)])
    inputs = np.tile(np.asarray([[START, *prompt]], np.int64), (n * blocks, 1))
    logits, state = steps.start(all_labels, inputs)
    tokens: list[np.ndarray] = []
    scores = np.zeros(n, np.float32)
    done = np.zeros(n, bool)
    rows = np.arange(n)
    if lexicon is not None:
        tails = [lexicon.tail_of("".join(lexicon.texts[i] for i in prompt))] * n
    histories = [list(prompt) for _ in range(n)]  # for no_repeat_ngram

    def finished(ended: list[int]) -> Iterator[tuple[int, Hypothesis]]:
        table = np.stack(tokens, 1)[ended].tolist() if tokens else [[] for _ in ended]
        for i, row in zip(ended, table, strict=True):
            length = row.index(END) if END in row else len(row)
            yield i, Hypothesis(row[:length], float(scores[i]))

    for _ in range(max_tokens):
        logp_all = log_softmax(np.asarray(logits, np.float32)).reshape(blocks, n, -1)
        logp = logp_all[0].copy()
        logp[:, PAD] = -np.inf
        logp[:, START] = -np.inf
        steer = logp
        if guided:
            steer = logp + guidance * (logp - logp_all[1:].mean(0))
        if lexicon is not None:
            allowed = np.stack([lexicon.allowed(t) for t in tails])
            allowed |= ~allowed.any(-1, keepdims=True)
            steer = np.where(allowed, steer, -np.inf)
        if no_repeat_ngram > 0:
            steer = ban_repeats(steer, histories, no_repeat_ngram)
        if temperature <= 0:
            choice = steer.argmax(-1)
        else:
            choice = sample_from(steer / temperature, top_k, top_p, rng)
        choice[done] = PAD
        scores += np.where(done, np.float32(0), logp[rows, choice])
        tokens.append(choice)
        for history, token in zip(histories, choice.tolist(), strict=True):
            history.append(token)
        ended = (choice == END) & ~done
        done |= ended
        if ended.any():
            yield from finished(np.flatnonzero(ended).tolist())
        if done.all():
            return
        if lexicon is not None:
            tails = [lexicon.advance(t, c) for t, c in zip(tails, choice.tolist(), strict=True)]
        logits, state = steps.step(state, np.tile(np.where(done, START, choice), blocks))
    yield from finished(np.flatnonzero(~done).tolist())  # cut at max_tokens


def ban_repeats(scores: np.ndarray, histories: list[list[int]], n: int) -> np.ndarray:
    """`scores` with the tokens that would repeat an n-gram of each row's history at -inf; a
    row left with no finite score keeps its scores (better a repeat than no token)."""
    from seqtool.decoding.ngrams import banned_per_row

    per_row = banned_per_row(histories, n)
    if not any(per_row):
        return scores
    banned = scores.copy()
    for row, ids in enumerate(per_row):
        banned[row, list(ids)] = -np.inf
    stuck = ~np.isfinite(banned).any(-1) & np.isfinite(scores).any(-1)
    banned[stuck] = scores[stuck]
    return banned


def sample_from(scores: np.ndarray, top_k: int, top_p: float, rng: np.random.Generator
                ) -> np.ndarray:
    """One token per row of `scores` [rows, V] (log-probabilities up to a constant), from the
    best `top_k` (0 = all) and the smallest set whose mass reaches `top_p`; one uniform draw
    per row, read through the row's cumulative distribution."""
    scores = np.asarray(scores, np.float64)
    if top_k > 0:
        k = min(top_k, scores.shape[-1])
        kth = -np.partition(-scores, k - 1, axis=-1)[:, k - 1:k]
        scores = np.where(scores < kth, -np.inf, scores)
    if top_p < 1.0:
        order = np.argsort(-scores, axis=-1, kind="stable")
        sorted_scores = np.take_along_axis(scores, order, -1)
        probs = np.exp(log_softmax(sorted_scores))
        # Keep the smallest set whose mass reaches top_p (the first token always stays).
        sorted_scores = np.where(probs.cumsum(-1) - probs > top_p, -np.inf, sorted_scores)
        scores = np.empty_like(scores)
        np.put_along_axis(scores, order, sorted_scores, -1)
    probs = np.exp(log_softmax(scores))
    cumulative = probs.cumsum(-1)
    draw = rng.random(len(scores)) * cumulative[:, -1]
    choice = (cumulative <= draw[:, None]).sum(-1)
    # Rounding can put a draw past the last token of positive probability: take that one.
    last = probs.shape[-1] - 1 - (probs[:, ::-1] > 0).argmax(-1)
    return np.minimum(choice, last)
