"""Small training sets (issue 30): what `seqtool train classify` learns from a few hundred
examples, or thirty, with its defaults, beside fastText on the same sets.

The sets are made here, deterministically, from the corpora: training lines from the TRAIN
splits, dev lines (for choosing) from the DEV splits, test lines from the TEST splits, each
drawn by its own seeded generator, classes balanced where the set says so.

    pip install fasttext-numpy2       # the peer only, not a project dependency
    python benchmarks/small_data.py --select NAME="OPTIONS" ...   # dev only: compare options
    python benchmarks/small_data.py                                # the defaults, test read once

--select trains seqtool with each variant's options on every set and writes
results/small-data-selection.{md,json} (dev accuracy only; test is never read). The default
run trains seqtool with no option but --train --dev --out, the previous defaults (`--init none
--warmup-steps 100`) and fastText (settings chosen on each set's dev from a small grid), reads
each set's test once and writes results/small-data.{md,json}. Every seqtool run is a fresh
`python -m seqtool.cli` process on one thread (OMP_NUM_THREADS=1), one at a time.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import ROOT, output_options, record, table, use_output

BROWN = ROOT / "corpora" / "generation" / "brown"
SENTIMENT = ROOT / "corpora" / "sentiment" / "movie-snippets"


@dataclass(frozen=True)
class SmallSet:
    """A small labelled set: `train` lines per label from the corpus's train split (or in all,
    when `balanced` is False), `held_out` lines per label (or in all) from dev and from test."""

    name: str
    corpus: Path
    labels: tuple[str, ...]  # () = every label of the corpus
    train: int
    held_out: int
    seed: int
    balanced: bool = True

    def lines(self, split: str) -> list[tuple[str, str]]:
        with open(self.corpus / f"{split}.tsv", encoding="utf-8") as f:
            pairs = [tuple(line.rstrip("\n").split("\t", 1)) for line in f]
        if self.labels:
            pairs = [p for p in pairs if p[0] in self.labels]
        count = self.train if split == "train" else self.held_out
        # One generator per set and split: adding a set never changes another's lines.
        rng = random.Random(f"{self.name}:{self.seed}:{split}")
        if not self.balanced:
            return rng.sample(pairs, count)
        drawn = []
        for label in sorted({p[0] for p in pairs}):
            drawn += rng.sample([p for p in pairs if p[0] == label], count)
        rng.shuffle(drawn)
        return drawn

    def write(self, folder: Path) -> Path:
        """train.tsv, dev.tsv and test.tsv of this set under folder/NAME."""
        out = folder / self.name
        out.mkdir(parents=True, exist_ok=True)
        for split in ("train", "dev", "test"):
            (out / f"{split}.tsv").write_text(
                "".join(f"{label}\t{text}\n" for label, text in self.lines(split)),
                encoding="utf-8")
        return out


GENRES_A = ("learned", "news", "romance")
GENRES_B = ("adventure", "government", "religion")
GENRES_C = ("fiction", "hobbies", "reviews")
SETS = (
    # the example: 3 genres x 100 training sentences, 90 dev and 90 test sentences
    SmallSet("brown3-a", BROWN, GENRES_A, 100, 30, 1),
    SmallSet("brown3-b", BROWN, GENRES_B, 100, 30, 1),
    SmallSet("brown3-c", BROWN, GENRES_C, 100, 30, 1),
    SmallSet("sentiment300-1", SENTIMENT, (), 300, 200, 1, balanced=False),
    SmallSet("sentiment300-2", SENTIMENT, (), 300, 200, 2, balanced=False),
    # thirty lines of three classes
    SmallSet("brown3x10-a", BROWN, GENRES_A, 10, 30, 1),
    SmallSet("brown3x10-b", BROWN, GENRES_B, 10, 30, 1),
)


# ----------------------------------------------------------------------------- seqtool


def train_seqtool(data: Path, options: str, out: Path) -> dict:
    """`seqtool train classify --train --dev --out` plus `options`, in a fresh process on one
    thread; its dev accuracy, steps, seconds and the warnings it printed."""
    args = ["train", "classify", "--train", str(data / "train.tsv"), "--dev",
            str(data / "dev.tsv"), "--out", str(out), *shlex.split(options)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "seqtool.cli", *args], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if run.returncode != 0:
        raise SystemExit(f"seqtool failed on {data.name} ({options}):\n{run.stderr}")
    done = [line for line in run.stderr.splitlines() if line.startswith("done:")]
    steps = int(re.search(r"after (\d+) steps", done[-1]).group(1)) if done else None
    dev = float(re.search(r"dev accuracy ([\d.]+)", done[-1]).group(1)) if done else None
    warnings = [line for line in run.stderr.splitlines() if line.startswith("Warning:")]
    command = "seqtool " + " ".join(args).replace(str(data), "SET").replace(str(out), "M.pt")
    return {"dev": dev, "steps": steps, "seconds": round(seconds, 1), "warnings": warnings,
            "command": command}


def test_accuracy(model: Path, data: Path) -> float:
    report = subprocess.run(
        [sys.executable, "-m", "seqtool.cli", "evaluate", "classify", "-m", str(model),
         "--input", str(data / "test.tsv"), "--format", "json"], cwd=ROOT, check=True,
        capture_output=True, text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"}).stdout
    return json.loads(report)["accuracy"]


# ----------------------------------------------------------------------------- fastText


def fasttext_normalize(text: str) -> str:
    r"""fastText's tutorial preprocessing: punctuation split off, lower-cased."""
    return re.sub(r"([.!?,'/()])", r" \1 ", text).lower()


