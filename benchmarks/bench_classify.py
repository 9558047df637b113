"""S1 benchmark: seqtool's GRU classifier against fastText and VADER on movie-snippets.

Same split for all. Prints dev and test accuracy (test mean over seeds) and training time;
every peer is configured as its documentation recommends and tuned on dev only (fastText:
shuffled input, its tutorial preprocessing, a small grid; VADER: the compound threshold).
Also the training loop's tokens/s against a bare PyTorch loop with the same model and
batches, and `seqtool classify` throughput.

    pip install fasttext-numpy2 vaderSentiment   # peers only, not project dependencies
    python benchmarks/bench_classify.py [--seeds 3] [--reuse-seqtool] [--vectors FILE.vec]
    python benchmarks/bench_classify.py --select  # dev-only choice of the shipped settings
    python benchmarks/bench_classify.py --latency  # a call's cost beyond import torch
    python benchmarks/bench_classify.py --defaults [--single GRU.pt]  # the default beside the
        # ensemble it replaced, one GRU trained alone and fastText: accuracy, speed, latency

--reuse-seqtool takes the seqtool seed runs (3 ensemble trainings, the expensive part) from
the previous results/classify.json and marks them "previous run (date)" in the table.
--select writes results/classify-selection.{md,json}; it never reads test.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import (
    RESULTS,
    ROOT,
    output_folder,
    output_options,
    progress,
    record,
    table,
    use_output,
)
from snippets import (
    DATA,
    accuracy,
    fasttext_normalize,
    fasttext_predict,
    fasttext_train,
    read_split,
)

SHIPPED = ROOT / "checkpoints" / "sentiment-gru.seqtool"


def shipped_command() -> list[str]:
    """The exact training command of the shipped model (from its checkpoint)."""
    import shlex

    from seqtool.checkpoint import Checkpoint

    command = shlex.split(Checkpoint.load(SHIPPED).meta["command"])
    assert command[0] == "seqtool"
    return command[1:]


def with_option(args: list[str], name: str, value: str) -> list[str]:
    args = list(args)
    if name in args:
        args[args.index(name) + 1] = value
    else:
        args += [name, value]
    return args


def seqtool_run(seed: int, workdir: Path) -> dict:
    out = workdir / f"s{seed}.pt"
    args = with_option(with_option(shipped_command(), "--seed", str(seed)), "--out", str(out))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "seqtool.cli", *args, "-q"], check=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    report = json.loads(subprocess.run(
        [sys.executable, "-m", "seqtool.cli", "evaluate", "classify", "-m", str(out), "--input",
         str(DATA / "test.tsv"), "--format", "json"], check=True, capture_output=True,
        text=True).stdout)
    command = " ".join(with_option(args, "--out", "S.pt")).replace(str(ROOT) + "/", "")
    return {"accuracy": report["accuracy"], "seconds": seconds, "command": f"seqtool {command}"}


# The seed runs in results/classify.json before commands were recorded there.
OLD_SHIPPED_COMMAND = ("seqtool train classify --train corpora/sentiment/movie-snippets/train.tsv"
                       " --dev corpora/sentiment/movie-snippets/dev.tsv --out S.pt --patience 4"
                       " --lowercase --epochs 12 --ema 0.99 --ensemble 3 --half-checkpoint"
                       " --seed S")


def evaluate_shipped(split: str) -> float:
    """Accuracy of the shipped checkpoint on one split."""
    report = subprocess.run(
        [sys.executable, "-m", "seqtool.cli", "evaluate", "classify", "-m", str(SHIPPED),
         "--input", str(DATA / f"{split}.tsv"), "--format", "json"],
        check=True, capture_output=True, text=True).stdout
    return json.loads(report)["accuracy"]


# A small grid, searched on dev only; fastText's defaults for supervised training are
# epoch 5, lr 0.1, wordNgrams 1, dim 100; its tutorial raises epoch, lr and wordNgrams.
FASTTEXT_GRID = {"epoch": [5, 10, 25, 50], "lr": [0.1, 0.5, 1.0], "wordNgrams": [1, 2],
                 "dim": [50, 100]}


def training_words_vectors(vectors: Path, workdir: Path) -> tuple[Path, int]:
    """The lines of `vectors` for the words of the preprocessed training text, and their
    dimension. fastText sets pretrained rows only for words of its training dictionary, so
    this equals the whole file and loads in a second instead of a minute."""
    words = {w for _, text in read_split("train") for w in fasttext_normalize(text).split()}
    out = workdir / "train-words.vec"
    with vectors.open(encoding="utf-8") as f:
        rows = [line for line in f if line.partition(" ")[0] in words]
    dim = len(rows[0].split()) - 1
    out.write_text(f"{len(rows)} {dim}\n" + "".join(rows), encoding="utf-8")
    return out, dim


def fasttext_peer(seeds: list[int], workdir: Path, vectors: Path | None = None) -> dict:
    """Settings chosen by dev accuracy (seed 1); then each seed's model reads test once.
    With `vectors` the input vectors start from them (-pretrainedVectors, -dim theirs)."""
    import itertools

    dev = read_split("dev")
    space = dict(FASTTEXT_GRID)
    fixed: dict = {}
    if vectors:
        path, dim = training_words_vectors(vectors, workdir)
        space.pop("dim")
        fixed = {"dim": dim, "pretrainedVectors": str(path)}
    grid = []
    points = list(itertools.product(*space.values()))
    for number, values in enumerate(points):
        settings = {**dict(zip(space, values)), **fixed}
        if number % 8 == 0:
            progress(f"fastText grid point {number + 1} of {len(points)}")
        try:
            model, _ = fasttext_train(settings, seeds[0], workdir)
        except RuntimeError:  # "Encountered NaN": this learning rate diverges
            grid.append({**settings, "dev_accuracy": None})
            continue
        grid.append({**settings, "dev_accuracy": accuracy(fasttext_predict(model, dev), dev)})
    best = max((row for row in grid if row["dev_accuracy"] is not None),
               key=lambda row: row["dev_accuracy"])
    settings = {k: best[k] for k in space} | fixed
    test = read_split("test")
    runs = []
    for seed in seeds:
        model, seconds = fasttext_train(settings, seed, workdir)
        runs.append({"seed": seed, "dev_accuracy": accuracy(fasttext_predict(model, dev), dev),
                     "accuracy": accuracy(fasttext_predict(model, test), test),
                     "seconds": seconds})
    return {"settings": settings, "grid": grid, "runs": runs}


def vader_peer() -> dict:
    """VADER's compound score on the raw text (it reads case and punctuation itself):
    positive when compound >= threshold; the threshold chosen on dev, and VADER's documented
    0.05 (its README: positive >= 0.05, negative <= -0.05; here neutral counts as negative)."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    analyzer = SentimentIntensityAnalyzer()

    def scores(pairs):
        return [analyzer.polarity_scores(text)["compound"] for _, text in pairs]

    def labelled(compounds, threshold):
        return ["positive" if c >= threshold else "negative" for c in compounds]

    dev, test = read_split("dev"), read_split("test")
    dev_scores = scores(dev)
    candidates = sorted(set(dev_scores))
    tuned = max(candidates, key=lambda t: accuracy(labelled(dev_scores, t), dev))
    start = time.perf_counter()
    test_scores = scores(test)
    seconds = time.perf_counter() - start
    return {"threshold_dev": tuned, "seconds_test": seconds,
            "dev_accuracy": {"tuned": accuracy(labelled(dev_scores, tuned), dev),
                             "0.05": accuracy(labelled(dev_scores, 0.05), dev)},
            "accuracy": {"tuned": accuracy(labelled(test_scores, tuned), test),
                         "0.05": accuracy(labelled(test_scores, 0.05), test)}}


