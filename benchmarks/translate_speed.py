"""`bench_translate.py --decode-speed` and `--cli-against REV`: how fast the shipped translator
decodes the test set with each backend and step (issues 22, 24 and 32)."""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, table


def decode_speed(data: Path, shipped: Path, sentences: int = 0,
                 rounds: int = 2) -> tuple[dict, str]:
    """Beam 5 and greedy on the test set with the one search (`decoding/search.py`) over each
    step: torch's fast step (`nn/fast.DecodeStep`, the torch backend's default), torch's plain
    `Translator.decode_step`, and the numpy backend (`seqtool.engine`), in fp32 and, where the
    CPU multiplies bfloat16 natively, torch in bf16: one process, each model loaded once, the
    variants interleaved chunk by chunk (512 lines, as `seqtool translate` reads them) so that
    a drift of the machine's load hits them alike. Sentences/s exclude the load; BLEU,
    translations identical to the torch fast step's, and beam 5 below greedy under its own
    objective (both rescored by teacher forcing in the variant's precision)."""
    import torch

    from seqtool.decoding.search import normalised_score
    from seqtool.decoding.translation import Translation, native_bf16
    from seqtool.inference.predict import load
    from seqtool.metrics import corpus_scores
    from seqtool.nn import fast
    from seqtool.nn.batches import translate_batch
    from seqtool.text.data import read_parallel

    start = time.perf_counter()
    loaded = load(shipped, "translate", backend="torch")
    load_seconds = time.perf_counter() - start
    numpy_loaded = load(shipped, "translate", backend="numpy")
    pairs = read_parallel(data / "test.fr", data / "test.en")
    pairs = pairs[:sentences] if sentences else pairs
    texts, refs = [p.src for p in pairs], [p.tgt for p in pairs]
    baseline = ("torch", "fp32")
    variants = [("torch", "fp32"), ("torch plain step", "fp32"), ("numpy", "fp32")] + (
        [("torch", "bf16")] if native_bf16() else [])
    runs = {(v, p, b): {"seconds": 0.0, "round_seconds": [0.0] * rounds, "results": []}
            for v, p in variants for b in (5, 1)}
    for round_ in range(rounds):
        for first in range(0, len(texts), 512):
            for v, p in variants:
                model = numpy_loaded.model if v == "numpy" else loaded.model
                for b in (5, 1):
                    run = runs[(v, p, b)]
                    begin = time.perf_counter()
                    with fast.disabled() if v == "torch plain step" else contextlib.nullcontext():
                        translation = Translation(model, loaded.tokenizer,
                                                  loaded.target_tokenizer, p)
                        results = translation.translate(texts[first:first + 512], beam=b)
                    run["round_seconds"][round_] += time.perf_counter() - begin
                    if round_ == 0:
                        run["results"] += results
    for run in runs.values():
        run["seconds"] = sum(run["round_seconds"]) / rounds
    ids = [s[:512] for s in loaded.tokenizer.encode_batch(texts)]

    def objective(precision: str, results: list) -> list[float]:
        scores = []
        with torch.no_grad():
            for first in range(0, len(ids), 64):
                rows = range(first, min(first + 64, len(ids)))
                batch = translate_batch([ids[i] for i in rows])
                limits = (batch["src_lengths"].double() * 2.0 + 5).long()
                scores += normalised_score(
                    loaded.model, batch["src"], batch["src_lengths"], limits,
                    [results[i].hypotheses[0].tokens for i in rows], precision=precision)
        return scores

    out: dict = {"sentences": len(texts), "load_seconds": load_seconds, "runs": {}}
    rows = []
    for v, p in variants:
        greedy_scores = objective(p, runs[(v, p, 1)]["results"])
        beam_scores = objective(p, runs[(v, p, 5)]["results"])
        below = sum(bs < gs - 1e-4 for bs, gs in zip(beam_scores, greedy_scores))
        for b in (5, 1):
            run = runs[(v, p, b)]
            texts_out = [r.text for r in run["results"]]
            same = sum(a.text == t for a, t in zip(runs[(*baseline, b)]["results"],
                                                    texts_out))
            speed = len(texts) / run["seconds"]
            before = runs[(*baseline, b)]
            ratio = before["seconds"] / run["seconds"]
            round_ratios = [x / y for x, y in zip(before["round_seconds"], run["round_seconds"])]
            result = {"seconds": run["seconds"], "sentences_per_s": speed,
                      "speedup_by_round": round_ratios,
                      "sentences_per_s_load_included":
                          len(texts) / (run["seconds"] + load_seconds),
                      "bleu": corpus_scores(texts_out, refs)["bleu"], "same_as_torch": same,
                      "speed_against_torch": ratio}
            if b == 5:
                result["beam_below_greedy"] = below
            out["runs"][f"{v} {p} beam {b}"] = result
            rows.append([f"{v} ({p})", "beam 5" if b == 5 else "greedy", speed,
                         result["sentences_per_s_load_included"], ratio,
                         " ".join(f"{r:.2f}" for r in round_ratios), result["bleu"],
                         f"{same}/{len(texts)}", below if b == 5 else "-"])
    markdown = table(["step", "beam", "sentences/s", "sentences/s (load incl.)",
                      "speed / torch fast step", "by round", "BLEU",
                      "same translation as torch's",
                      "beam 5 below greedy (own objective)"], rows)
    markdown += (f"\n\nOne process, {len(texts)} test sentences, {rounds} rounds (the speeds "
                 "are their means; quality from the first), the model loaded once "
                 f"({load_seconds:.2f} s, added to every variant in the load-included column); "
                 "variants interleaved by chunks of 512 lines, all through decoding/search.py. "
                 "torch = nn/fast.DecodeStep, torch plain step = Translator.decode_step, numpy = "
                 "seqtool.engine; bf16 = the output projection in bfloat16 (autocast), only "
                 "where the CPU has AVX512-BF16 or AMX."
                 f"\n\nload average at the end (1, 5, 15 min): {os.getloadavg()}")
    return out, markdown


