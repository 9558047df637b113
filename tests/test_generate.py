"""S2: the toy generator reproduces its classes' sentences and follows prompts."""

from __future__ import annotations

import json

from conftest import TOY, run_cli, run_seqtool

from seqtool.data import read_labeled

SENTENCES = {}
for r in read_labeled(TOY / "sentiment.tsv"):
    SENTENCES.setdefault(r.label, set()).add(r.text)


def test_greedy_generation_gives_a_training_sentence_of_the_class(toy_generator):
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


def test_guidance_sharpens_the_class(toy_generator):
    """With guidance the model avoids what both classes share: the positive class's
    greedy sentence moves away from the words it has in common with the negative ones."""
    plain = run_cli("generate", "-m", toy_generator, "-l", "positive", "-t", "0",
                    "--guidance", "0", "-n", "1").output
    guided = run_cli("generate", "-m", toy_generator, "-l", "positive", "-t", "0",
                     "--guidance", "3", "-n", "1").output
    assert plain != guided


def test_top_k_one_is_greedy(toy_generator):
    greedy = run_cli("generate", "-m", toy_generator, "-l", "negative", "-t", "0").output
    top1 = run_cli("generate", "-m", toy_generator, "-l", "negative", "-t", "1",
                   "--top-k", "1").output
    assert greedy == top1


def test_unknown_label_lists_known_labels(toy_generator):
    p = run_seqtool("generate", "-m", toy_generator, "--label", "neutral")
    assert p.returncode == 1
    assert "unknown label 'neutral' (known: negative, positive)" in p.stderr


def test_wrong_class_perplexity_is_higher(toy_generator, toy_classifier):
    report = json.loads(run_cli("evaluate", "generate", "-m", toy_generator, "--data",
                                TOY / "sentiment.tsv", "--judge", toy_classifier,
                                "--train", TOY / "sentiment.tsv", "--samples", "10",
                                "--json").output)
    assert report["perplexity"] < report["perplexity_wrong_class"]
    s = report["samples"]
    assert 0 <= s["class_consistency"] <= 1 and 0 < s["distinct_2"] <= 1