def engine_overhead(steps: int = 120) -> dict:
    """tokens/s of seqtool's Trainer against a bare loop: same model, batches, optimizer."""
    import torch

    from seqtool.config import TrainConfig
    from seqtool.text.data import read_labeled
    from seqtool.training.loop import Trainer
    from seqtool.training.recipes import TokenizerOptions, setup_classify

    train = list(read_labeled(DATA / "train.tsv"))
    dev = list(read_labeled(DATA / "dev.tsv"))[:64]
    results = {}
    for name in ("bare", "seqtool", "bare2", "seqtool2"):  # interleaved against drift
        model, task = setup_classify(train, dev, "dev", {}, TokenizerOptions(8000), 0, {})
        config = TrainConfig(epochs=100, max_tokens=4096, max_steps=steps, quiet=True,
                             eval_every=10_000)
        with tempfile.TemporaryDirectory() as tmp:
            trainer = Trainer(model, task, config, Path(tmp) / "m.pt")
            batches = [b for e in range(3) for b in trainer.epoch_batches(e)][:steps]
            tokens = sum(task.lengths[i] for b in batches for i in b)
            if name.startswith("bare"):
                torch.manual_seed(0)
                opt = torch.optim.Adam(model.parameters(), lr=2e-3)
                model.train()
                start = time.perf_counter()
                for b in batches:
                    opt.zero_grad()
                    loss, n = model.loss(task.collate(b))
                    (loss / n).backward()
                    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                    opt.step()
                seconds = time.perf_counter() - start
            else:
                start = time.perf_counter()
                trainer.fit()  # wall time, including its one closing dev evaluation (64 lines)
                seconds = time.perf_counter() - start
        results.setdefault(name.rstrip("2"), []).append(tokens / seconds)
    return {k: statistics.mean(v) for k, v in results.items()}


