"""Pretraining benchmark (S1): a single GRU classifier from scratch against the same GRU
finetuned from `seqtool pretrain`'s language model, in one run, on movie-snippets.

Both use the shipped classifier's settings with --ensemble 1 (lower-cased vocabulary of
8,000, EMA 0.99, dropout 0.3, patience 4, at most 12 epochs), one thread per training. The
finetuning rate of the pretrained layers (--pretrained-lr-scale) is chosen on dev with the
first seed; test is read once per trained model, after every choice is made. The cost of
pretraining is the language model's own training time, read from its checkpoint.

    python benchmarks/bench_pretrain.py --lm LM.pt [--seeds 1 2 3] [--scales 0.5 1.0] [--jobs 2]

LM.pt comes from (30 minutes on one thread, the run recorded in results/pretrain.md):
    seqtool pretrain --train corpora/pretraining/train.txt --dev corpora/pretraining/dev.txt \
      --out LM.pt --lowercase --max-length 64 --eval-every 400 --max-minutes 30 --epochs 4 \
      --seed 1
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import ROOT, record, table

DATA = ROOT / "corpora" / "sentiment" / "movie-snippets"
SHIPPED_SETTINGS = ["--lowercase", "--ema", "0.99", "--vocab-size", "8000", "--dropout", "0.3",
                    "--patience", "4", "--epochs", "12", "--ensemble", "1"]


def train(name: str, seed: int, workdir: Path, extra: list[str]) -> dict:
    """Train one single-GRU classifier on one thread; its best dev accuracy (test unread)."""
    from seqtool.checkpoint import Checkpoint

    out = workdir / f"{name}-s{seed}.pt"
    args = ["train", "classify", "--train", str(DATA / "train.tsv"), "--dev",
            str(DATA / "dev.tsv"), "--out", str(out), "--seed", str(seed), "-q",
            *SHIPPED_SETTINGS, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "seqtool.cli", *args], check=True, cwd=ROOT, env=env)
    meta = Checkpoint.load(out).meta
    return {"name": name, "seed": seed, "path": str(out), "dev_accuracy": meta["best_accuracy"],
            "seconds": round(time.perf_counter() - start, 1),
            "command": "seqtool " + " ".join(args).replace(str(ROOT) + "/", "")}


def test_accuracy(path: str) -> float:
    report = subprocess.run(
        [sys.executable, "-m", "seqtool.cli", "evaluate", "classify", "-m", path, "-i",
         str(DATA / "test.tsv"), "--format", "json"],
        check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return json.loads(report)["accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm", required=True, help="language model of `seqtool pretrain`")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--scales", nargs="+", default=["0.5", "1.0"])
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once, one thread each")
    args = parser.parse_args()
    from seqtool.checkpoint import Checkpoint

    lm = Checkpoint.load(args.lm)
    lm_history = lm.meta.get("history", [])
    init = ["--init", str(Path(args.lm).resolve())]
    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        work = Path(tmp)
        first = args.seeds[0]
        # Dev-only choice of the finetuning rate, with the first seed.
        choice_runs = list(pool.map(
            lambda scale: train(f"init-{scale}", first, work,
                                [*init, "--pretrained-lr-scale", scale]), args.scales))
        best = max(choice_runs, key=lambda r: r["dev_accuracy"])
        scale = best["name"].removeprefix("init-")
        jobs = [(f"init-{scale}", seed, [*init, "--pretrained-lr-scale", scale])
                for seed in args.seeds[1:]]
        jobs += [("scratch", seed, []) for seed in args.seeds]
        runs = [best, *pool.map(lambda j: train(j[0], j[1], work, j[2]), jobs)]
        for run in runs:  # test, once per model, after all choices
            run["test_accuracy"] = test_accuracy(run["path"])
    rows, summary = [], {}
    for label, name in (("from scratch", "scratch"), ("pretrained, finetuned", f"init-{scale}")):
        chosen = [r for r in runs if r["name"] == name]
        test = [r["test_accuracy"] for r in chosen]
        dev = [r["dev_accuracy"] for r in chosen]
        summary[name] = {"dev_mean": statistics.mean(dev), "test_mean": statistics.mean(test),
                         "test_sd": statistics.stdev(test) if len(test) > 1 else 0.0}
        rows.append([label, len(chosen), round(statistics.mean(dev), 4),
                     f"{statistics.mean(test):.4f} ± {summary[name]['test_sd']:.4f}",
                     round(statistics.mean(r["seconds"] for r in chosen))])
    markdown = table(["single GRU (S1)", "seeds", "dev accuracy", "test accuracy",
                      "training s"], rows)
    lm_seconds = lm.meta.get("train_seconds") or lm.meta.get("seconds")
    last = lm_history[-1] if lm_history else {}
    markdown += (
        "\n\nFinetuning rate of the pretrained layers chosen on dev (seed "
        f"{first}): " + ", ".join(f"scale {r['name'].removeprefix('init-')}: dev "
                                   f"{r['dev_accuracy']:.4f}" for r in choice_runs)
        + f" -> {scale}.\n\nPretraining cost: {lm.meta.get('steps')} steps, "
        f"{(lm_seconds or 0) / 60:.1f} minutes of training on one thread; language model "
        f"{lm.model_config}; dev perplexity {last.get('perplexity', float('nan')):.1f}, "
        f"{last.get('bits_per_character', float('nan')):.3f} bits per character (forward).\n\n"
        f"Language model command: `{lm.meta.get('command')}`\n\n"
        "Commands: " + "; ".join(f"`{r['command']}`" for r in runs[:1] + runs[-1:]))
    record("pretrain", {"runs": runs, "summary": summary, "chosen_scale": scale,
                        "language_model": {"command": lm.meta.get("command"),
                                           "steps": lm.meta.get("steps"),
                                           "seconds": lm_seconds, "last_eval": last}},
           markdown)


if __name__ == "__main__":
    main()
