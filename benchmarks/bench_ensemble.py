"""Which S1 classifiers to combine (`seqtool ensemble`), chosen on dev; test read once.

Each group is a set of classifier checkpoints of one recipe (word vectors, a finetuned
language model, ...). Every non-empty union of groups is scored on dev as the combination
would score it (mean class distribution, each checkpoint weighted by its GRUs); the best one
(ties: fewer GRUs) is built with `seqtool ensemble`, checked on dev and read once on test.

With `--ood`, the shipped classifier is also chosen to hold up out of domain. Every union is
scored on the dev halves of the out-of-domain sets of `bench_ood.py` too (balanced accuracy,
mean over tweets, editorials and reviews). The unions within one standard error of the best
in-domain dev accuracy cannot be told apart in domain, so among them the best out of domain
is chosen ("one standard error rule", Hastie, Tibshirani & Friedman, ESL 7.10); ties: fewer
GRUs, then in-domain dev. The test halves are left for `bench_ood.py`.

    python benchmarks/bench_ensemble.py --group glove=a.pt --group lm=b1.pt,b2.pt,b3.pt \
        --out /tmp/combined.pt [--ood [--ood-cache DIR]]
"""

from __future__ import annotations

import argparse
import itertools
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from bench_ood import read_sets
from common import ROOT, output_options, progress, record, table, use_output

from seqtool.decoding.scoring import classify_outputs
from seqtool.inference.predict import load

DATA = ROOT / "corpora" / "sentiment" / "movie-snippets"


def class_scores(path: str, texts: list[str]) -> tuple[torch.Tensor, int, list[str]]:
    """Class probabilities on TEXTS, the number of GRUs, the labels."""
    loaded = load(path, "classify")
    model = loaded.model
    parts = getattr(model, "parts", [model])
    grus = sum(len(p.members) for p in parts)
    return classify_outputs(model, loaded.tokenizer, texts), grus, loaded.checkpoint.labels


def accuracy(probabilities: torch.Tensor, labels: list[str], gold: list[str]) -> float:
    predicted = [labels[i] for i in probabilities.argmax(1).tolist()]
    return sum(p == g for p, g in zip(predicted, gold, strict=True)) / len(gold)


def balanced_accuracy(probabilities: torch.Tensor, labels: list[str], gold: list[str]) -> float:
    """Mean recall over the classes present in GOLD (0.5 for any constant answer on two)."""
    predicted = [labels[i] for i in probabilities.argmax(1).tolist()]
    recalls = [sum(p == g == c for p, g in zip(predicted, gold, strict=True))
               / sum(g == c for g in gold) for c in sorted(set(gold))]
    return sum(recalls) / len(recalls)


def combined(probabilities: dict[str, torch.Tensor], grus: dict[str, int],
             paths: list[str]) -> torch.Tensor:
    """The combination's class distribution: each checkpoint weighted by its GRUs."""
    return sum(grus[p] * probabilities[p] for p in paths) / sum(grus[p] for p in paths)


def evaluate(model: Path, split: str) -> float:
    import seqtool

    return seqtool.evaluate("classify", DATA / f"{split}.tsv", model, device="cpu")["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--group", action="append", required=True,
                        help="NAME=A.pt[,B.pt...]: classifiers of one recipe")
    parser.add_argument("--out", type=Path, required=True, help="where to build the chosen one")
    parser.add_argument("--ood", action="store_true",
                        help="choose among the unions level in domain by out-of-domain dev")
    parser.add_argument("--ood-cache", type=Path,
                        default=Path(tempfile.gettempdir()) / "seqtool-ood",
                        help="where bench_ood.py keeps its download")
    output_options(parser)
    args = parser.parse_args()
    use_output(args)
    groups = {}
    for spec in args.group:
        name, _, paths = spec.partition("=")
        groups[name] = paths.split(",")
    rows = [line.rstrip("\n").split("\t", 1)
            for line in (DATA / "dev.tsv").read_text(encoding="utf-8").splitlines()]
    gold, texts = [r[0] for r in rows], [r[1] for r in rows]
    paths_all = [p for paths in groups.values() for p in paths]
    scores = {}
    for i, p in enumerate(paths_all):
        progress(f"dev scores of model {i + 1} of {len(paths_all)}: {p}")
        scores[p] = class_scores(p, texts)
    dev_probabilities = {p: s[0] for p, s in scores.items()}
    grus = {p: s[1] for p, s in scores.items()}
    ood = {}
    if args.ood:
        args.ood_cache.mkdir(parents=True, exist_ok=True)
        for name, rows in read_sets(args.ood_cache, "dev").items():
            ood[name] = ([r[0] for r in rows],
                         {p: class_scores(p, [r[1] for r in rows])[0] for p in paths_all})

    candidates = []
    progress(f"scoring {2 ** len(groups) - 1} unions of groups")
    for size in range(1, len(groups) + 1):
        for names in itertools.combinations(groups, size):
            paths = [p for n in names for p in groups[n]]
            labels = scores[paths[0]][2]
            candidate = {"groups": list(names), "paths": paths,
                         "grus": sum(grus[p] for p in paths),
                         "dev": accuracy(combined(dev_probabilities, grus, paths), labels, gold)}
            if ood:
                candidate["ood_dev"] = {
                    name: balanced_accuracy(combined(probs, grus, paths), labels, ood_gold)
                    for name, (ood_gold, probs) in ood.items()}
                candidate["ood_dev_mean"] = sum(candidate["ood_dev"].values()) / len(ood)
            candidates.append(candidate)
    best = max(c["dev"] for c in candidates)
    standard_error = math.sqrt(best * (1 - best) / len(gold))
    if ood:
        level = [c for c in candidates if c["dev"] >= best - standard_error]
        chosen = max(level, key=lambda c: (c["ood_dev_mean"], -c["grus"], c["dev"]))
    else:
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
        ["groups combined", "checkpoints", "GRUs", "dev accuracy",
         *(f"{name} dev (balanced)" for name in ood), *(["out-of-domain dev mean"] * bool(ood)),
         "chosen"],
        [[" + ".join(c["groups"]), len(c["paths"]), c["grus"], c["dev"],
          *c.get("ood_dev", {}).values(), *([c["ood_dev_mean"]] * bool(ood)),
          "yes" if c is chosen else ""] for c in candidates])
    rule = (f"among the unions within one standard error ({standard_error:.4f}) of the best "
            f"in-domain dev accuracy ({best:.4f}), the best mean balanced accuracy on the dev "
            "halves of the out-of-domain sets (ties: fewer GRUs, then in-domain dev)"
            if ood else "by dev accuracy (ties: fewer GRUs)")
    markdown += (
        "\n\nGroups: " + "; ".join(f"{n}: {', '.join(p)}" for n, p in groups.items())
        + f".\n\nChosen {rule}, {len(gold)} in-domain dev sentences: "
        f"{' + '.join(chosen['groups'])}, built as {built}: dev {chosen['dev_built']:.4f}, "
        f"test {chosen['test']:.4f} (test read for this one only).")
    record("classify-ensemble", {"groups": groups, "rule": rule, "candidates": candidates,
                                 "chosen": chosen}, markdown)


if __name__ == "__main__":
    main()