def classify_throughput() -> dict:
    lines = (DATA / "test.tsv").read_text(encoding="utf-8").splitlines()
    texts = "".join(line.split("\t", 1)[1] + "\n" for line in lines)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "seqtool.cli", "classify", "--format", "tsv"],
                   input=texts, check=True, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    return {"sentences": len(lines), "seconds": seconds, "sentences_per_s": len(lines) / seconds}


# Model selection on DEV only (issue 8, point 5): one factor at a time from the shipped
# configuration (a single GRU), since a full 2^4 factorial does not fit a shared 2-core CPU.
BASE_LEVELS = {"case": "lower", "ema": "0.99", "vocab": "8000", "dropout": "0.3"}
ALTERNATIVES = {"case": "cased", "ema": "0", "vocab": "4000", "dropout": "0.5"}


def variant_options(levels: dict[str, str]) -> list[str]:
    """Training options for one setting of the four factors."""
    options = ["--lowercase"] if levels["case"] == "lower" else []
    return options + ["--ema", levels["ema"], "--vocab-size", levels["vocab"],
                      "--dropout", levels["dropout"]]


def variant_name(levels: dict[str, str]) -> str:
    changed = [f"{k}={v}" for k, v in levels.items() if v != BASE_LEVELS[k]]
    return ", ".join(changed) or "shipped settings (lower, ema 0.99, vocab 8000, dropout 0.3)"


