"""--no-repeat-ngram: the banning rule on token lists, and sampling (greedy and random) that
never repeats an n-gram, through the sampler, the API and the command line."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from conftest import run_cli, small_generator

from seqtool.decoding.ngrams import banned_per_row, banned_tokens
from seqtool.decoding.sampling import ban_repeats, sample
from seqtool.text.tokenizer import END


def ngrams(tokens: list[int], n: int) -> list[tuple[int, ...]]:
    return [tuple(tokens[i:i + n]) for i in range(len(tokens) - n + 1)]


def repeats(tokens: list[int], n: int) -> bool:
    grams = ngrams(tokens, n)
    return len(grams) != len(set(grams))


def test_banned_tokens_are_those_that_would_repeat_an_ngram():
    assert banned_tokens([5, 6, 7, 5, 6], 3) == {7}
    assert banned_tokens([5, 6, 5, 8, 5], 2) == {6, 8}
    assert banned_tokens([5, 6, 7], 1) == {5, 6, 7}
    assert banned_tokens([5, 6, 7], 0) == set()
    assert banned_tokens([5], 3) == set()
    assert banned_per_row([[1, 2, 1], [3, 3]], 2) == [{2}, {3}]


def test_banning_is_exactly_the_rule_on_random_sequences():
    """A token is banned iff appending it makes a repeated n-gram (the sequence had none)."""
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 4)
        tokens: list[int] = []
        for _ in range(rng.randint(0, 12)):
            allowed = [t for t in range(6) if t not in banned_tokens(tokens, n)]
            if not allowed:
                break
            tokens.append(rng.choice(allowed))
        assert not repeats(tokens, n)
        for t in range(6):
            assert (t in banned_tokens(tokens, n)) == repeats(tokens + [t], n), (tokens, n, t)


def test_ban_repeats_masks_banned_ids_and_keeps_a_row_with_no_choice():
    scores = np.zeros((2, 3))
    out = ban_repeats(scores, [[0, 1, 2], [0, 0]], 1)
    assert out[0].tolist() == [0.0, 0.0, 0.0]  # every id banned: the row keeps its scores
    assert out[1].tolist() == [float("-inf"), 0.0, 0.0]
    assert ban_repeats(scores, [[0, 1], [2]], 3) is scores  # nothing banned


@pytest.mark.parametrize("temperature", [0.0, 1.0])
@pytest.mark.parametrize("n", [1, 2, 3])
def test_samples_never_repeat_an_ngram(temperature, n):
    torch.manual_seed(0)
    with torch.no_grad():
        for seed in range(4):
            model = small_generator(seed=seed, vocab_size=30)
            labels = torch.tensor([0, 1, 2, 0, 1, 2])
            prompt = [7, 8]
            out = sample(model, labels, prompt, 25, temperature=temperature,
                         generator=seed, no_repeat_ngram=n)
            for h in out:
                assert END not in h.tokens
                assert not repeats(prompt + h.tokens, n), (prompt + h.tokens, n)


def test_without_the_rule_greedy_repeats_and_with_it_the_output_changes():
    """Greedy decoding of a small random model falls into a loop; the rule breaks it."""
    with torch.no_grad():
        looped = next(s for s in range(20) if any(
            repeats(h.tokens, 2) for h in sample(small_generator(seed=s), torch.tensor([0, 1]),
                                                 [], 30, temperature=0)))
        model = small_generator(seed=looped)
        free = sample(model, torch.tensor([0, 1]), [], 30, temperature=0)
        ruled = sample(model, torch.tensor([0, 1]), [], 30, temperature=0, no_repeat_ngram=2)
    assert any(repeats(h.tokens, 2) for h in free)
    assert not any(repeats(h.tokens, 2) for h in ruled)


def test_cli_and_api_take_no_repeat_ngram(toy_generator):
    """The option reaches the sampler: the API gives what the command line does, and banning
    every piece already used (N = 1) changes the samples, which then use each piece once."""
    import json

    import seqtool

    args = ["generate", "-m", toy_generator, "--label", "positive", "-n", "6", "--seed", "3",
            "-t", "1.5", "--lexicon", "none", "--max-output-length", "30", "--format", "jsonl"]
    free = [json.loads(x) for x in run_cli(*args).output.splitlines()]
    ruled = [json.loads(x) for x in run_cli(*args, "--no-repeat-ngram", "1").output.splitlines()]
    assert [r["text"] for r in ruled] != [r["text"] for r in free]
    generator = seqtool.load("generate", str(toy_generator))
    api = generator.generate("positive", n=6, seed=3, temperature=1.5, lexicon="none",
                             max_output_length=30, no_repeat_ngram=1)
    assert [r.text for r in api] == [r["text"] for r in ruled]
    bad = run_cli(*args, "--no-repeat-ngram", "-1", ok=False)
    assert bad.exit_code == 2
