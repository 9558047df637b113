"""Closed-vocabulary sampling (`generate --lexicon`): random models sample only lexicon words."""

from __future__ import annotations

import math
import random
from types import SimpleNamespace

import pytest
import torch
from conftest import TOY, run_cli, run_seqtool, small_generator

from seqtool.checkpoint import Checkpoint
from seqtool.decoding.lexicon import Lexicon, words_of
from seqtool.decoding.sampling import sample
from seqtool.inference.predict import Loaded, generate, lexicon_for
from seqtool.metrics import non_word_rates
from seqtool.text.data import read_labeled
from seqtool.text.tokenizer import END, Tokenizer
from seqtool.words import is_known, words

TEXTS = [r.text for r in read_labeled(TOY / "sentiment.tsv")]


@pytest.fixture(scope="module")
def tokenizer() -> Tokenizer:
    # Few whole-word pieces: most words are spelled from letters, so a random model invents
    # words all the time (the case the lexicon is for).
    return Tokenizer.train(TEXTS, vocab_size=40)


@pytest.fixture(scope="module")
def lexicon(tokenizer) -> Lexicon:
    # Only words the toy vocabulary can spell (it has no apostrophe): a prefix that cannot be
    # completed leaves no allowed piece, and such a row samples freely.
    return Lexicon(words_of(TEXTS), tokenizer)


def random_loaded(tokenizer, seed: int) -> Loaded:
    model = small_generator(seed, num_classes=2, vocab_size=tokenizer.vocab_size)
    checkpoint = SimpleNamespace(labels=["negative", "positive"])
    return Loaded(checkpoint, model, tokenizer, tokenizer)  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", range(4))
def test_random_models_sample_only_lexicon_words(tokenizer, lexicon, seed):
    """The property, on random models that spell gibberish without the lexicon (so the test
    can fail): every word of every sample is a lexicon word, with guidance, top-p and a prompt
    that ends inside a word."""
    loaded = random_loaded(tokenizer, seed)
    free = [r["text"] for r in generate(loaded, "positive", 40, seed=seed, max_tokens=25)]
    assert non_word_rates(free, lexicon.words)["non_word_rate"] > 0.2
    for options in ({}, {"guidance": 1.0, "top_p": 0.9}, {"temperature": 0.0},
                    {"prompt": "my ca"}):
        out = generate(loaded, "positive", 40, seed=seed, max_tokens=25, lexicon=lexicon,
                       **options)
        for r in out:
            ended = r["tokens"] < 25  # a sample cut at the length limit may end mid-word
            found = words(r["text"])
            assert all(lexicon.known(w) for w in (found if ended else found[:-1])), r["text"]


def test_the_mask_equals_stepping_each_piece(tokenizer, lexicon):
    """`allowed` (fast paths by kind of piece) agrees with `step` piece by piece, for every
    prefix of the lexicon's words and for tails that are no prefix."""
    tails = sorted(lexicon.prefixes) + ["dog'", "dog's", "cats'", "zz", "o'cl"]
    for tail in tails:
        mask = lexicon.allowed(tail)
        for piece, text in enumerate(lexicon.texts):
            if piece <= 2:  # <pad>, <unk>, <start>: never allowed through the lexicon path
                continue
            expected = lexicon.can_end(tail) if piece == END else \
                lexicon.step(tail, text) is not None
            assert bool(mask[piece]) == expected, (tail, text)


def test_step_follows_word_boundaries_and_apostrophes(tokenizer):
    lex = Lexicon({"dog", "dogs", "cat", "o'clock"}, tokenizer)
    assert lex.step("do", "g") == "dog"
    assert lex.step("dog", "s ") == ""
    assert lex.step("dog", " ca") == "ca"
    assert lex.step("do", " ") is None  # "do" is no word
    assert lex.step("", " dox") is None  # no word starts "dox"
    assert lex.step("dog", "'") == "dog'"
    assert lex.step("dog'", "s") == "dog's"  # a clitic after a known word
    assert lex.step("dog'", " ") == ""  # "dogs'" style: the word ends before the apostrophe
    assert lex.step("o'", "clo") == "o'clo"  # a lexicon word with an apostrophe
    assert lex.step("cat", ", dogs.") == ""
    assert lex.step("cat", ", dgs.") is None
    assert lex.can_end("dog's") and not lex.can_end("dog'x") and not lex.can_end("ca")
    assert lex.tail_of("The ca") == "ca" and lex.tail_of("The cat ") == ""
    assert lex.tail_of("the dog'") == "dog'"
    assert is_known("dog's", lex.words) and not is_known("dogx", lex.words)