def dev_run(levels: dict[str, str], seed: int, workdir: Path, ensemble: int = 1) -> dict:
    """Train one variant with one thread; return its best DEV accuracy (test is never read)."""
    import os

    from seqtool.checkpoint import Checkpoint

    out = workdir / ("-".join(levels.values()) + f"-e{ensemble}-s{seed}.pt")
    args = ["train", "classify", "--train", str(DATA / "train.tsv"), "--dev",
            str(DATA / "dev.tsv"), "--out", str(out), "--patience", "4", "--epochs", "12",
            "--ensemble", str(ensemble), "--seed", str(seed), "-q", *variant_options(levels)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    for attempt in range(3):  # others may be mid-edit in the training code: wait and retry
        try:
            subprocess.run([sys.executable, "-m", "seqtool.cli", *args], check=True, cwd=ROOT,
                           env=env)
            break
        except subprocess.CalledProcessError:
            if attempt == 2:
                raise
            time.sleep(60)
            start = time.perf_counter()
    meta = Checkpoint.load(out).meta
    return {"variant": variant_name(levels), "levels": levels, "seed": seed,
            "ensemble": ensemble, "dev_accuracy": meta["best_accuracy"],
            "steps": meta.get("steps"), "seconds": time.perf_counter() - start,
            "command": "seqtool " + " ".join(args).replace(str(ROOT) + "/", "")}


def select(workdir: Path, second_seed: int = 2) -> None:
    """Train the variants (seed 1; a second seed for the top three), pick each factor on dev.

    A factor changes from its shipped level only when the alternative's mean dev accuracy is
    higher; a tie keeps the shipped level."""
    from concurrent.futures import ThreadPoolExecutor

    cache = output_folder() / "classify-selection.json"  # partial runs; never the tracked one
    cache.parent.mkdir(parents=True, exist_ok=True)
    runs = json.loads(cache.read_text())["runs"] if cache.exists() else []

    def run_all(jobs: list[tuple[dict, int]]) -> None:
        done = {(r["variant"], r["seed"]) for r in runs}
        todo = [(lv, s) for lv, s in jobs if (variant_name(lv), s) not in done]
        with ThreadPoolExecutor(2) as pool:  # two one-thread trainings on the 2 cores
            progress(f"{len(todo)} trainings to run, two at a time")
            for result in pool.map(lambda job: dev_run(*job, workdir), todo):
                runs.append(result)
                progress(f"trained {len(runs)} of {len(done) + len(todo)}: "
                         f"{result['variant']} seed {result['seed']}")
                cache.write_text(json.dumps({"runs": runs}, indent=2) + "\n")  # partial kept

    variants = [dict(BASE_LEVELS)] + [{**BASE_LEVELS, k: v} for k, v in ALTERNATIVES.items()]
    run_all([(lv, 1) for lv in variants])
    seed1 = sorted((r for r in runs if r["seed"] == 1), key=lambda r: -r["dev_accuracy"])
    run_all([(r["levels"], second_seed) for r in seed1[:3]])

    def dev_mean(levels: dict[str, str]) -> float:
        return statistics.mean(r["dev_accuracy"] for r in runs
                               if r["variant"] == variant_name(levels))

    chosen = {k: max((BASE_LEVELS[k], ALTERNATIVES[k]),
                     key=lambda v: dev_mean({**BASE_LEVELS, k: v})) for k in BASE_LEVELS}
    rows = []
    for levels in variants:
        accs = {r["seed"]: r["dev_accuracy"] for r in runs if r["variant"] == variant_name(levels)}
        rows.append([variant_name(levels), accs.get(1, "-"), accs.get(second_seed, "-"),
                     dev_mean(levels)])
    markdown = (table(["single GRU variant (one factor changed)", "dev acc seed 1",
                       f"dev acc seed {second_seed}", "dev mean"], rows)
                + "\n\nChosen on dev, factor by factor: "
                + ", ".join(f"{k} {v}" for k, v in chosen.items())
                + (" (the shipped settings)." if chosen == BASE_LEVELS
                   else " (differs from the shipped settings).")
                + f" Dev has {len(read_split('dev'))} sentences (0.001 = one sentence);"
                + " a factor leaves its shipped level only when the alternative's mean is"
                + " higher. Test accuracy is never read here. Each training used one thread"
                + " (OMP_NUM_THREADS=1), two at a time, with --patience 4 --epochs 12 as shipped;"
                + " the commands are in the JSON file.")
    record("classify-selection", {"runs": runs, "chosen": chosen,
                                  "base": BASE_LEVELS, "alternatives": ALTERNATIVES}, markdown)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--select", action="store_true",
                        help="choose case/EMA/vocabulary/dropout on dev; writes classify-selection")
    parser.add_argument("--reuse-seqtool", action="store_true",
                        help="reuse the seqtool seed runs of results/classify.json, marked so")
    parser.add_argument("--vectors", type=Path,
                        help="word vectors (corpora/embeddings/glove-6b-100d.vec): adds fastText "
                             "started from them, as the shipped classifier is")
    parser.add_argument("--repeats", type=int, default=3,
                        help="with --latency or --defaults: runs of each")
    parser.add_argument("--latency", action="store_true",
                        help="only what a classify call costs beyond import torch "
                             "(results/classify-latency.*)")
    parser.add_argument("--defaults", action="store_true",
                        help="only the default beside the ensemble, one GRU trained alone and "
                             "fastText (results/classify-defaults.*)")
    parser.add_argument("--single", type=Path, help="with --defaults: the GRU trained alone "
                        "(else trained, with SEQTOOL_SNIPPETS_LM set)")
    parser.add_argument("--ensemble", type=Path, help="with --defaults: the twelve-GRU "
                        "ensemble (else restored from the git history)")
    output_options(parser)
    args = parser.parse_args()
    use_output(args)
    if args.defaults:
        from classify_defaults import compare_defaults

        settings = json.loads((RESULTS / "classify.json").read_text())["fasttext"]["settings"]
        record("classify-defaults", *compare_defaults(DATA, settings, args.single,
                                                      args.ensemble, args.repeats))
        return
    if args.latency:
        from classify_latency import classify_latency

        record("classify-latency", *classify_latency(DATA, args.repeats))
        return
    if args.select:
        with tempfile.TemporaryDirectory() as tmp:
            select(Path(tmp))
        return
    seeds = list(range(1, args.seeds + 1))
    random.seed(0)
    if args.reuse_seqtool:  # the expensive part: 3 ensemble trainings of the shipped command
        previous = json.loads((RESULTS / "classify.json").read_text())
        ours = previous["seqtool"]
        ours_source = previous.get("seqtool_source", "this run")
        if ours_source == "this run":
            ours_source = f"previous run ({previous['machine']['date']})"
    else:
        if shipped_command()[:2] != ["train", "classify"]:
            parser.error("the shipped classifier combines models trained apart (`seqtool "
                         "ensemble`, see its model card); it has no one command to retrain: "
                         "use --reuse-seqtool")
        with tempfile.TemporaryDirectory() as tmp:
            ours = []
            for s in seeds:
                progress(f"training the shipped command, seed {s} of {len(seeds)} (the long "
                         "part: see the model card for its minutes)")
                ours.append(seqtool_run(s, Path(tmp)))
        ours_source = "this run"
    ours_command = ours[0].get("command", OLD_SHIPPED_COMMAND).replace(" --seed 1", " --seed S")
    current = " ".join(with_option(with_option(shipped_command(), "--seed", "S"), "--out", "S.pt"))
    ours_label = ("seqtool GRU (shipped command, retrained)"
                  if ours_command.replace(str(ROOT) + "/", "") == f"seqtool {current}"
                  else "seqtool GRU (previous shipped command, retrained)")
    progress("fastText: grid on dev, then the seeds")
    with tempfile.TemporaryDirectory() as tmp:
        fasttext = fasttext_peer(seeds, Path(tmp))
        fasttext_vectors = fasttext_peer(seeds, Path(tmp), args.vectors) if args.vectors else None
    progress("VADER")
    vader = vader_peer()
    progress("the shipped checkpoint on dev and test")
    shipped = {split: evaluate_shipped(split) for split in ("dev", "test")}
    progress("training loop against a bare PyTorch loop")
    overhead = engine_overhead()
    progress("seqtool classify throughput")
    speed = classify_throughput()

    def mean(rows, key):
        return statistics.mean(r[key] for r in rows)

    def spread(rows, key):
        return statistics.pstdev(r[key] for r in rows)

    ft = fasttext["settings"]
    fv = fasttext_vectors["settings"] if fasttext_vectors else {}
    quality = table(
        ["system", "settings chosen on", "dev accuracy", "test accuracy (mean)", "± std",
         "train seconds (mean)", "seeds", "measured"],
        [["seqtool GRU, shipped checkpoint",
          {"ensemble": "dev (classify-ensemble)", "distill": "dev (distill-s1)"}.get(
              shipped_command()[0], "dev (classify-selection)"), shipped["dev"],
          shipped["test"], "-", "-", 1, "this run"],
         [ours_label, "-", "-",
          mean(ours, "accuracy"), spread(ours, "accuracy"), mean(ours, "seconds"), len(ours),
          ours_source],
         [f"fastText (epoch {ft['epoch']}, lr {ft['lr']}, wordNgrams {ft['wordNgrams']}, "
          f"dim {ft['dim']})", f"dev ({len(fasttext['grid'])}-point grid)",
          mean(fasttext["runs"], "dev_accuracy"), mean(fasttext["runs"], "accuracy"),
          spread(fasttext["runs"], "accuracy"), mean(fasttext["runs"], "seconds"), len(seeds),
          "this run"],
         *([[f"fastText + {args.vectors.name} (epoch {fv['epoch']}, lr {fv['lr']}, "
             f"wordNgrams {fv['wordNgrams']}, dim {fv['dim']})",
             f"dev ({len(fasttext_vectors['grid'])}-point grid)",
             mean(fasttext_vectors["runs"], "dev_accuracy"),
             mean(fasttext_vectors["runs"], "accuracy"),
             spread(fasttext_vectors["runs"], "accuracy"),
             mean(fasttext_vectors["runs"], "seconds"), len(seeds), "this run"]]
           if fasttext_vectors else []),
         [f"VADER, compound >= {vader['threshold_dev']:.4g}", "dev (threshold)",
          vader["dev_accuracy"]["tuned"], vader["accuracy"]["tuned"], "-", "-", "-",
          "this run"],
         ["VADER, compound >= 0.05", "VADER's README", vader["dev_accuracy"]["0.05"],
          vader["accuracy"]["0.05"], "-", "-", "-", "this run"]])
    notes = ("fastText: train.tsv shuffled (it is ordered by label and fastText does not "
             "shuffle), punctuation split off and lower-cased as in its tutorials, 1 thread; "
             "settings picked by dev accuracy (seed 1) over "
             + ", ".join(f"{k} {v}" for k, v in FASTTEXT_GRID.items())
             + "; test read once per seed. VADER scores the raw text."
             + (" fastText with vectors: -pretrainedVectors (the lines of the training text's "
                "words), dim theirs, the same grid otherwise." if fasttext_vectors else ""))
    engine = table(
        ["loop", "train tokens/s", "ratio to bare"],
        [["bare PyTorch", overhead["bare"], 1.0],
         ["seqtool Trainer", overhead["seqtool"], overhead["seqtool"] / overhead["bare"]]])
    throughput = table(["command", "sentences", "seconds (load included)", "sentences/s"],
                       [["seqtool classify (shipped model)", speed["sentences"],
                         speed["seconds"], speed["sentences_per_s"]]])
    notes += f" The retrained seqtool rows ran: `{ours_command}`."
    record("classify", {"seqtool": ours, "seqtool_source": ours_source, "shipped": shipped,
                        "fasttext": fasttext, "fasttext_vectors": fasttext_vectors,
                        "vader": vader, "engine": overhead,
                        "classify_throughput": speed},
           f"{quality}\n\n{notes}\n\n{engine}\n\n{throughput}")

if __name__ == "__main__":
    main()
