"""Scores that judge generated text: non-words and bits per character."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seqtool.metrics import bits_per_character, non_word_rates
from seqtool.words import words

VOCABULARY = {"the", "film", "is", "a", "delight", "it", "s", "didn"}


def test_words_are_lowercased_letter_runs_with_inner_apostrophes():
    assert words("The film's DELIGHT -- 21st, don't!") == ["the", "film's", "delight", "st",
                                                           "don't"]


def test_non_word_rates_count_words_and_sentences():
    rates = non_word_rates(["The film is a delight.", "the flim is a delihgt", "It's a film"],
                           VOCABULARY)
    assert rates["non_word_rate"] == pytest.approx(2 / 13)
    assert rates["sentences_with_non_word"] == pytest.approx(1 / 3)


def test_contractions_of_known_words_are_words():
    assert non_word_rates(["the film's", "didn't", "delight'd"], VOCABULARY) == {
        "non_word_rate": 0.0, "sentences_with_non_word": 0.0}
    assert non_word_rates(["flim's"], VOCABULARY)["non_word_rate"] == 1.0


@given(st.lists(st.sampled_from(sorted(VOCABULARY) + ["xq", "zzz"]), min_size=1, max_size=12))
def test_rates_are_shares(tokens):
    rates = non_word_rates([" ".join(tokens)], VOCABULARY)
    unknown = sum(t not in VOCABULARY for t in tokens)
    assert rates["non_word_rate"] == pytest.approx(unknown / len(tokens))
    assert rates["sentences_with_non_word"] == (1.0 if unknown else 0.0)


def test_bits_per_character_counts_the_end_of_each_text():
    # A uniform choice among 2 characters costs 1 bit each: 3 texts of 4 characters, + 3 ends.
    texts = ["abab", "baba", "aabb"]
    assert bits_per_character(15 * math.log(2), texts) == pytest.approx(1.0)
    assert math.isnan(bits_per_character(0.0, []))