# fastText's defaults for supervised training are epoch 5, lr 0.1, wordNgrams 1, dim 100; its
# tutorial raises epoch (25), lr (1.0) and wordNgrams (2). Small sets need more epochs still.
FASTTEXT_GRID = {"epoch": [5, 25, 50, 100], "lr": [0.1, 0.5, 1.0], "wordNgrams": [1, 2],
                 "dim": [50, 100]}


def read(data: Path, split: str) -> list[tuple[str, str]]:
    with open(data / f"{split}.tsv", encoding="utf-8") as f:
        return [tuple(line.rstrip("\n").split("\t", 1)) for line in f]


def fasttext_accuracy(model, pairs: list[tuple[str, str]]) -> float:
    labels, _ = model.predict([fasttext_normalize(text) for _, text in pairs], k=1)
    return sum(ls[0] == f"__label__{gold}" for ls, (gold, _) in zip(labels, pairs)) / len(pairs)


def fasttext_peer(data: Path, workdir: Path, read_test: bool) -> dict:
    """fastText with the grid's settings that score best on dev (one thread, seed 1, the
    training lines shuffled: fastText does not shuffle them itself)."""
    import fasttext

    lines = [f"__label__{label} {fasttext_normalize(text)}\n"
             for label, text in read(data, "train")]
    random.Random(1).shuffle(lines)
    path = workdir / f"{data.name}.ft"
    path.write_text("".join(lines), encoding="utf-8")
    dev = read(data, "dev")
    best: tuple[float, dict] | None = None
    for values in itertools.product(*FASTTEXT_GRID.values()):
        settings = dict(zip(FASTTEXT_GRID, values))
        try:
            model = fasttext.train_supervised(str(path), seed=1, thread=1, verbose=0,
                                              **settings)
        except RuntimeError:  # "Encountered NaN": this rate diverges here
            continue
        score = fasttext_accuracy(model, dev)
        if best is None or score > best[0]:
            best = (score, settings)
    assert best is not None
    result = {"dev": best[0], "settings": best[1]}
    if read_test:
        model = fasttext.train_supervised(str(path), seed=1, thread=1, verbose=0, **best[1])
        result["test"] = fasttext_accuracy(model, read(data, "test"))
    return result


# ----------------------------------------------------------------------------- tables


def majority(data: Path, split: str) -> float:
    """Accuracy of always answering the training set's most frequent label."""
    train = [label for label, _ in read(data, "train")]
    top = max(sorted(set(train)), key=train.count)
    pairs = read(data, split)
    return sum(label == top for label, _ in pairs) / len(pairs)


def select(variants: list[tuple[str, str]], workdir: Path, note: str = "") -> None:
    """Dev accuracy of each variant on every set. Each run is kept in WORKDIR/runs.jsonl, by
    set and options, so that a selection stopped half way goes on where it stopped."""
    rows, runs = [], []
    folders = {s.name: s.write(workdir / "sets") for s in SETS}
    kept = workdir / "runs.jsonl"
    done = {}
    if kept.exists():
        for line in kept.read_text().splitlines():
            run = json.loads(line)
            done[run["set"], run["options"]] = run
    for name, options in variants:
        scores = []
        for small in SETS:
            run = done.get((small.name, options))
            if run is None:
                run = {"set": small.name, "options": options,
                       **train_seqtool(folders[small.name], options, workdir / "m.pt")}
                with kept.open("a") as f:
                    f.write(json.dumps(run) + "\n")
            print(f"{name} {small.name}: dev {run['dev']} steps {run['steps']} "
                  f"{run['seconds']}s {run['warnings']}", flush=True)
            runs.append({"variant": name, **run})
            scores.append(run["dev"])
        rows.append([name, *scores, statistics.mean(scores)])
    chance = ["majority class", *[majority(folders[s.name], "dev") for s in SETS], None]
    headers = ["variant (dev accuracy)", *[s.name for s in SETS], "mean"]
    markdown = table(headers, [*rows, chance])
    best = max(rows, key=lambda row: row[-1])
    markdown += (f"\n\nBest mean dev accuracy: {best[0]} ({best[-1]:.4f}). Dev accuracy only "
                 "(test is never read here); one run per set (seed 0, one thread). Options of "
                 "each variant besides --train --dev --out:\n\n"
                 + "\n".join(f"- {name}: `{options or '(none)'}`" for name, options in variants)
                 + (f"\n\n{note}" if note else ""))
    record("small-data-selection", {"variants": dict(variants), "runs": runs,
                                    "sets": [s.name for s in SETS]}, markdown)


