"""Small training sets (issue 30): what `seqtool train classify` learns from a few hundred
examples, or thirty, with its defaults, beside fastText on the same sets.

The sets are made here, deterministically, from the corpora: training lines from the TRAIN
splits, dev lines (for choosing) from the DEV splits, test lines from the TEST splits, each
drawn by its own seeded generator, classes balanced where the set says so.

    pip install fasttext-numpy2       # the peer only, not a project dependency
    python benchmarks/small_data.py --select NAME="OPTIONS" ...   # dev only: compare options
    python benchmarks/small_data.py --curve                        # dev only: more examples
    python benchmarks/small_data.py                                # the defaults, test read once

--select trains seqtool with each variant's options on the SELECTION sets (the issue's example,
3 Brown genres x 100 training sentences, for ten genre triples) and scores each model on the
set's `check` lines: DEV-split sentences the run never saw, since a run's own best dev accuracy
is the largest of its evaluations and flatters it. It writes results/small-data-selection.md
(test is never read). --curve trains the defaults on 100, 300 and 1,000 sentences per genre of
the first three triples, scored the same way: how far more labelled data would go. The default
run trains seqtool with no option but --train --dev --out, the previous defaults (`--init none
--warmup-steps 100`) and fastText (settings chosen on each set's dev from a small grid), reads
each set's test once and writes results/small-data.{md,json}. Every seqtool run is a fresh
`python -m seqtool.cli` process on one thread (OMP_NUM_THREADS=1); --jobs N runs N at once.
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

from common import ROOT, output_options, progress, record, table, use_output

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


# Brown's genres with enough DEV sentences for 90 per genre (humor has 92 in all).
BROWN_GENRES = ("adventure", "belles_lettres", "editorial", "fiction", "government", "hobbies",
                "learned", "lore", "mystery", "news", "religion", "reviews", "romance",
                "science_fiction")
GENRES_A = ("learned", "news", "romance")
GENRES_B = ("adventure", "government", "religion")
GENRES_C = ("fiction", "hobbies", "reviews")


def genre_triples(count: int) -> list[tuple[str, ...]]:
    """GENRES_A, _B and _C, then other triples of BROWN_GENRES drawn by a seeded generator."""
    triples = [GENRES_A, GENRES_B, GENRES_C]
    rng = random.Random("explore")
    while len(triples) < count:
        triple = tuple(sorted(rng.sample(BROWN_GENRES, 3)))
        if triple not in triples:
            triples.append(triple)
    return triples


TRIPLES = genre_triples(10)
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
    # the example for the other genre triples of the selection
    *[SmallSet(f"brown3-{letter}", BROWN, triple, 100, 30, 1)
      for letter, triple in zip("defghij", TRIPLES[3:])],
)


@dataclass(frozen=True)
class SelectionSet:
    """The issue's example for choosing (dev only): `train` sentences per genre from Brown's
    TRAIN split, and 30 + `check` per genre from its DEV split: 30 as the run's --dev, the
    others (`check.tsv`) to score the run's model."""

    name: str
    genres: tuple[str, ...]
    train: int = 100
    check: int = 60

    def write(self, folder: Path, train: int | None = None) -> Path:
        """train.tsv, dev.tsv and check.tsv under folder/NAME (or NAME-TRAIN with another
        number of training sentences per genre: the same dev and check lines)."""
        count = train or self.train
        out = folder / (self.name if train is None else f"{self.name}-{count}")
        out.mkdir(parents=True, exist_ok=True)
        pools = {split: read(BROWN, split) for split in ("train", "dev")}
        rng = random.Random(self.name)  # one generator for the set, used in this order
        drawn: dict[str, list] = {"train": [], "dev": [], "check": []}
        for genre in self.genres:
            drawn["train"] += rng.sample([p for p in pools["train"] if p[0] == genre],
                                         self.train)
            held_out = rng.sample([p for p in pools["dev"] if p[0] == genre], 30 + self.check)
            drawn["dev"] += held_out[:30]
            drawn["check"] += held_out[30:]
        for pairs in drawn.values():
            rng.shuffle(pairs)
        if train is not None:  # more (or fewer) training sentences, drawn apart
            more = random.Random(f"{self.name}:{count}")
            drawn["train"] = [p for genre in self.genres for p in more.sample(
                [p for p in pools["train"] if p[0] == genre], count)]
            more.shuffle(drawn["train"])
        for split, pairs in drawn.items():
            (out / f"{split}.tsv").write_text(
                "".join(f"{label}\t{text}\n" for label, text in pairs), encoding="utf-8")
        return out


