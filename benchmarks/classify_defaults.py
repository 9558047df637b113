"""`bench_classify.py --defaults`: the shipped S1 default beside the other choices a user has
(issue 24), in one run: the distilled GRU (the default), the twelve-GRU ensemble it was
distilled from (restored from the git history), one GRU trained alone with the best single
recipe, and fastText. For each: test accuracy, size, steady-state sentences/s (one process,
model loaded, the 1,058 test lines classified again and again) and the one-line latency of a
fresh process (wall, and beyond `import torch` for seqtool)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from classify_latency import beyond_import_torch
from common import ROOT, progress, table

# The shipped twelve-GRU ensemble, by the git blob of its file (checkpoints/sentiment-gru.pt
# until the distilled default replaced it): `git cat-file blob` restores it in any full clone.
ENSEMBLE_BLOB = "5b37aaee87609e0a4cd3624de2926a0eafda0ce2"
ONE_LINE = "A gorgeous, witty, seductive movie."
# The best recipe for one GRU trained alone (the six language-model parts of the ensemble;
# its model card): the GloVe-started language model, adapted to the snippets, then finetuned.
SINGLE_RECIPE = ("--lowercase --ema 0.99 --dropout 0.2 --adversarial 0.05 --patience 4 "
                 "--epochs 12 --seed 1")


def restore_ensemble(workdir: Path) -> Path:
    out = workdir / "sentiment-gru-ensemble.pt"
    with out.open("wb") as f:
        subprocess.run(["git", "cat-file", "blob", ENSEMBLE_BLOB], stdout=f, check=True,
                       cwd=ROOT)
    return out


def seqtool_speed(model: Path, texts: list[str], repeats: int) -> float:
    """Steady-state sentences/s: the model loaded once, the texts classified `repeats` times,
    the best pass kept (the machine is shared)."""
    import seqtool

    loaded = seqtool.load("classify", str(model))
    loaded.classify(texts[:64])  # warm
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        loaded.classify(texts)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def fasttext_model(settings: dict, workdir: Path):
    from snippets import fasttext_train

    model, seconds = fasttext_train(settings, 1, workdir)
    path = workdir / "fasttext.bin"
    model.save_model(str(path))
    return model, path, seconds


def fasttext_speed(model, texts: list[str], repeats: int) -> float:
    from snippets import fasttext_normalize

    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        model.predict([fasttext_normalize(t) for t in texts], k=1)
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def timed(args: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, capture_output=True, text=True,
                   cwd=ROOT)
    return time.perf_counter() - start


def compare_defaults(data: Path, fasttext_settings: dict, single: Path | None,
                     ensemble: Path | None, repeats: int = 5) -> tuple[dict, str]:
    from snippets import accuracy, fasttext_predict, read_split

    import seqtool

    test = read_split("test")
    texts = [text for _, text in test]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        models = {"distilled GRU (default)": ROOT / "checkpoints" / "sentiment-gru.seqtool",
                  "ensemble of 12 GRUs (before)": ensemble or restore_ensemble(work)}
        if single is None:
            single = work / "single.pt"
            lm = os.environ.get("SEQTOOL_SNIPPETS_LM")
            if not lm:
                raise SystemExit("--single PATH, or SEQTOOL_SNIPPETS_LM=lm-snippets.pt (the "
                                 "adapted language model of the model card) to train one")
            subprocess.run([sys.executable, "-m", "seqtool.cli", "train", "classify",
                            "--train", str(data / "train.tsv"), "--dev", str(data / "dev.tsv"),
                            "--init", lm, "--out", str(single), "--quiet",
                            *SINGLE_RECIPE.split()], check=True, cwd=ROOT)
        models["one GRU trained alone"] = single
        ft, ft_path, ft_seconds = fasttext_model(fasttext_settings, work)
        out: dict = {"models": {}, "repeats": repeats, "one_line": ONE_LINE}
        for name, path in models.items():
            scores = seqtool.evaluate("classify", str(data / "test.tsv"), str(path))
            out["models"][name] = {
                "path": str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name,
                "accuracy": scores["accuracy"], "megabytes": path.stat().st_size / 1e6,
                "parameters": sum(p.numel() for p in
                                  seqtool.load("classify", str(path)).loaded.model.parameters()),
                "sentences_per_s": seqtool_speed(path, texts, repeats)}
        out["models"]["fastText"] = {
            "settings": fasttext_settings, "train_seconds": ft_seconds,
            "accuracy": accuracy(fasttext_predict(ft, test), test),
            "megabytes": ft_path.stat().st_size / 1e6, "parameters": None,
            "sentences_per_s": fasttext_speed(ft, texts, repeats)}
        # One-line latency of a fresh process, the variants interleaved, medians kept.
        calls = {"import torch": ["-c", "import torch"]}
        for name, path in models.items():
            calls[name] = ["-m", "seqtool.cli", "classify", "-m", str(path), ONE_LINE]
        calls["fastText"] = ["-c", "import sys, fasttext; m = fasttext.load_model(sys.argv[1]);"
                             " print(m.predict([sys.argv[2].lower()]))", str(ft_path), ONE_LINE]
        runs: dict[str, list[float]] = {name: [] for name in calls}
        beyond: dict[str, list[float]] = {name: [] for name in models}
        for r in range(repeats):
            progress(f"one-line calls, round {r + 1} of {repeats}")
            for name, args in calls.items():
                runs[name].append(timed(args))
                if name in models:
                    beyond[name].append(beyond_import_torch(models[name], ONE_LINE))
    median = {name: statistics.median(v) for name, v in runs.items()}
    rows = []
    for name, m in out["models"].items():
        m["one_line_s"] = median[name]
        extra = statistics.median(beyond[name]) if name in beyond else None
        m["beyond_import_torch_s"] = extra
        rows.append([name, m["accuracy"], m["parameters"] or "-", m["megabytes"],
                     m["sentences_per_s"], m["one_line_s"], "-" if extra is None else extra])
    out["import_torch_s"] = median["import torch"]
    out["runs"] = runs
    markdown = table(["model", "test accuracy", "parameters", "MB", "sentences/s (steady)",
                      "one line (s, fresh process)", "beyond import torch (s)"], rows)
    markdown += (
        f"\n\n`python -c 'import torch'`: {median['import torch']:.3f} s. Steady state: the "
        f"{len(texts)} test lines classified {repeats} times in one process after loading, "
        f"the best pass kept ({os.cpu_count()} cores, torch's default threads). One line: a "
        f"fresh `seqtool classify -m MODEL \"{ONE_LINE}\"` (fastText: its Python module "
        f"loading its model and predicting), medians of {repeats} interleaved runs. fastText: "
        f"{fasttext_settings} (chosen on dev, results/classify.md), seed 1. One GRU trained "
        f"alone: `seqtool train classify --init lm-snippets.pt {SINGLE_RECIPE}`.\n\nload "
        f"average at the end (1, 5, 15 min): {os.getloadavg()}")
    return out, markdown
