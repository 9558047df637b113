"""Pretraining benchmark: from scratch against pretrained-then-finetuned, in one run, on
movie-snippets, for S1 (classify) and S2 (generate), with the cost of pretraining.

S1: a single GRU classifier with the shipped classifier's settings and --ensemble 1 (lower-cased
vocabulary of 8,000, EMA 0.99, dropout 0.3, patience 4, at most 12 epochs), from scratch and
finetuned from the GRU language model (`--lm`; several give one row each), over several seeds.

S2: the shipped generator's command from scratch (its own 4,000-piece vocabulary), and the same
command finetuned from the LSTM language model (`--lm-lstm`, its tokenizer), each given the same
minutes (`--s2-minutes`). Perplexities per piece differ by tokenizer, so the comparison is bits
per character, non-words (with and without the lexicon), class consistency (judged by the
shipped classifier), distinct-2 and copies. Bits per character are read on dev, then on
test once; the samples (200 per class, default settings) do not depend on the split, so their
columns repeat.

With `--adapt-epochs N`, the GRU language model first goes on for N epochs on the movie
snippets' own training text (`pretrain --init`, ULMFiT's second stage; dev text picks the
epoch), and S1 finetunes from that; its minutes count as S1's. `--adapted FILE` reuses the
model such a run adapted (kept with `--keep`; one per `--lm`) and reads its minutes from it.
`--reuse-kept` takes the S1 runs a previous run finished in `--keep` with the same options
(finished as the last checkpoint records it: a run killed mid-way is trained again).
`--finetune-grid` first chooses the finetuning options on dev (all seeds, from `--grid-init`;
results/pretrain-finetune-selection.md) and gives them to every finetuned row.
Without `--lm-lstm` (S1 only) the results go to results/pretrain-s1.md (or `--name NAME`),
leaving results/pretrain.md as it was.

With `--vectors FILE` a third S1 row starts the same GRU from word vectors instead
(`--embeddings FILE` and `--vector-options`, by default a 16,000-piece vocabulary of 100-dimensional
embeddings, as chosen on dev: README, "Word vectors"): pretrained on far more text, outside
seqtool. Build the file with `python corpora/prepare.py --only embeddings`.

One thread per training, `--jobs` at once. The finetuning rate of the pretrained layers
(--pretrained-lr-scale) is chosen on dev with the first seed when several `--scales` are given;
test is read once per trained model, after every choice is made. The cost of pretraining is the
language models' own training time, read from their checkpoints.

    python benchmarks/bench_pretrain.py --lm LM-GRU.pt --lm-lstm LM-LSTM.pt \
        [--seeds 1 2 3] [--scales 0.5 1.0] [--s2-minutes 25] [--jobs 2] [--adapt-epochs 14]
        [--finetune-options "--gradual-unfreezing"] [--adapted lm-adapted.pt] [--name NAME]
        [--finetune-grid "" "--dropout 0.2" "--pooling concat" ...] [--grid-init LM.pt]
        [--vectors corpora/embeddings/glove-6b-100d.vec]

The language models (commands as recorded in results/pretrain.md):
    P=corpora/pretraining
    seqtool pretrain --train $P/train.txt --dev $P/dev.txt --out LM-GRU.pt --lowercase \
      --max-train-length 64 --eval-every 400 --max-minutes 70 --epochs 6 --seed 1
    seqtool pretrain --train $P/train.txt --dev $P/dev.txt --out LM-LSTM.pt --lowercase \
      --max-train-length 64 --eval-every 400 --max-minutes 60 --epochs 6 --seed 1 --rnn lstm \
      --unidirectional --embed-dim 256 --hidden-dim 512
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import ROOT, evaluate_generator, output_options, progress, record, table, use_output

DATA = ROOT / "corpora" / "sentiment" / "movie-snippets"
GENERATOR_SETTINGS = ["--max-tokens", "1024", "--epochs", "40", "--patience", "3",
                      "--class-every-step", "--class-bias", "--half-checkpoint", "--seed", "1"]
REUSE_KEPT = False  # --reuse-kept: a finished run of the same options in --keep is not redone
SHIPPED_SETTINGS = ["--lowercase", "--ema", "0.99", "--vocab-size", "8000", "--dropout", "0.3",
                    "--patience", "4", "--epochs", "12", "--ensemble", "1"]


def overridden(settings: list[str], extra: list[str]) -> list[str]:
    """`settings` without the options (and their values) that `extra` gives again."""
    kept, i = [], 0
    while i < len(settings):
        takes_value = i + 1 < len(settings) and not settings[i + 1].startswith("--")
        if settings[i] not in extra:
            kept += settings[i:i + 1 + takes_value]
        i += 1 + takes_value
    return kept


def option_defaults(words: list[str]) -> dict[str, object]:
    """The defaults of the options of the seqtool command `words` names (`seqtool train
    classify`), as the command line spells the options."""
    import click

    from seqtool.cli import cli

    command: click.Command = cli
    for word in words[1:]:
        # commands load lazily: get_command, not .commands
        command = command.get_command(click.Context(command), word)  # type: ignore[attr-defined]
    return {opt: p.default for p in command.params if isinstance(p, click.Option)
            and not p.is_flag and p.default is not None for opt in p.opts}


def same_value(text: str, default: object) -> bool:
    try:
        return float(text) == float(default)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return text == str(default)


def run_options(command: str) -> tuple[list[str], dict[str, str | None]]:
    """What makes two training commands the same run: the words before the options, and each
    option as the CLI reads it (the last of a repeated one wins; paths relative to the
    repository), without where it writes (--out), how loudly (-q), whether it resumed (a
    resumed run ends as the uninterrupted one: tests/test_resume.py), or options given at
    their default value."""
    words = command.replace(str(ROOT) + "/", "").split()
    start = next((i for i, w in enumerate(words) if w.startswith("-")), len(words))
    options: dict[str, str | None] = {}
    i = start
    while i < len(words):
        value = words[i + 1] if i + 1 < len(words) and not words[i + 1].startswith("-") else None
        options[words[i]] = value
        i += 1 + (value is not None)
    for quiet_where_or_resumed in ("--out", "-q", "--quiet", "--resume"):
        options.pop(quiet_where_or_resumed, None)
    defaults = option_defaults(words[:start])
    return words[:start], {o: v for o, v in options.items()
                           if not (v is not None and o in defaults and same_value(v, defaults[o]))}


FINISHED: dict[str, Path] = {}  # a run's options -> its --out, for runs finished or kept
FINISHED_LOCK = threading.Lock()


def run_key(command: str) -> str:
    """run_options as a key: equal for the same options in any order."""
    words, options = run_options(command)
    return repr((words, sorted(options.items())))


def finished_run(workdir: Path, command: str) -> Path | None:
    """A finished run of the same options: one this benchmark trained already (a grid run is
    also a row's run), or with --reuse-kept one a previous run left in the folder."""
    from seqtool.checkpoint import Checkpoint

    with FINISHED_LOCK:
        if REUSE_KEPT and not FINISHED:
            for last in sorted(workdir.glob("*.last.pt")):
                out = last.with_name(last.name.replace(".last.pt", ".pt"))
                kept = Checkpoint.load(last)
                if out.is_file() and (kept.train_state or {}).get("finished"):
                    FINISHED.setdefault(run_key(kept.meta["command"]), out)
        return FINISHED.get(run_key(command))


def train(name: str, seed: int, workdir: Path, extra: list[str]) -> dict:
    """Train one single-GRU classifier on one thread; its best dev accuracy (test unread)."""
    from seqtool.checkpoint import Checkpoint

    out = workdir / f"{name}-s{seed}.pt"
    args = ["train", "classify", "--train", str(DATA / "train.tsv"), "--dev",
            str(DATA / "dev.tsv"), "--out", str(out), "--seed", str(seed), "-q",
            *overridden(SHIPPED_SETTINGS, extra), *extra]
    command = "seqtool " + " ".join(args)
    same = finished_run(workdir, command)
    if same is None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        subprocess.run([sys.executable, "-m", "seqtool.cli", *args], check=True, cwd=ROOT,
                       env=env)
        with FINISHED_LOCK:
            FINISHED[run_key(command)] = out
    else:
        out = same
    last = out.with_suffix(".last.pt")
    meta = Checkpoint.load(out).meta
    # The training loop's own clock over the whole run (evaluations included), as the last
    # checkpoint records it, so a reused run counts as it did when it ran.
    return {"name": name, "seed": seed, "path": str(out), "dev_accuracy": meta["best_accuracy"],
            "seconds": round(Checkpoint.load(last).meta["train_seconds"], 1),
            "reused": same is not None, "command": command.replace(str(ROOT) + "/", "")}


def adapt_language_model(lm: str, workdir: Path, epochs: int, index: int = 0) -> dict:
    """ULMFiT's second stage: the language model goes on over the snippets' training text."""

    texts = {}
    for split in ("train", "dev"):
        texts[split] = workdir / f"snippets-{split}.txt"
        texts[split].write_text("".join(line.split("\t", 1)[1] + "\n" for line in
                                        (DATA / f"{split}.tsv").read_text().splitlines()))
    out = workdir / ("lm-adapted.pt" if index == 0 else f"lm{index}-adapted.pt")
    args = ["pretrain", "--init", str(Path(lm).resolve()), "--train", str(texts["train"]),
            "--dev", str(texts["dev"]), "--out", str(out), "--epochs", str(epochs),
            "--patience", "2", "--seed", "1", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "seqtool.cli", *args], check=True, cwd=ROOT, env=env)
    return {**adapted_language_model(out), "seconds": round(time.perf_counter() - start, 1),
            "command": "seqtool " + " ".join(args).replace(str(workdir) + "/", "")
            .replace(str(ROOT) + "/", "")}


