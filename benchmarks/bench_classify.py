"""S1 benchmark: seqtool's GRU classifier against fastText on movie-snippets, same split.

Prints accuracy on test (mean over seeds) and training time for both; the training loop's
tokens/s against a bare PyTorch loop with the same model and batches; and `seqtool classify`
throughput. Run: python benchmarks/bench_classify.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, record, table

DATA = ROOT / "corpora" / "sentiment" / "movie-snippets"
SHIPPED = ROOT / "checkpoints" / "sentiment-gru.pt"


def shipped_command() -> list[str]:
    """The exact training command of the shipped model (from its checkpoint)."""
    from seqtool.checkpoint import Checkpoint

    command = Checkpoint.load(SHIPPED).meta["command"].split()
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
    import json

    out = workdir / f"s{seed}.pt"
    args = with_option(with_option(shipped_command(), "--seed", str(seed)), "--out", str(out))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "seqtool.cli", *args, "-q"], check=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    report = json.loads(subprocess.run(
        [sys.executable, "-m", "seqtool.cli", "evaluate", "classify", "-m", str(out), "--data",
         str(DATA / "test.tsv"), "--json"], check=True, capture_output=True, text=True).stdout)
    return {"accuracy": report["accuracy"], "seconds": seconds}


def fasttext_run(seed: int, workdir: Path) -> dict:
    import fasttext

    def convert(split: str) -> Path:
        path = workdir / f"{split}.ft"
        with open(DATA / f"{split}.tsv", encoding="utf-8") as f, open(path, "w") as g:
            for line in f:
                label, text = line.rstrip("\n").split("\t", 1)
                g.write(f"__label__{label} {text.lower()}\n")
        return path

    train = convert("train")
    start = time.perf_counter()
    model = fasttext.train_supervised(str(train), epoch=25, wordNgrams=2, seed=seed,
                                      thread=1, verbose=0)
    seconds = time.perf_counter() - start
    correct = total = 0
    for line in open(DATA / "test.tsv", encoding="utf-8"):
        label, text = line.rstrip("\n").split("\t", 1)
        predicted = model.f.predict(text.lower(), 1, 0.0, "strict")[0][1]
        correct += predicted == f"__label__{label}"
        total += 1
    return {"accuracy": correct / total, "seconds": seconds}


def engine_overhead(steps: int = 120) -> dict:
    """tokens/s of seqtool's Trainer against a bare loop: same model, batches, optimizer."""
    import torch

    from seqtool.data import read_labeled
    from seqtool.tasks import TokenizerOptions, setup_classify
    from seqtool.training import TrainConfig, Trainer

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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    seeds = list(range(1, args.seeds + 1))
    random.seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        ours = [seqtool_run(s, Path(tmp)) for s in seeds]
        theirs = [fasttext_run(s, Path(tmp)) for s in seeds]
    overhead = engine_overhead()
    speed = classify_throughput()

    def mean(rows, key):
        return statistics.mean(r[key] for r in rows)

    def spread(rows, key):
        return statistics.pstdev(r[key] for r in rows)

    quality = table(
        ["system", "test accuracy (mean)", "± std", "train seconds (mean)", "seeds"],
        [["seqtool GRU (shipped command)", mean(ours, "accuracy"), spread(ours, "accuracy"),
          mean(ours, "seconds"), len(seeds)],
         ["fastText (bigrams, 25 epochs)", mean(theirs, "accuracy"),
          spread(theirs, "accuracy"), mean(theirs, "seconds"), len(seeds)]])
    engine = table(
        ["loop", "train tokens/s", "ratio to bare"],
        [["bare PyTorch", overhead["bare"], 1.0],
         ["seqtool Trainer", overhead["seqtool"], overhead["seqtool"] / overhead["bare"]]])
    throughput = table(["command", "sentences", "seconds (load included)", "sentences/s"],
                       [["seqtool classify (shipped model)", speed["sentences"],
                         speed["seconds"], speed["sentences_per_s"]]])
    record("classify", {"seqtool": ours, "fasttext": theirs, "engine": overhead,
                        "classify_throughput": speed},
           f"{quality}\n\n{engine}\n\n{throughput}")


if __name__ == "__main__":
    main()