def selection_sets() -> list[SelectionSet]:
    """The issue's example for every genre triple of TRIPLES."""
    return [SelectionSet(f"s{i}", triple) for i, triple in enumerate(TRIPLES)]


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


def accuracy(model: Path, data: Path, split: str = "test") -> float:
    """The model's accuracy on data/SPLIT.tsv (`seqtool evaluate classify`)."""
    report = subprocess.run(
        [sys.executable, "-m", "seqtool.cli", "evaluate", "classify", "-m", str(model),
         "--input", str(data / f"{split}.tsv"), "--format", "json"], cwd=ROOT, check=True,
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
    """The (label, text) pairs of data/SPLIT.tsv."""
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
    best: tuple[float, dict, object] | None = None
    for values in itertools.product(*FASTTEXT_GRID.values()):
        settings = dict(zip(FASTTEXT_GRID, values))
        try:
            model = fasttext.train_supervised(str(path), seed=1, thread=1, verbose=0,
                                              **settings)
        except RuntimeError:  # "Encountered NaN": this rate diverges here
            continue
        score = fasttext_accuracy(model, dev)
        if best is None or score > best[0]:
            best = (score, settings, model)  # kept: a second training may diverge
    assert best is not None
    result = {"dev": best[0], "settings": best[1]}
    if read_test:
        result["test"] = fasttext_accuracy(best[2], read(data, "test"))
    return result


# ----------------------------------------------------------------------------- tables


def majority(data: Path, split: str) -> float:
    """Accuracy of always answering the training set's most frequent label."""
    train = [label for label, _ in read(data, "train")]
    top = max(sorted(set(train)), key=train.count)
    pairs = read(data, split)
    return sum(label == top for label, _ in pairs) / len(pairs)


def kept_runs(path: Path) -> dict[tuple[str, str], dict]:
    """The runs a stopped selection or curve already made, by set and options."""
    if not path.exists():
        return {}
    return {(r["set"], r["options"]): r for r in map(json.loads, path.read_text().splitlines())}


def check_runs(jobs: list[tuple[str, Path, str]], workdir: Path, workers: int) -> dict:
    """Train each (set name, set folder, options) job and score it on the set's check lines,
    `workers` at a time. Each run is kept in WORKDIR/runs.jsonl, by set and options, so that
    a selection stopped half way goes on where it stopped."""
    from concurrent.futures import ThreadPoolExecutor

    kept = workdir / "runs.jsonl"
    done = kept_runs(kept)
    todo = [job for job in jobs if (job[0], job[2]) not in done]

    def run(job: tuple[str, Path, str]) -> None:
        name, data, options = job
        model = workdir / "models" / f"{name}-{todo.index(job)}.pt"
        model.parent.mkdir(parents=True, exist_ok=True)
        result = {"set": name, "options": options, **train_seqtool(data, options, model)}
        result["check"] = accuracy(model, data, "check")
        model.unlink()
        with kept.open("a") as f:
            f.write(json.dumps(result) + "\n")
        done[name, options] = result
        progress(f"{name} {options or '(defaults)'}: check {result['check']:.4f}, "
                 f"{result['steps']} steps, {result['seconds']}s")

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, todo))
    return done