def adapted_language_model(path: Path) -> dict:
    """An adapted language model as its checkpoint records it (`--adapted` reuses one)."""
    from seqtool.checkpoint import Checkpoint

    meta = Checkpoint.load(path).meta
    return {"path": str(path), "seconds": meta.get("train_seconds", 0.0),
            "dev_perplexity": meta["best_perplexity"],
            "command": str(meta.get("command")).replace(str(path.parent) + "/", "")
            .replace(str(ROOT) + "/", ""),
            "history": [h["perplexity"] for h in meta["history"] if "perplexity" in h]}


def train_generator(name: str, workdir: Path, minutes: float, extra: list[str]) -> dict:
    """Train one sentiment generator on one thread for at most `minutes`."""
    from seqtool.checkpoint import Checkpoint

    out = workdir / f"{name}.pt"
    args = ["train", "generate", "--train", str(DATA / "train.tsv"), "--dev",
            str(DATA / "dev.tsv"), "--out", str(out), "--lowercase", "--max-minutes",
            str(minutes), "-q", *GENERATOR_SETTINGS, *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "seqtool.cli", *args], check=True, cwd=ROOT, env=env)
    meta = Checkpoint.load(out).meta
    return {"name": name, "path": str(out), "dev_perplexity": meta["best_perplexity"],
            "epochs": meta["history"][-1]["epoch"] if meta.get("history") else None,
            "seconds": round(time.perf_counter() - start, 1),
            "command": "seqtool " + " ".join(args).replace(str(ROOT) + "/", "")}