def cli_speed(data: Path, rev: str, rounds: int = 2) -> tuple[dict, str]:
    """`seqtool translate --beam 5` and `--beam 1` on the 987 test sentences, as a user runs
    them (a fresh process each: Python, `import torch`, the checkpoint, decoding, writing),
    this tree against git revision `rev` (checked out in a temporary worktree, run with its
    own code), interleaved round by round; both must write the same translations."""

    with tempfile.TemporaryDirectory() as tmp:
        old = os.path.join(tmp, "old")
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", old, rev],
                       check=True, capture_output=True)
        try:
            trees = {f"{rev[:7]} (before)": old, "this tree": str(ROOT)}
            seconds = {(who, b): [] for who in trees for b in (5, 1)}
            outputs = {}
            with open(data / "test.fr", "rb") as f:
                source = f.read()
            for _ in range(rounds):
                for who, tree in trees.items():
                    for beam in (5, 1):
                        begin = time.perf_counter()
                        out = subprocess.run(
                            [sys.executable, "-c", "import sys; from seqtool.cli import main; "
                             "sys.argv[0] = 'seqtool'; main()", "translate", "--beam", str(beam)],
                            input=source, capture_output=True, check=True, cwd=tree,
                            env={**os.environ, "PYTHONPATH": tree}).stdout
                        seconds[(who, beam)].append(time.perf_counter() - begin)
                        outputs[(who, beam)] = out
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", old],
                           check=False, capture_output=True)
    before = f"{rev[:7]} (before)"
    out: dict = {"rev": rev, "rounds": rounds, "runs": {}}
    rows = []
    for beam in (5, 1):
        same = outputs[(before, beam)] == outputs[("this tree", beam)]
        for who in trees:
            s = seconds[(who, beam)]
            ratios = [b / a for a, b in zip(s, seconds[(before, beam)])]
            out["runs"][f"{who} beam {beam}"] = {"seconds": s, "speedup_by_round": ratios,
                                                 "same_output_as_before": same}
            rows.append([who, "beam 5" if beam == 5 else "greedy",
                         " ".join(f"{x:.1f}" for x in s), round(statistics.median(s), 2),
                         round(statistics.median(seconds[(before, beam)])
                               / statistics.median(s), 3),
                         " ".join(f"{r:.2f}" for r in ratios), "yes" if same else "NO"])
    markdown = table(["seqtool translate", "search", "seconds by round", "median s",
                      "speedup (medians)", "speedup by round", "same output"], rows)
    markdown += ("\n\n987 test sentences from stdin to stdout, a fresh process per run (Python, "
                 "`import torch`, loading, decoding, writing), the two trees interleaved in "
                 "each round.")
    return out, markdown