def select(variants: list[tuple[str, str]], workdir: Path, workers: int,
           note: str = "") -> None:
    """Check accuracy of each variant on every selection set, and its mean paired difference
    from the first variant (± its standard error over the sets)."""
    sets = selection_sets()
    folders = {s.name: s.write(workdir / "sets") for s in sets}
    done = check_runs([(s.name, folders[s.name], options) for _, options in variants
                       for s in sets], workdir, workers)
    base = [done[s.name, variants[0][1]]["check"] for s in sets]
    rows = []
    for name, options in variants:
        scores = [done[s.name, options]["check"] for s in sets]
        diffs = [a - b for a, b in zip(scores, base)]
        error = statistics.stdev(diffs) / len(diffs) ** 0.5
        rows.append([name, *[f"{x:.3f}" for x in scores], f"{statistics.mean(scores):.3f}",
                     f"{statistics.mean(diffs):+.3f} ± {error:.3f}"])
    headers = ["variant (check accuracy)", *[s.name for s in sets], "mean",
               f"vs {variants[0][0]}"]
    markdown = table(headers, rows) + (
        "\n\nAccuracy on each set's check lines (60 DEV-split sentences per genre that the run "
        "never saw; test is never read here); one run per set (seed 0, one thread); the last "
        "column: mean paired difference from the first row ± its standard error over the "
        "sets. The sets, 100 training sentences per genre:\n\n"
        + "\n".join(f"- {s.name}: {', '.join(s.genres)}" for s in sets)
        + "\n\nOptions of each variant besides --train --dev --out:\n\n"
        + "\n".join(f"- {name}: `{options or '(none)'}`" for name, options in variants)
        + (f"\n\n{note}" if note else ""))
    record("small-data-selection", {"variants": dict(variants), "sets": [
        s.__dict__ for s in sets], "runs": [done[s.name, o] for _, o in variants
                                            for s in sets]}, markdown)


CURVE = (100, 300, 1000)  # training sentences per genre


def curve(workdir: Path, workers: int) -> None:
    """The defaults on CURVE training sentences per genre of the first three selection sets,
    scored on the same check lines: how much more a user would get from more labels."""
    sets = selection_sets()[:3]
    jobs = [(f"{s.name}-{n}", s.write(workdir / "sets", n), "") for s in sets for n in CURVE]
    done = check_runs(jobs, workdir, workers)
    rows = [[f"{s.name} ({', '.join(s.genres)})",
             *[f"{done[f'{s.name}-{n}', '']['check']:.3f}" for n in CURVE]] for s in sets]
    markdown = table(["set (check accuracy)", *[f"{n} per genre" for n in CURVE]], rows) + (
        "\n\nseqtool's defaults (no option but --train --dev --out, seed 0, one thread) on "
        "more training sentences per genre, drawn from Brown's TRAIN split; the same 30 dev "
        "and 60 check sentences per genre as in small-data-selection.md.")
    record("small-data-curve", {"sizes": CURVE, "runs": list(done.values())}, markdown)


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
                    # one file per set and row: rows may run in parallel (--only)
                    model = workdir / f"{small.name}-{name.replace(' ', '-')}.pt"
                    run = train_seqtool(data, options, model)
                    run["test"] = accuracy(model, data)
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
    # the example (3 genres x 100 sentences) over every genre triple
    example = [i for i, s in enumerate(SETS) if s.corpus == BROWN and s.train == 100]
    rows.append([f"mean of the {len(example)} brown3 sets",
                 statistics.mean(rows[i][1] for i in example),
                 *[f"{statistics.mean(v[i] for i in example):.3f}" for v in means.values()]])
    rows.append(["mean", statistics.mean(r[1] for r in rows[:len(SETS)]),
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
    parser.add_argument("--curve", action="store_true",
                        help="the defaults on more training sentences (dev only)")
    parser.add_argument("--jobs", type=int, default=1, help="seqtool runs at once (--select, "
                        "--curve; one thread each)")
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
                   workdir, args.jobs, args.note)
        elif args.curve:
            curve(workdir, args.jobs)
        else:
            final(workdir, args.only)


if __name__ == "__main__":
    main()
