"""Scores: classification report, perplexity, diversity, BLEU and chrF (through sacrebleu)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from seqtool.words import is_known, words


def classification_report(gold: Sequence[str], predicted: Sequence[str], labels: Sequence[str]):
    """Accuracy, macro-F1, per-class precision/recall/F1 and a confusion matrix (gold x pred).

    Macro-F1 averages the classes that occur in the data or in the predictions (as
    scikit-learn's does); a class in neither has no precision, recall or F1 (None), rather
    than a 0 that the average leaves out."""
    index = {label: i for i, label in enumerate(labels)}
    confusion = [[0] * len(labels) for _ in labels]
    for g, p in zip(gold, predicted, strict=True):
        confusion[index[g]][index[p]] += 1
    per_class: dict[str, dict[str, float]] = {}
    for i, label in enumerate(labels):
        tp = confusion[i][i]
        predicted_i = sum(row[i] for row in confusion)
        gold_i = sum(confusion[i])
        if not predicted_i and not gold_i:
            per_class[label] = {"precision": None, "recall": None, "f1": None, "support": 0}
            continue
        precision = tp / predicted_i if predicted_i else 0.0
        recall = tp / gold_i if gold_i else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {"precision": precision, "recall": recall, "f1": f1, "support": gold_i}
    present = [label for label in labels if per_class[label]["f1"] is not None]
    total = len(gold)
    return {
        "accuracy": sum(confusion[i][i] for i in range(len(labels))) / total if total else 0.0,
        "macro_f1": sum(per_class[c]["f1"] for c in present) / len(present) if present else 0.0,
        "macro_f1_classes": len(present),
        "examples": total,
        "per_class": per_class,
        "labels": list(labels),
        "confusion": confusion,
    }


def perplexity(total_nll: float, tokens: int) -> float:
    return math.exp(total_nll / tokens) if tokens else float("nan")


def distinct_n(texts: Iterable[Sequence[str]], n: int) -> float:
    """Distinct n-grams over all n-grams in a set of tokenized samples (Li et al., 2016)."""
    total, seen = 0, set()
    for tokens in texts:
        grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
        total += len(grams)
        seen.update(grams)
    return len(seen) / total if total else 0.0


def non_word_rates(texts: Sequence[str], vocabulary: set[str]) -> dict[str, float]:
    """How often generated text leaves a reference vocabulary: the share of words found in no
    reference ("cudly", "refreshs") and the share of texts holding at least one (`is_known`)."""
    unknown_words = total_words = texts_with_unknown = 0
    for text in texts:
        found = [is_known(w, vocabulary) for w in words(text)]
        total_words += len(found)
        unknown_words += found.count(False)
        texts_with_unknown += not all(found)
    return {
        "non_word_rate": unknown_words / total_words if total_words else 0.0,
        "sentences_with_non_word": texts_with_unknown / len(texts) if texts else 0.0,
    }


def bits_per_character(total_nll_nats: float, texts: Sequence[str]) -> float:
    """Negative log-likelihood in bits per character, counting one character per text for its
    end (the newline). Unlike perplexity per piece it compares models across tokenizers."""
    characters = sum(len(t) + 1 for t in texts)
    return total_nll_nats / math.log(2) / characters if characters else float("nan")


def corpus_scores(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, Any]:
    """Corpus BLEU and chrF on detokenized text, with sacrebleu's signatures."""
    from sacrebleu.metrics import BLEU, CHRF

    bleu, chrf = BLEU(), CHRF()
    b = bleu.corpus_score(list(hypotheses), [list(references)])
    c = chrf.corpus_score(list(hypotheses), [list(references)])
    return {
        "bleu": b.score,
        "chrf": c.score,
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }
