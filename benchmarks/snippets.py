"""movie-snippets and the fastText peer on it: what bench_classify and classify_defaults
both use (a module of its own, so that neither imports the other)."""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

from common import ROOT

DATA = ROOT / "corpora" / "sentiment" / "movie-snippets"


def read_split(split: str) -> list[tuple[str, str]]:
    """(label, text) pairs of one split of movie-snippets."""
    with open(DATA / f"{split}.tsv", encoding="utf-8") as f:
        return [tuple(line.rstrip("\n").split("\t", 1)) for line in f]


def accuracy(predicted: list[str], pairs: list[tuple[str, str]]) -> float:
    return sum(p == label for p, (label, _) in zip(predicted, pairs)) / len(pairs)


def fasttext_normalize(text: str) -> str:
    r"""fastText's tutorial preprocessing: punctuation split off, lower-cased
    (sed -e "s/\([.\!?,'/()]\)/ \1 /g" | tr "[:upper:]" "[:lower:]")."""
    return re.sub(r"([.!?,'/()])", r" \1 ", text).lower()


def fasttext_train(settings: dict, seed: int, workdir: Path) -> tuple[object, float]:
    """fastText on a shuffled, preprocessed copy of train.tsv (it does not shuffle itself)."""
    import fasttext

    lines = [f"__label__{label} {fasttext_normalize(text)}\n"
             for label, text in read_split("train")]
    random.Random(seed).shuffle(lines)
    path = workdir / f"train-{seed}.ft"
    path.write_text("".join(lines), encoding="utf-8")
    start = time.perf_counter()
    model = fasttext.train_supervised(str(path), seed=seed, thread=1, verbose=0, **settings)
    return model, time.perf_counter() - start


def fasttext_predict(model, pairs: list[tuple[str, str]]) -> list[str]:
    labels, _ = model.predict([fasttext_normalize(text) for _, text in pairs], k=1)
    return [ls[0].removeprefix("__label__") for ls in labels]

