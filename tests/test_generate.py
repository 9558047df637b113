"""S2: sampling (temperature, top-k, top-p, guidance, batches) on small random generators; the
toy generator reproduces its classes' sentences and follows prompts."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import TOY, run_cli, run_seqtool, small_generator

from seqtool.decoding.sampling import sample, sample_from
from seqtool.inference.predict import Loaded, generate
from seqtool.text.data import read_labeled
from seqtool.text.tokenizer import END, PAD, START, UNK, Tokenizer

SENTENCES = {}
for r in read_labeled(TOY / "sentiment.tsv"):
    SENTENCES.setdefault(r.label, set()).add(r.text)

DISTRIBUTION = torch.tensor([0.05, 0.5, 0.15, 0.3])  # token 1 first, then 3, 2, 0
TOLERANCE = 0.04  # on a share of 4000 draws: 5 standard deviations


def draws(top_k: int = 0, top_p: float = 1.0, rows: int = 4000) -> torch.Tensor:
    """`rows` independent draws from DISTRIBUTION (one per row, in one call)."""
    scores = DISTRIBUTION.log().expand(rows, -1).numpy()
    return torch.from_numpy(sample_from(scores, top_k, top_p, np.random.default_rng(0)))


@pytest.fixture(autouse=True)
def no_grad():
    with torch.no_grad():
        yield


def shares(tokens: torch.Tensor) -> list[float]:
    return (torch.bincount(tokens, minlength=4) / len(tokens)).tolist()


def test_plain_sampling_follows_the_distribution():
    assert shares(draws()) == pytest.approx(DISTRIBUTION.tolist(), abs=TOLERANCE)


@pytest.mark.parametrize("top_p, nucleus", [(0.7, [1, 3]), (0.9, [1, 3, 2]), (1e-6, [1])])
def test_top_p_draws_only_from_the_nucleus_renormalised(top_p, nucleus):
    """The nucleus is the smallest set of most likely tokens whose mass reaches top_p."""
    got = shares(draws(top_p=top_p))
    mass = float(DISTRIBUTION[nucleus].sum())
    expected = [float(DISTRIBUTION[t]) / mass if t in nucleus else 0.0 for t in range(4)]
    assert got == pytest.approx(expected, abs=TOLERANCE)
    assert all(got[t] == 0 for t in range(4) if t not in nucleus)


@pytest.mark.parametrize("top_k, kept", [(1, [1]), (2, [1, 3]), (3, [1, 3, 2]), (9, [0, 1, 2, 3])])
def test_top_k_draws_only_from_the_k_most_likely_renormalised(top_k, kept):
    got = shares(draws(top_k=top_k))
    mass = float(DISTRIBUTION[kept].sum())
    expected = [float(DISTRIBUTION[t]) / mass if t in kept else 0.0 for t in range(4)]
    assert got == pytest.approx(expected, abs=TOLERANCE)
    assert all(got[t] == 0 for t in range(4) if t not in kept)


def test_top_k_and_top_p_together_keep_the_smaller_set():
    assert set(draws(top_k=3, top_p=0.7).tolist()) == {1, 3}
    assert set(draws(top_k=2, top_p=0.9).tolist()) == {1, 3}


def greedy_reference(model, label: int, prompt: list[int], max_tokens: int) -> list[int]:
    """Greedy decoding written out independently: feed the whole prefix at every step."""
    tokens: list[int] = []
    for _ in range(max_tokens):
        logits, _ = model(torch.tensor([label]), torch.tensor([[START, *prompt, *tokens]]))
        scores = logits[0, -1].clone()
        scores[[PAD, START]] = float("-inf")
        choice = int(scores.argmax())
        if choice == END:
            break
        tokens.append(choice)
    return tokens


@pytest.mark.parametrize("seed", range(4))
def test_temperature_zero_top_k_one_and_tiny_top_p_are_greedy(seed):
    model = small_generator(seed, num_classes=2)
    labels = torch.tensor([0, 1, 1])
    expected = [greedy_reference(model, int(y), [5, 6], 15) for y in labels]
    for options in ({"temperature": 0.0}, {"top_k": 1}, {"top_p": 1e-9},
                    {"temperature": 0.0, "top_k": 5}):
        got = sample(model, labels, [5, 6], 15, generator=1,
                     **options)
        assert [h.tokens for h in got] == expected, options


def sequence_logprob(model, label: int, tokens: list[int], ended: bool) -> float:
    """log p(tokens [+ <end>] | class) under the model, teacher-forced in one call."""
    targets = [*tokens, END] if ended else tokens
    logits, _ = model(torch.tensor([label]), torch.tensor([[START, *tokens]]))
    logp = torch.log_softmax(logits[0, : len(targets)], -1)
    return float(logp[torch.arange(len(targets)), targets].sum())


@pytest.mark.parametrize("guidance", [0.0, 2.0])
def test_rows_stop_at_end_and_scores_are_the_models_logprob(guidance):
    """Rows stop independently at <end> (which is not returned) or at max_tokens; <pad> and
    <start> are never drawn, even when the model favours them; the score is the plain model's
    log-probability of what was drawn, with or without guidance."""
    model = small_generator(1, num_classes=3)
    with torch.no_grad():
        model.output.bias[END] += 1.5  # rows end at many different lengths
        model.output.bias[PAD] += 20.0
        model.output.bias[START] += 20.0
    labels = torch.tensor([0, 1, 2] * 20)
    max_tokens = 8
    got = sample(model, labels, [], max_tokens, temperature=1.0, guidance=guidance,
                 generator=2)
    lengths = [len(h.tokens) for h in got]
    assert len(got) == len(labels) and max(lengths) == max_tokens and len(set(lengths)) >= 4
    for y, h in zip(labels.tolist(), got):
        assert not {PAD, START, END} & set(h.tokens), h.tokens
        expected = sequence_logprob(model, y, h.tokens, ended=len(h.tokens) < max_tokens)
        assert h.score == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_a_drawn_unk_is_what_the_model_reads_next():
    """The score of a sample is the model's log-probability of the tokens as they were drawn,
    which holds only if the model read each drawn token, <unk> included."""
    model = small_generator(1, num_classes=2)
    with torch.no_grad():
        model.output.bias[UNK] += 1.0
    got = sample(model, torch.tensor([0, 1] * 10), [], 8, temperature=1.0,
                 generator=0)
    assert any(UNK in h.tokens for h in got)
    for y, h in zip([0, 1] * 10, got):
        expected = sequence_logprob(model, y, h.tokens, ended=len(h.tokens) < 8)
        assert h.score == pytest.approx(expected, rel=1e-5, abs=1e-5)


def test_guidance_follows_its_formula():
    """Greedy choice with guidance g is argmax_y of log p(y|c) + g (log p(y|c) - mean over the
    other classes c' of log p(y|c')), computed here independently of `sampling.sample`.

    The check is not vacuous: in the cases below, plain greedy and two plausible mistakes
    (mean over all classes including c; no guidance) choose differently at least once."""
    guidance = 1.5
    differs = {"plain": 0, "mean over all classes": 0}
    for seed in range(6):
        model = small_generator(seed, num_classes=3)
        for prompt in ([], [7], [9, 4], [5, 5, 6]):
            logits, _ = model(torch.arange(3), torch.tensor([[START, *prompt]] * 3))
            logp = torch.log_softmax(logits[:, -1], -1)
            for c in range(3):
                others = logp[[k for k in range(3) if k != c]].mean(0)
                formula = logp[c] + guidance * (logp[c] - others)
                formula[[PAD, START]] = float("-inf")
                top2 = formula.topk(2).values
                assert top2[0] - top2[1] > 1e-6  # no tie that rounding could break
                got = sample(model, torch.tensor([c]), prompt, 1, temperature=0.0,
                             guidance=guidance)[0].tokens
                assert got == [int(formula.argmax())] or (got == [] and formula.argmax() == END)
                plain = logp[c].clone()
                plain[[PAD, START]] = float("-inf")
                differs["plain"] += int(plain.argmax() != formula.argmax())
                over_all = logp[c] + guidance * (logp[c] - logp.mean(0))
                over_all[[PAD, START]] = float("-inf")
                differs["mean over all classes"] += int(over_all.argmax() != formula.argmax())
    assert all(n > 0 for n in differs.values()), differs


def test_guidance_raises_the_probability_of_the_class_specific_sequence():
    """Guided greedy sequences are more likely under their class relative to the other classes
    than unguided ones: log p(s|c) - mean log p(s|c') grows, on average over random models."""
    gains = []
    for seed in range(8):
        model = small_generator(seed, num_classes=2)
        for c in range(2):
            margin = []
            for guidance in (0.0, 3.0):
                tokens = sample(model, torch.tensor([c]), [], 10, temperature=0.0,
                                guidance=guidance)[0].tokens
                ended = len(tokens) < 10
                margin.append(sequence_logprob(model, c, tokens, ended)
                              - sequence_logprob(model, 1 - c, tokens, ended))
            gains.append(margin[1] - margin[0])
    assert sum(gains) / len(gains) > 0.3 and sum(g >= 0 for g in gains) >= 0.75 * len(gains)


@pytest.fixture(scope="module")
def random_loaded() -> Loaded:
    """A random generator over a tokenizer of the toy corpus, as `predict.load` returns it."""
    texts = [r.text for r in read_labeled(TOY / "sentiment.tsv")]
    tokenizer = Tokenizer.train(texts, vocab_size=40)
    model = small_generator(3, num_classes=2, vocab_size=tokenizer.vocab_size)
    checkpoint = SimpleNamespace(labels=["negative", "positive"])
    return Loaded(checkpoint, model, tokenizer, tokenizer)  # type: ignore[arg-type]


def test_sampling_more_than_one_batch(random_loaded):
    """n > batch_size: every batch is drawn from one seeded stream, so the result is
    reproducible, and later batches are new draws, not repeats of the first."""
    def texts(seed: int) -> list[str]:
        out = generate(random_loaded, "positive", 10, seed=seed, batch_size=4, max_tokens=12)
        assert [r["label"] for r in out] == ["positive"] * 10
        return [r["text"] for r in out]

    first = texts(seed=5)
    assert len(first) == 10 and first == texts(seed=5)
    assert first[:4] != first[4:8]
    assert first != texts(seed=6)
    assert len(set(first)) >= 8


def test_greedy_generation_gives_a_training_sentence_of_the_class(toy_generator):
    # Where sentences of a class share a prefix, greedy's choice between them is a near tie
    # (any is right); every other step wins by about 10 nats, so no rounding can change it.
    for label, sentences in SENTENCES.items():
        out = run_cli("generate", "-m", toy_generator, "--label", label, "--temperature", "0",
                      "--guidance", "0", "-n", "2").output.splitlines()
        assert len(out) == 2 and out[0] == out[1]
        assert out[0] in sentences, (label, out[0])


def test_prompt_completes_the_one_matching_sentence(toy_generator):
    out = run_cli("generate", "-m", toy_generator, "--label", "negative", "--temperature",
                  "0", "--guidance", "0", "--prompt", "Cats and dogs are").output.strip()
    assert out == "Cats and dogs are not allowed."
    out = run_cli("generate", "-m", toy_generator, "--label", "negative", "--temperature",
                  "0", "--guidance", "0", "--prompt", "Cats and dogs have").output.strip()
    assert out == "Cats and dogs have always been natural enemies."


def test_sampling_is_batched_deterministic_and_jsonl(toy_generator):
    args = ["generate", "-m", toy_generator, "--label", "positive", "-n", "20",
            "--temperature", "1.5", "--format", "jsonl"]
    a = run_cli(*args, "--seed", "1").output
    assert a == run_cli(*args, "--seed", "1").output
    assert a != run_cli(*args, "--seed", "2").output
    records = [json.loads(x) for x in a.splitlines()]
    assert len(records) == 20
    assert all(r["label"] == "positive" and r["logprob"] <= 0 for r in records)
    assert all(r["tokens"] > 0 for r in records)


def test_top_k_one_is_greedy(toy_generator):
    greedy = run_cli("generate", "-m", toy_generator, "-l", "negative", "-t", "0").output
    top1 = run_cli("generate", "-m", toy_generator, "-l", "negative", "-t", "1",
                   "--top-k", "1").output
    assert greedy == top1


def test_unknown_label_lists_known_labels(toy_generator):
    p = run_seqtool("generate", "-m", toy_generator, "--label", "neutral")
    assert p.returncode == 1
    assert "unknown label 'neutral' (known: negative, positive)" in p.stderr


def test_wrong_class_perplexity_is_higher(toy_generator, toy_classifier, tmp_path):
    report = json.loads(run_cli("evaluate", "generate", "-m", toy_generator, "--input",
                                TOY / "sentiment.tsv", "--judge", toy_classifier,
                                "--train", TOY / "sentiment.tsv", "--samples", "10",
                                "--format", "json").output)
    assert report["perplexity"] < report["perplexity_wrong_class"]
    s = report["samples"]
    assert 0 <= s["class_consistency"] <= 1 and 0 < s["distinct_2"] <= 1
    # Bits per character agree with the perplexity: the same NLL over characters, not pieces.
    assert 0 < report["bits_per_character"] < math.log2(report["perplexity"])
    assert 0 <= s["non_word_rate"] <= s["sentences_with_non_word"] <= 1
    assert "corpora/" in s["reference_vocabulary"]
    wordlist = tmp_path / "words.txt"
    wordlist.write_text("nothing\n")
    only_one_word = json.loads(run_cli(
        "evaluate", "generate", "-m", toy_generator, "--input", TOY / "sentiment.tsv",
        "--judge", toy_classifier, "--samples", "10", "--wordlist", wordlist, "--format",
        "json").output)
    assert only_one_word["samples"]["non_word_rate"] == 1.0
    assert only_one_word["samples"]["reference_vocabulary"] == f"{wordlist} (1 words)"



def test_discriminative_training_from_the_command_line(tmp_path, toy_classifier):
    """`--discriminative-weight` is stored in the model, the dev perplexity it is selected on
    stays the likelihood's, and the trained generator classifies its own training text by
    Bayes' rule."""
    from conftest import TINY_GENERATE

    from seqtool.checkpoint import Checkpoint

    out = tmp_path / "gedi.pt"
    data = TOY / "sentiment.tsv"
    run_cli("train", "generate", "--train", data, "--dev", data, "--out", out,
            "--discriminative-weight", "1", "--seed", "3", *TINY_GENERATE)
    assert Checkpoint.load(out).model_config["discriminative_weight"] == 1.0
    report = json.loads(run_cli("evaluate", "generate", "-m", out, "--input", data, "--judge",
                                toy_classifier, "--samples", "4", "--format", "json").output)
    assert report["bayes_accuracy"] == 1.0
    assert report["perplexity"] < report["perplexity_wrong_class"]