def test_lexicon_comes_from_the_checkpoint_none_or_a_file(tokenizer, tmp_path):
    loaded = random_loaded(tokenizer, 0)
    loaded.checkpoint.meta = {"lexicon": ["cat", "dog"]}
    assert lexicon_for(loaded).words == {"cat", "dog"}
    assert lexicon_for(loaded, "none") is None
    listed = tmp_path / "words.txt"
    listed.write_text("Rain\nwater's\n")
    assert lexicon_for(loaded, str(listed)).words == {"rain", "water's"}
    loaded.checkpoint.meta = {}
    assert lexicon_for(loaded) is None  # a model that stores no words: no limit


def test_a_row_with_no_allowed_piece_samples_freely(tokenizer):
    """A lexicon whose words the vocabulary cannot spell leaves no piece allowed inside a
    word; the row then samples from the model rather than from nothing (no NaN, no crash).

    The prompt ends inside a word ("ca"), so the first step has no allowed piece (without
    a prompt every row starts at a word boundary, where <end> and spaces are always allowed,
    and the fallback would never run): that step must draw what free sampling draws."""
    lex = Lexicon({"qqqq"}, tokenizer)
    prompt = tokenizer.encode("my ca")
    tail = lex.tail_of("".join(lex.texts[i] for i in prompt))
    assert tail == "ca" and not lex.allowed(tail).any()  # the case under test is reached
    model = random_loaded(tokenizer, 1).model
    labels = torch.tensor([0, 1] * 10)
    with torch.no_grad():
        free, held = (sample(model, labels, prompt, 4, temperature=1.0, lexicon=lexicon,
                             generator=0)
                      for lexicon in (None, lex))
    assert len({tuple(h.tokens[:1]) for h in free}) > 3  # free draws vary
    assert [h.tokens[:1] for h in held] == [h.tokens[:1] for h in free]
    for h in held:
        assert math.isfinite(h.score)
        tail = lex.advance("ca", h.tokens[0]) if h.tokens else ""
        for piece in h.tokens[1:]:  # back at a word boundary, the lexicon holds again
            assert lex.allowed(tail)[piece], h.tokens
            tail = lex.advance(tail, piece)
    loaded = random_loaded(tokenizer, 1)
    out = generate(loaded, "negative", 5, seed=0, max_tokens=10, lexicon=lex, prompt="my ca")
    assert len(out) == 5 and all(r["text"].startswith("my ca") for r in out)


def test_trained_generators_store_their_training_words(toy_generator):
    meta = Checkpoint.load(toy_generator).meta
    assert meta["lexicon"] == sorted(words_of(TEXTS))


def test_generate_uses_the_stored_lexicon_and_refuses_a_missing_file(toy_generator, tmp_path):
    """A random-ish sampler (temperature 3) over the toy generator invents words unless the
    lexicon holds it to the training words."""
    def texts(*options: str) -> list[str]:
        out = run_cli("generate", "-m", toy_generator, "--label", "positive", "-n", "60",
                      "--temperature", "3", "--seed", "2", *options).output
        return out.splitlines()

    known = set(words_of(TEXTS))
    assert non_word_rates(texts("--lexicon", "none"), known)["non_word_rate"] > 0.05
    assert non_word_rates(texts(), known)["non_word_rate"] == 0.0
    result = run_seqtool("generate", "-m", toy_generator, "--label", "positive",
                         "--lexicon", tmp_path / "missing.txt")
    assert result.returncode != 0 and "missing.txt" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_masks_are_built_once_per_tail(tokenizer):
    """Every tail's mask is built once and cached (the same tensor comes back)."""
    lex = Lexicon(words_of(TEXTS), tokenizer)
    tail = random.Random(0).choice(sorted(lex.prefixes))
    assert lex.allowed(tail) is lex.allowed(tail)
    assert lex.allowed(tail).dtype == bool


def test_info_counts_the_lexicon_rather_than_printing_it(toy_generator):
    import json

    summary = json.loads(run_cli("info", toy_generator, "--format", "json").output)
    assert summary["lexicon"] == f"{len(words_of(TEXTS))} words"
