"""Which S1 classifiers to combine (`seqtool ensemble`), chosen on dev; test read once.

Each group is a set of classifier checkpoints of one recipe (word vectors, a finetuned
language model, ...). Every non-empty union of groups is scored on dev as the combination
would score it (mean class distribution, each checkpoint weighted by its GRUs); the best one
(ties: fewer GRUs) is built with `seqtool ensemble`, checked on dev and read once on test.

    python benchmarks/bench_ensemble.py --group glove=a.pt --group lm=b1.pt,b2.pt,b3.pt \
        --out /tmp/combined.pt
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from pathlib import Path

import torch
from common import ROOT, record, table

from seqtool.predict import classify_outputs, load

DATA = ROOT / "corpora" / "sentiment" / "movie-snippets"


def dev_scores(path: str, texts: list[str]) -> tuple[torch.Tensor, int, list[str]]:
    """Class probabilities on dev, the number of GRUs, the labels."""
    loaded = load(path, "classify")
    model = loaded.model
    parts = getattr(model, "parts", [model])
    grus = sum(len(p.members) for p in parts)
    return classify_outputs(model, loaded.tokenizer, texts), grus, loaded.checkpoint.labels


def accuracy(probabilities: torch.Tensor, labels: list[str], gold: list[str]) -> float:
    predicted = [labels[i] for i in probabilities.argmax(1).tolist()]
    return sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)


def evaluate(model: Path, split: str) -> float:
    report = subprocess.run(
        [sys.executable, "-m", "seqtool.cli", "evaluate", "classify", "-m", str(model), "-i",
         str(DATA / f"{split}.tsv"), "--format", "json"],
        check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(report)["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--group", action="append", required=True,
                        help="NAME=A.pt[,B.pt...]: classifiers of one recipe")
    parser.add_argument("--out", type=Path, required=True, help="where to build the chosen one")
    args = parser.parse_args()
    groups = {}
    for spec in args.group:
        name, _, paths = spec.partition("=")
        groups[name] = paths.split(",")
    rows = [line.rstrip("\n").split("\t", 1)
            for line in (DATA / "dev.tsv").read_text(encoding="utf-8").splitlines()]
    gold, texts = [r[0] for r in rows], [r[1] for r in rows]
    scores = {p: dev_scores(p, texts) for paths in groups.values() for p in paths}

    candidates = []
    for size in range(1, len(groups) + 1):
        for names in itertools.combinations(groups, size):
            paths = [p for n in names for p in groups[n]]
            grus = sum(scores[p][1] for p in paths)
            mean = sum(scores[p][1] * scores[p][0] for p in paths) / grus
            candidates.append({"groups": list(names), "paths": paths, "grus": grus,
                               "dev": accuracy(mean, scores[paths[0]][2], gold)})
    chosen = max(candidates, key=lambda c: (c["dev"], -c["grus"]))

    if len(chosen["paths"]) > 1:
        subprocess.run([sys.executable, "-m", "seqtool.cli", "ensemble", *chosen["paths"],
                        "-o", str(args.out), "--half-checkpoint"], check=True, cwd=ROOT)
        built = args.out
    else:
        built = Path(chosen["paths"][0])
    chosen["built"] = str(built)
    chosen["dev_built"] = evaluate(built, "dev")  # fp16 weights may move a sentence or two
    chosen["test"] = evaluate(built, "test")
    markdown = table(
        ["groups combined", "checkpoints", "GRUs", "dev accuracy", "chosen"],
        [[" + ".join(c["groups"]), len(c["paths"]), c["grus"], c["dev"],
          "yes" if c is chosen else ""] for c in candidates])
    markdown += (
        "\n\nGroups: " + "; ".join(f"{n}: {', '.join(p)}" for n, p in groups.items())
        + f".\n\nChosen by dev accuracy ({len(gold)} sentences; ties: fewer GRUs): "
        f"{' + '.join(chosen['groups'])}, built as {built}: dev {chosen['dev_built']:.4f}, "
        f"test {chosen['test']:.4f} (test read for this one only).")
    record("classify-ensemble", {"groups": groups, "candidates": candidates,
                                 "chosen": chosen}, markdown)


if __name__ == "__main__":
    main()