# What the final table compares: seqtool's defaults (no option; and two other seeds, as small
# sets vary from seed to seed) and the defaults before issue 30 (no pretrained start, 100
# warm-up steps). The start from scratch with the new warm-up is in
# the selection (dev only).
FINAL = (("seqtool defaults", ""), ("defaults --seed 1", "--seed 1"),
         ("defaults --seed 2", "--seed 2"),
         ("previous defaults", "--init none --warmup-steps 100"))


def final(workdir: Path, only: list[str] | None = None) -> None:
    """Each FINAL row and fastText on every set, test read once. Each run is kept in
    WORKDIR/final.jsonl (seqtool's by options and default start), so that the rows can be run
    apart (`only`: these rows, no table) and a stopped run goes on."""
    from importlib.metadata import version as package_version

    version = package_version("fasttext-numpy2")
    start = subprocess.run(  # this tree's default start, not an installed seqtool's
        [sys.executable, "-c", "from seqtool.training.pretrained import DEFAULT_INIT; "
         "print(DEFAULT_INIT['classify'])"], cwd=ROOT, check=True, capture_output=True,
        text=True).stdout.strip()
    rows, runs = [], []
    folders = {s.name: s.write(workdir / "sets") for s in SETS}
    kept = workdir / "final.jsonl"
    done = {}
    if kept.exists():
        for line in kept.read_text().splitlines():
            run = json.loads(line)
            done[run["set"], run["key"]] = run
    means: dict[str, list[float]] = {}
    for small in SETS:
        data = folders[small.name]
        row = [small.name, majority(data, "test")]
        for name, options in [*FINAL, ("fastText", None)]:
            if only and name not in only:
                continue
            key = ("fastText" if options is None else options if "--init" in options
                   else f"{options} | {start}")
            run = done.get((small.name, key))
            if run is None:
                if options is None:
                    run = fasttext_peer(data, workdir, read_test=True)
                else:
                    model = workdir / f"{small.name}.pt"
                    run = train_seqtool(data, options, model)
                    run["test"] = test_accuracy(model, data)
                run = {"set": small.name, "key": key, "variant": name, **run}
                with kept.open("a") as f:
                    f.write(json.dumps(run) + "\n")
            print(f"{name} {small.name}: {run}", flush=True)
            runs.append(run)
            row.append(f"{run['test']:.3f} ({run['dev']:.3f})")
            means.setdefault(name, []).append(run["test"])
        rows.append(row)
    if only:
        return
    rows.append(["mean", statistics.mean(r[1] for r in rows),
                 *[f"{statistics.mean(v):.3f}" for v in means.values()]])
    headers = ["set", "majority class", *[name for name, _ in FINAL], "fastText"]
    sizes = "\n".join(
        f"- {s.name}: {s.train}{' per label' if s.balanced else ''} training lines from "
        f"{s.corpus.relative_to(ROOT)}/train.tsv"
        f"{' (' + ', '.join(s.labels) + ')' if s.labels else ''}, {s.held_out}"
        f"{' per label' if s.balanced else ''} dev and test lines from its dev and test splits"
        for s in SETS)
    markdown = table(headers, rows) + (
        "\n\nTest accuracy (dev accuracy in brackets), each set's test read once. seqtool: "
        "one run per set with no option but --train --dev --out besides those named "
        "(seed 0 unless named, one thread); previous defaults: no pretrained start and 100 "
        "warm-up steps. "
        f"fastText: fasttext-numpy2 {version}, its tutorial preprocessing, one "
        "thread, seed 1, the setting of the grid "
        f"{json.dumps(FASTTEXT_GRID)} best on the set's dev. Majority class: always the "
        "training set's most frequent label. The sets:\n\n" + sizes + "\n\nThe training "
        "lines of the Brown and movie-snippets train splits are part of the text the shipped "
        "language model was trained on (corpora/pretraining); dev and test lines never are.")
    sets = [s.__dict__ | {"corpus": str(s.corpus.relative_to(ROOT))} for s in SETS]
    record("small-data", {"fasttext": version, "sets": sets, "runs": runs}, markdown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--select", nargs="+", metavar="NAME=OPTIONS",
                        help="compare these seqtool options on dev")
    parser.add_argument("--workdir", type=Path, help="keep the sets, models and runs here")
    parser.add_argument("--note", default="", help="a paragraph under the selection table")
    parser.add_argument("--only", nargs="+", metavar="ROW",
                        help="run only these rows of the final table (no table)")
    output_options(parser)
    args = parser.parse_args()
    use_output(args)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = args.workdir or Path(tmp)
        if args.select:
            select([tuple(v.split("=", 1)) if "=" in v else (v, "") for v in args.select],
                   workdir, args.note)
        else:
            final(workdir, args.only)


if __name__ == "__main__":
    main()
