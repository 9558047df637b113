"""Instant answers (issue 32): one-shot commands against `python -c "import torch"`, and the
numpy backend against the torch backend on the full test sets, in one run, interleaved.

    python benchmarks/instant.py [--rounds 5] [--jobs-rounds 2] [--results DIR | --record]

Every row is a fresh `seqtool` process, as a script that calls it once per item runs it (the
median of `--rounds`); the full-set rows also time the work inside one process (model loaded
once), so that a difference in start-up cost does not hide one in the work. Outputs of the
two backends are compared: labels, the largest probability difference, identical
translations and BLEU.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from common import ROOT, output_options, progress, record, table, use_output

SENTIMENT = ROOT / "corpora" / "sentiment" / "movie-snippets" / "test.tsv"
BIBLE = ROOT / "corpora" / "translation" / "bible-fr-en"
ONE_LINE = "A gorgeous, witty, seductive movie."
ONE_SENTENCE = "Au commencement, Dieu créa les cieux et la terre."


def run(args: list[str], stdin: str | None = None) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], input=stdin, capture_output=True, text=True,
                          cwd=ROOT, check=True)
    return time.perf_counter() - start, done.stdout


def seqtool(*args: str) -> list[str]:
    return ["-m", "seqtool.cli", *args]


def one_shots(rounds: int) -> dict[str, list[float]]:
    """Fresh processes, interleaved: import torch, and each one-shot command (auto backend)."""
    jobs = {
        "python -c 'import torch'": ["-c", "import torch"],
        "classify one line": seqtool("classify", ONE_LINE),
        "translate --beam 5 one sentence": seqtool("translate", "--beam", "5", ONE_SENTENCE),
        "generate --label positive -n 3 --seed 1": seqtool("generate", "--label", "positive",
                                                           "-n", "3", "--seed", "1"),
    }
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for r in range(rounds):
        for name, args in jobs.items():
            times[name].append(run(args)[0])
        progress(f"one-shot round {r + 1}/{rounds}")
    return times


def full_sets(rounds: int) -> tuple[dict[str, list[float]], dict[str, str]]:
    """The 1,058 movie test lines (classify) and the 987 Bible test sentences (translate,
    beam 5), a fresh process per run, per backend, interleaved; their outputs."""
    texts = "".join(line.split("\t", 1)[1] + "\n"
                    for line in SENTIMENT.read_text(encoding="utf-8").splitlines())
    sources = (BIBLE / "test.fr").read_text(encoding="utf-8")
    times: dict[str, list[float]] = {}
    outputs: dict[str, str] = {}
    for r in range(rounds):
        for backend in ("torch", "numpy", "auto"):
            for job, args, stdin in (
                    ("classify 1,058 lines", seqtool("classify", "--format", "jsonl",
                                                     "--backend", backend), texts),
                    ("translate 987 sentences beam 5", seqtool("translate", "--beam", "5",
                                                               "--backend", backend), sources)):
                seconds, out = run(args, stdin)
                times.setdefault(f"{job} ({backend})", []).append(seconds)
                outputs[f"{job} ({backend})"] = out
            progress(f"full sets round {r + 1}/{rounds}: {backend}")
    return times, outputs


def in_process() -> dict[str, float]:
    """The same two jobs inside one process per backend, model loaded once (seconds)."""
    import seqtool

    texts = [line.split("\t", 1)[1] for line in SENTIMENT.read_text().splitlines()]
    sources = (BIBLE / "test.fr").read_text(encoding="utf-8").splitlines()
    found = {}
    for backend in ("torch", "numpy"):
        classifier = seqtool.load("classify", backend=backend)
        start = time.perf_counter()
        classifier.classify(texts)
        found[f"classify ({backend})"] = time.perf_counter() - start
        translator = seqtool.load("translate", backend=backend)
        start = time.perf_counter()
        translator.translate(sources, beam=5)
        found[f"translate ({backend})"] = time.perf_counter() - start
    return found


def agreement(outputs: dict[str, str]) -> dict[str, float]:
    """Classify: same labels, largest probability difference; translate: same translations
    and BLEU per backend (sacrebleu, against the references)."""
    import sacrebleu

    def records(backend: str) -> list[dict]:
        return [json.loads(x) for x in
                outputs[f"classify 1,058 lines ({backend})"].splitlines()]

    a, b = records("torch"), records("numpy")
    labels = sum(x["label"] == y["label"] for x, y in zip(a, b, strict=True)) / len(a)
    gap = max(abs(x["probabilities"][k] - y["probabilities"][k])
              for x, y in zip(a, b, strict=True) for k in x["probabilities"])
    refs = (BIBLE / "test.en").read_text(encoding="utf-8").splitlines()
    hyps = {k: outputs[f"translate 987 sentences beam 5 ({k})"].splitlines()
            for k in ("torch", "numpy")}
    same = sum(x == y for x, y in zip(hyps["torch"], hyps["numpy"], strict=True)) / len(refs)
    bleu = {k: sacrebleu.corpus_bleu(v, [refs]).score for k, v in hyps.items()}
    return {"same_labels": labels, "max_probability_difference": gap,
            "same_translations": same, "bleu_torch": bleu["torch"], "bleu_numpy": bleu["numpy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="one-shot rounds")
    parser.add_argument("--jobs-rounds", type=int, default=2, help="full-set rounds")
    parser.add_argument("--name", default="instant")
    output_options(parser)
    args = parser.parse_args()
    use_output(args)
    shots = one_shots(args.rounds)
    jobs, outputs = full_sets(args.jobs_rounds)
    inside = in_process()
    median = {k: statistics.median(v) for k, v in {**shots, **jobs}.items()}
    torch_import = median["python -c 'import torch'"]
    rows = [[name, round(median[name], 3), round(median[name] / torch_import, 3)]
            for name in shots]
    one_shot = table(["one-shot command (fresh process, median)", "seconds",
                      "/ import torch"], rows)
    job_rows = []
    for job in ("classify 1,058 lines", "translate 987 sentences beam 5"):
        base = median[f"{job} (torch)"]
        for backend in ("torch", "numpy", "auto"):
            key = f"{job} ({backend})"
            job_rows.append([key, round(median[key], 3), round(median[key] / base, 3)])
    full = table(["full test set (fresh process, median)", "seconds", "/ torch"], job_rows)
    inside_rows = [[k, round(v, 3)] for k, v in inside.items()]
    for job in ("classify", "translate"):
        inside_rows.append([f"{job}: numpy / torch",
                            round(inside[f"{job} (numpy)"] / inside[f"{job} (torch)"], 3)])
    loaded = table(["inside one process, model loaded once", "seconds or ratio"], inside_rows)
    agree = agreement(outputs)
    agree_table = table(["backends agree", "value"],
                        [[k, round(v, 6)] for k, v in agree.items()])
    markdown = "\n\n".join([one_shot, full, loaded, agree_table])
    results = {"one_shot": shots, "full_sets": jobs, "in_process": inside,
               "agreement": agree, "rounds": args.rounds, "jobs_rounds": args.jobs_rounds}
    record(args.name, results, markdown)


if __name__ == "__main__":
    main()