def generator_scores(path: str, split: str, lexicon: str, guidance: str = "1") -> dict:
    """The S2 numbers of one generator, as `seqtool evaluate generate` reads them."""
    r = evaluate_generator(path, DATA, split, guidance, lexicon)
    s = r["samples"]
    return {"split": split, "lexicon": lexicon, "guidance": float(guidance),
            "bits_per_character": r["bits_per_character"],
            "class_consistency": s["class_consistency"], "distinct_2": s["distinct_2"],
            "copied": s["copied_from_train"], "non_word_rate": s["non_word_rate"],
            "sentences_with_non_word": s["sentences_with_non_word"],
            "examples": s["examples"]}


def test_accuracy(path: str) -> float:
    import seqtool

    return seqtool.evaluate("classify", DATA / "test.tsv", path, device="cpu")["accuracy"]


def select_finetuning(pool: ThreadPoolExecutor, grid: list[str], start: str,
                      seeds: list[int], work: Path) -> str:
    """The finetuning options of the grid with the best mean dev accuracy over the seeds (ties:
    the earlier); writes results/pretrain-finetune-selection. Test is not read."""
    jobs = [(options, seed) for options in grid for seed in seeds]
    runs = list(pool.map(lambda job: train(
        "grid" + "".join("-" + w.lstrip("-") for w in job[0].split()), job[1], work,
        ["--init", str(Path(start).resolve()), *job[0].split()]), jobs))
    means = {options: statistics.mean(r["dev_accuracy"] for (o, _), r in zip(jobs, runs)
                                      if o == options) for options in grid}
    chosen = max(grid, key=lambda options: means[options])  # max keeps the first of ties
    rows = [[options or "(shipped settings)", *(round(r["dev_accuracy"], 4) for (o, _), r in
                                                 zip(jobs, runs) if o == options),
             round(means[options], 4), "yes" if options == chosen else ""]
            for options in grid]
    markdown = table(["finetuning options", *(f"dev seed {s}" for s in seeds), "dev mean",
                      "chosen"], rows)
    markdown += (f"\n\nSingle GRUs finetuned from `{start}` with the shipped settings plus each "
                 "row's options; chosen by mean dev accuracy (1,059 sentences), test not read. "
                 "Commands: " + "; ".join(f"`{r['command']}`" for r in runs))
    record("pretrain-finetune-selection", {"runs": runs, "means": means, "chosen": chosen},
           markdown)
    return chosen


def init_name(index: int, scale: str) -> str:
    """The runs finetuned from the index-th language model at this rate."""
    return f"init-{scale}" if index == 0 else f"init{index}-{scale}"


def s1_rows(runs: list[dict], scales: list[str], lm_labels: list[str]
            ) -> tuple[list[list], dict]:
    rows, summary = [], {}
    for label, name in (("from scratch", "scratch"),
                        *((f"pretrained{label}, finetuned", init_name(i, scale))
                          for i, (label, scale) in enumerate(zip(lm_labels, scales))),
                        ("word vectors (GloVe), finetuned", "vectors")):
        chosen = [r for r in runs if r["name"] == name]
        if not chosen:
            continue
        test = [r["test_accuracy"] for r in chosen]
        dev = [r["dev_accuracy"] for r in chosen]
        summary[name] = {"dev_mean": statistics.mean(dev), "test_mean": statistics.mean(test),
                         "test_sd": statistics.stdev(test) if len(test) > 1 else 0.0}
        rows.append([label, len(chosen), round(statistics.mean(dev), 4),
                     f"{statistics.mean(test):.4f} ± {summary[name]['test_sd']:.4f}",
                     round(statistics.mean(r["seconds"] for r in chosen))])
    return rows, summary


def s2_rows(generators: list[dict]) -> list[list]:
    rows = []
    for g in generators:
        for e in g["evaluations"]:
            rows.append([g["label"], e["split"], e["lexicon"], e["guidance"],
                         round(e["bits_per_character"], 3), f"{e['non_word_rate']:.2%}",
                         f"{e['sentences_with_non_word']:.1%}", round(e["class_consistency"], 3),
                         round(e["distinct_2"], 3), f"{e['copied']:.1%}"])
    return rows


def language_model_label(path: str) -> str:
    """How the S1 rows name a language model: its start and its minutes of pretraining."""
    from seqtool.checkpoint import Checkpoint

    meta = Checkpoint.load(path).meta
    start = "LM started from word vectors" if "embeddings" in meta.get("run", {}).get(
        "data", {}) else "LM"
    return f" ({start}, {(meta.get('train_seconds') or 0) / 60:.0f} min)"


def language_model_line(path: str) -> tuple[str, dict]:
    from seqtool.checkpoint import Checkpoint

    lm = Checkpoint.load(path)
    history = lm.meta.get("history", [])
    last = min((h for h in history if "perplexity" in h), key=lambda h: h["perplexity"],
               default={})
    seconds = lm.meta.get("train_seconds") or lm.meta.get("seconds") or 0
    info = {"command": lm.meta.get("command"), "steps": lm.meta.get("steps"),
            "seconds": seconds, "config": lm.model_config, "best_eval": last}
    line = (f"{lm.model_config['rnn'].upper()} language model: {lm.meta.get('steps')} steps, "
            f"{seconds / 60:.1f} minutes of training on one thread; {lm.model_config}; best dev "
            f"perplexity {last.get('perplexity', float('nan')):.1f}, "
            f"{last.get('bits_per_character', float('nan')):.3f} bits per character (forward). "
            f"Command: `{lm.meta.get('command')}`")
    return line, info


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lm", required=True, nargs="+",
                        help="GRU language models of `seqtool pretrain` (one S1 row each)")
    parser.add_argument("--lm-lstm", help="LSTM language model for S2 (none: S1 only)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--scales", nargs="+", default=["0.5", "1.0"])
    parser.add_argument("--s2-minutes", type=float, default=25.0,
                        help="training minutes of each S2 generator")
    parser.add_argument("--jobs", type=int, default=2, help="trainings at once, one thread each")
    parser.add_argument("--keep", help="folder to keep the trained models in (default: none)")
    parser.add_argument("--adapt-epochs", type=int, default=0,
                        help="epochs of the GRU language model on the snippets first (0 = off)")
    parser.add_argument("--adapted", nargs="+", help="reuse the adapted language models "
                        "(lm-adapted.pt, one per --lm) of an earlier --adapt-epochs run; their "
                        "minutes are read from them")
    parser.add_argument("--finetune-options", default="",
                        help="more options of the finetuned S1 runs, e.g. --gradual-unfreezing")
    parser.add_argument("--finetune-grid", nargs="+", metavar="OPTIONS",
                        help="choose --finetune-options on dev among these (each a string of "
                             "options; '' = the shipped settings), all seeds, from --grid-init")
    parser.add_argument("--grid-init", help="the language model the grid finetunes from "
                        "(default: the first adapted one, or the first --lm)")
    parser.add_argument("--vectors", help="word vectors for a third S1 row (--embeddings)")
    parser.add_argument("--vector-options", default="--embed-dim 100 --vocab-size 16000",
                        help="options of the word-vector runs (after the shipped settings)")
    parser.add_argument("--name", help="name of the results file (default: pretrain, or "
                        "pretrain-s1 without --lm-lstm)")
    parser.add_argument("--reuse-kept", action="store_true",
                        help="take the S1 runs a previous run left in --keep with the same "
                             "command instead of training them again")
    output_options(parser)
    args = parser.parse_args()
    use_output(args)
    global REUSE_KEPT
    REUSE_KEPT = args.reuse_kept and bool(args.keep)
    if args.adapted and len(args.adapted) != len(args.lm):
        parser.error("give one --adapted model per --lm")

    with tempfile.TemporaryDirectory() as tmp, ThreadPoolExecutor(args.jobs) as pool:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        # S2 trains longest: start it first, so the S1 runs fill the other thread.
        generator_jobs = []
        if args.lm_lstm:
            lstm_init = ["--init", str(Path(args.lm_lstm).resolve())]
            generator_jobs = [
                pool.submit(train_generator, "generator-scratch", work, args.s2_minutes,
                            ["--vocab-size", "4000"]),
                pool.submit(train_generator, "generator-finetuned", work, args.s2_minutes,
                            lstm_init)]
        adapting = [pool.submit(adapt_language_model, lm, work, args.adapt_epochs, i)
                    for i, lm in enumerate(args.lm)] if args.adapt_epochs else []
        # The runs from scratch need no language model: they fill the threads meanwhile.
        scratch_jobs = [pool.submit(train, "scratch", seed, work, []) for seed in args.seeds]
        if args.vectors:
            vectors = ["--embeddings", str(Path(args.vectors).resolve()),
                       *args.vector_options.split()]
            scratch_jobs += [pool.submit(train, "vectors", seed, work, vectors)
                             for seed in args.seeds]
        adapted = [job.result() for job in adapting]
        if args.adapted:
            adapted = [adapted_language_model(Path(a).resolve()) for a in args.adapted]
        first = args.seeds[0]
        finetune_options = args.finetune_options
        if args.finetune_grid:
            start = args.grid_init or (adapted[0]["path"] if adapted else args.lm[0])
            finetune_options = select_finetuning(pool, args.finetune_grid, start, args.seeds,
                                                 work)
        init_runs, choices, scales = [], [], []
        for i, lm in enumerate(args.lm):
            init = ["--init", adapted[i]["path"] if adapted else str(Path(lm).resolve()),
                    *finetune_options.split()]
            # Dev-only choice of the finetuning rate, with the first seed.
            progress(f"finetuning from language model {i + 1} of {len(args.lm)}")
            choice_runs = list(pool.map(
                lambda scale, i=i, init=init: train(init_name(i, scale), first, work,
                                                    [*init, "--pretrained-lr-scale", scale]),
                args.scales))
            best = max(choice_runs, key=lambda r: r["dev_accuracy"])
            scale = args.scales[choice_runs.index(best)]
            jobs = [(init_name(i, scale), seed, [*init, "--pretrained-lr-scale", scale])
                    for seed in args.seeds[1:]]
            init_runs += [best, *pool.map(lambda j: train(j[0], j[1], work, j[2]), jobs)]
            choices.append(choice_runs)
            scales.append(scale)
        progress("waiting for the trainings from scratch")
        runs = [*init_runs, *(job.result() for job in scratch_jobs)]
        progress("test accuracy of each model")
        for run in runs:  # test, once per model, after all choices
            run["test_accuracy"] = test_accuracy(run["path"])
        generators = [job.result() for job in generator_jobs]
        settings = [("dev", "model", "1"), ("dev", "none", "1"), ("test", "model", "1"),
                    ("test", "none", "1"), ("test", "model", "0")]
        for g, label in zip(generators, ("from scratch", "pretrained, finetuned")):
            g["label"] = label
            g["evaluations"] = list(pool.map(lambda e, g=g: generator_scores(g["path"], *e),
                                             settings))

    lm_labels = ["" if len(args.lm) == 1 else language_model_label(lm) for lm in args.lm]
    rows, summary = s1_rows(runs, scales, lm_labels)
    markdown = table(["single GRU (S1)", "seeds", "dev accuracy", "test accuracy",
                      "training s"], rows)
    markdown += (
        "\n\nFinetuning rate of the pretrained layers chosen on dev (seed "
        f"{first}): " + "; ".join(
            (f"LM {i + 1}: " if len(args.lm) > 1 else "")
            + ", ".join(f"scale {s}: dev {r['dev_accuracy']:.4f}"
                        for s, r in zip(args.scales, choice_runs)) + f" -> {scale}"
            for i, (choice_runs, scale) in enumerate(zip(choices, scales)))
        + ".\n\nCommands: "
        + "; ".join(f"`{r['command']}`" for r in
                    {r["name"]: r for r in reversed(runs)}.values()))
    lm_lines, lm_infos = zip(*map(language_model_line, args.lm))
    results = {"runs": runs, "summary": summary, "chosen_scales": scales,
               "language_models": lm_infos, "adapted": adapted,
               "finetune_options": finetune_options}
    if args.finetune_grid:
        markdown += (f"\n\nFinetuning options chosen on dev among {len(args.finetune_grid)} "
                     f"(results/pretrain-finetune-selection.md): `{finetune_options or '-'}`.")
    for i, a in enumerate(adapted):
        markdown += (f"\n\nS1{lm_labels[i]} finetunes from the language model after "
                     f"{len(a['history'])} epochs on the snippets' training text (the "
                     f"best of them on dev text): best dev perplexity on "
                     f"the snippets {a['dev_perplexity']:.1f} (by epoch: "
                     + ", ".join(f"{p:.1f}" for p in a["history"])
                     + f"), {a['seconds'] / 60:.1f} minutes; `{a['command']}`")
    lm_line = "\n\n".join(lm_lines)
    if generators:
        markdown += "\n\n" + table(
            ["generator (S2)", "split", "lexicon", "guidance", "bits/char", "non-words",
             "samples with one", "consistency", "distinct-2", "copied"], s2_rows(generators))
        markdown += "\n\n" + "\n".join(
            f"- {g['label']}: best dev perplexity {g['dev_perplexity']:.1f} (per piece of its "
            f"own vocabulary) after {g['epochs']} epochs in {g['seconds'] / 60:.1f} minutes; "
            f"`{g['command']}`" for g in generators)
        lstm_line, lstm_info = language_model_line(args.lm_lstm)
        results.update(generators=generators, language_model_lstm=lstm_info)
        lm_line += "\n\n" + lstm_line
    markdown += "\n\nPretraining cost (each model trained once, for every task after it): " \
        + lm_line
    record(args.name or ("pretrain" if generators else "pretrain-s1"), results, markdown)


if __name__ == "__main__":
    main()
