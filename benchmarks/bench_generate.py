"""S2 benchmark: the shipped generator's quality numbers and its speed.

Reports, through `seqtool evaluate generate` on movie-snippets test: perplexity with the right
and the wrong class, class consistency of 200 samples per class at temperature 0.8 (judged by
the shipped classifier), distinct-1/2 and the share copied from training; plus training
tokens/s and batched generation tokens/s. Run: python benchmarks/bench_generate.py
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time

from common import ROOT, record, table

DATA = ROOT / "corpora" / "sentiment" / "movie-snippets"
SHIPPED = ROOT / "checkpoints" / "sentiment-lstm-generator.pt"


def training_speed(steps: int = 40) -> float:
    import torch

    from seqtool.checkpoint import Checkpoint
    from seqtool.data import read_labeled
    from seqtool.models import Generator, GeneratorConfig
    from seqtool.tasks import generate_batch
    from seqtool.tokenizer import Tokenizer
    from seqtool.training import token_budget_batches

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


def main() -> None:
    report = json.loads(subprocess.run(
        [sys.executable, "-m", "seqtool.cli", "evaluate", "generate", "-m", str(SHIPPED),
         "--data", str(DATA / "test.tsv"), "--train", str(DATA / "train.tsv"), "--samples",
         "200", "--temperature", "0.8", "--json"],
        check=True, capture_output=True, text=True).stdout)
    s = report["samples"]
    rows = [["perplexity, right class", report["perplexity"], "lower than wrong class"],
            ["perplexity, wrong class", report["perplexity_wrong_class"], ""],
            ["class consistency (200/class, T=0.8)", s["class_consistency"], ">= 0.95"],
            ["distinct-1", s["distinct_1"], ""],
            ["distinct-2", s["distinct_2"], ">= 0.6"],
            ["copied from training", s["copied_from_train"], "<= 0.02"],
            ["non-words, share of words", s["non_word_rate"], "<= 0.005 (issue 9)"],
            ["non-words, share of samples", s["sentences_with_non_word"], "<= 0.05 (issue 9)"],
            ["bits per character on test", report["bits_per_character"], "lower than before"],
            ["generation tokens/s (batched)", s["generated_tokens_per_s"], ""],
            ["training tokens/s (fp32)", training_speed(), ""]]
    for label, m in report["per_class"].items():
        rows.insert(2, [f"perplexity {label}: right / wrong",
                        f"{m['perplexity']:.2f} / {m['perplexity_wrong_class']:.2f}", ""])
    record("generate", {"report": report}, table(["measure", "value", "target"], rows))


if __name__ == "__main__":
    main()
