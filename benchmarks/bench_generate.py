"""S2 benchmark: the shipped generator's quality numbers and its speed, and the dev choice
among candidate generators.

Reports, through `seqtool evaluate generate` on movie-snippets test: perplexity with the right
and the wrong class, the generator's accuracy as a Bayes classifier, class consistency of 200
samples per class at temperature 0.8 (judged by the shipped classifier) with the default
guidance and without it, distinct-1/2, the share copied from training and non-words; plus
training tokens/s and batched generation tokens/s. Run: python benchmarks/bench_generate.py

`--select A.pt B.pt ...` reads candidates on dev only (bits per character, Bayes accuracy,
consistency, distinct-2 and non-words with guidance 1 and 0; samples do not depend on the
split) into results/generate-selection.md, two evaluations at once, one thread each.
"""

from __future__ import annotations

import argparse
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from common import ROOT, evaluate_generator, output_options, progress, record, table, use_output

DATA = ROOT / "corpora" / "sentiment" / "movie-snippets"
SHIPPED = ROOT / "checkpoints" / "sentiment-lstm-generator.seqtool"


def training_speed(steps: int = 40) -> float:
    import torch

    from seqtool.checkpoint import Checkpoint
    from seqtool.config import GeneratorConfig
    from seqtool.nn.batches import generate_batch
    from seqtool.nn.generator import Generator
    from seqtool.text.data import read_labeled, token_budget_batches
    from seqtool.text.tokenizer import Tokenizer

    ckpt = Checkpoint.load(SHIPPED)
    tok = Tokenizer(ckpt.tokenizers["src"])
    records = list(read_labeled(DATA / "train.tsv"))
    ids = tok.encode_batch([r.text for r in records])
    labels = [ckpt.labels.index(r.label) for r in records]
    batches = token_budget_batches([len(s) + 1 for s in ids], 4096, random.Random(0))
    torch.manual_seed(0)
    model = Generator(GeneratorConfig.from_dict(ckpt.model_config))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    tokens, start = 0, 0.0
    for i, b in enumerate(batches[: steps + 2]):
        if i == 2:
            tokens, start = 0, time.perf_counter()
        loss, n = model.loss(generate_batch([labels[j] for j in b], [ids[j] for j in b]))
        opt.zero_grad()
        (loss / n).backward()
        opt.step()
        tokens += n
    return tokens / (time.perf_counter() - start)


def select(candidates: list[Path]) -> None:
    """Candidates on dev: the numbers a choice of the shipped generator is made on."""
    jobs = [(c, g) for c in candidates for g in ("1", "0")]
    with ThreadPoolExecutor(2) as pool:
        reports = list(pool.map(lambda j: evaluate_generator(j[0], DATA, "dev", j[1]), jobs))
    by_model: dict[str, dict[str, dict]] = {}
    for (c, g), r in zip(jobs, reports):
        by_model.setdefault(str(c), {})[g] = r
    rows = []
    for c, r in by_model.items():
        guided, free = r["1"]["samples"], r["0"]["samples"]
        rows.append([Path(c).name, round(r["1"]["bits_per_character"], 3),
                     round(r["1"]["perplexity"], 1), round(r["1"]["bayes_accuracy"], 3),
                     guided["class_consistency"], free["class_consistency"],
                     round(guided["distinct_2"], 3), round(free["distinct_2"], 3),
                     f"{guided['non_word_rate']:.2%}", f"{guided['copied_from_train']:.1%}"])
    markdown = table(["candidate", "dev bits/char", "dev ppl", "Bayes accuracy",
                      "consistency g=1", "consistency g=0", "distinct-2 g=1",
                      "distinct-2 g=0", "non-words", "copied"], rows)
    from seqtool.checkpoint import Checkpoint

    markdown += "\n\nCommands:\n" + "\n".join(
        f"- {Path(c).name}: `{Checkpoint.load(c).meta.get('command')}`" for c in by_model)
    record("generate-selection", {"candidates": by_model}, markdown)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--select", nargs="+", type=Path, metavar="CHECKPOINT",
                        help="read these candidate generators on dev (no test)")
    output_options(parser)
    args = parser.parse_args()
    use_output(args)
    if args.select:
        select(args.select)
        return
    progress("evaluate generate on test (guidance 1)")
    report = evaluate_generator(SHIPPED, DATA, "test", threads="2")
    progress("evaluate generate on test without guidance")
    free = evaluate_generator(SHIPPED, DATA, "test", guidance="0", threads="2")["samples"]
    s = report["samples"]
    rows = [["perplexity, right class", report["perplexity"], "lower than wrong class"],
            ["perplexity, wrong class", report["perplexity_wrong_class"], ""],
            ["accuracy as a Bayes classifier (the likeliest class of each text)",
             report["bayes_accuracy"], ""],
            ["class consistency (200/class, T=0.8), guidance 1", s["class_consistency"],
             ">= 0.95"],
            ["class consistency without guidance", free["class_consistency"], ">= 0.85"],
            ["distinct-1", s["distinct_1"], ""],
            ["distinct-2 (guidance 1 / 0)", f"{s['distinct_2']:.4f} / {free['distinct_2']:.4f}",
             ">= 0.6"],
            ["copied from training", s["copied_from_train"], "<= 0.02"],
            ["non-words, share of words", s["non_word_rate"], "<= 0.005 (issue 9)"],
            ["non-words, share of samples", s["sentences_with_non_word"], "<= 0.05 (issue 9)"],
            ["bits per character on test", report["bits_per_character"], "lower than before"],
            ["generation tokens/s (batched)", s["generated_tokens_per_s"], ""],
            ["training tokens/s (fp32)", training_speed(), ""]]
    for label, m in report["per_class"].items():
        rows.insert(2, [f"perplexity {label}: right / wrong",
                        f"{m['perplexity']:.2f} / {m['perplexity_wrong_class']:.2f}", ""])
    record("generate", {"report": report, "unguided": free},
           table(["measure", "value", "target"], rows))


if __name__ == "__main__":
    main()
