"""S3 benchmark: BLEU/chrF (greedy and beam 5), decoding speed, training tokens/s.

Side by side with the anchor measured on this machine for Joey NMT 2.3 (same split, same
model size); when Joey NMT is installed in a side venv (--joey-python), its decoding is timed
in the same run as well. Run: python benchmarks/bench_translate.py
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, record, table

DATA = ROOT / "corpora" / "translation" / "bible-fr-en"
SHIPPED = ROOT / "checkpoints" / "bible-fr-en-gru-attention.pt"
# Measured on this machine kind with Joey NMT 2.3.0 (see the issue that set the target).
JOEY = {"bleu_beam5": 28.6, "chrf_beam5": 47.0, "bleu_greedy": 27.6,
        "sentences_per_s_beam5": 12.5, "sentences_per_s_greedy": 47.0,
        "train_target_tokens_per_s": 1400.0, "parameters": 8.05e6}


def evaluate(beam: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "seqtool.cli", "evaluate", "translate", "-m", str(SHIPPED),
         "--src", str(DATA / "test.fr"), "--ref", str(DATA / "test.en"), "--beam", str(beam),
         "--json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def training_speed(precision: str, steps: int) -> float:
    """Target tokens/s of the training loop at the shipped model's size."""
    import torch

    from seqtool.checkpoint import Checkpoint
    from seqtool.data import read_parallel
    from seqtool.models import Translator, TranslatorConfig
    from seqtool.tasks import translate_batch
    from seqtool.tokenizer import Tokenizer
    from seqtool.training import autocast, token_budget_batches

    ckpt = Checkpoint.load(SHIPPED)
    tok = Tokenizer(ckpt.tokenizers["src"])
    pairs = read_parallel(DATA / "train.fr", DATA / "train.en")
    src = tok.encode_batch([p.src for p in pairs])
    tgt = tok.encode_batch([p.tgt for p in pairs])
    lengths = [max(len(s), len(t) + 1) for s, t in zip(src, tgt)]
    batches = token_budget_batches(lengths, 4096, random.Random(0))[: steps + 2]
    torch.manual_seed(0)
    model = Translator(TranslatorConfig.from_dict(ckpt.model_config))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    tokens, start = 0, 0.0
    for i, b in enumerate(batches):
        if i == 2:  # two warm-up steps
            tokens, start = 0, time.perf_counter()
        with autocast(torch.device("cpu"), precision):
            loss, n = model.loss(translate_batch([src[j] for j in b], [tgt[j] for j in b]))
        opt.zero_grad()
        (loss / n).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += n
    return tokens / (time.perf_counter() - start)


def bleu_after(minutes: float, command: str) -> float:
    """Retrain with the shipped model's command for `minutes` and score test with beam 5."""
    import tempfile

    args = command.split()[1:]
    out_index = args.index("--out") + 1
    with tempfile.TemporaryDirectory() as tmp:
        args[out_index] = f"{tmp}/m.pt"
        if "--max-minutes" in args:
            args[args.index("--max-minutes") + 1] = str(minutes)
        else:
            args += ["--max-minutes", str(minutes)]
        subprocess.run([sys.executable, "-m", "seqtool.cli", *args, "-q"], check=True,
                       cwd=ROOT)
        global SHIPPED
        shipped, SHIPPED = SHIPPED, Path(f"{tmp}/m.pt")
        try:
            return evaluate(5)["bleu"]
        finally:
            SHIPPED = shipped


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--retrain-minutes", type=float, default=0,
                        help="Also retrain for this long (e.g. 40) and report test BLEU.")
    args = parser.parse_args()
    from seqtool.checkpoint import Checkpoint

    meta = Checkpoint.load(SHIPPED).meta
    greedy, beam = evaluate(1), evaluate(5)
    speed = {p: training_speed(p, args.train_steps) for p in ("fp32", "bf16")}
    at_40 = bleu_after(args.retrain_minutes, meta["command"]) if args.retrain_minutes else None
    rows = [
        ["test BLEU, beam 5", beam["bleu"], JOEY["bleu_beam5"], beam["bleu"] / JOEY["bleu_beam5"]],
        ["test chrF, beam 5", beam["chrf"], JOEY["chrf_beam5"], beam["chrf"] / JOEY["chrf_beam5"]],
        ["test BLEU, greedy", greedy["bleu"], JOEY["bleu_greedy"],
         greedy["bleu"] / JOEY["bleu_greedy"]],
        ["decode sentences/s, beam 5 (load incl.)", beam["sentences_per_s"],
         JOEY["sentences_per_s_beam5"], beam["sentences_per_s"] / JOEY["sentences_per_s_beam5"]],
        ["decode sentences/s, greedy (load incl.)", greedy["sentences_per_s"],
         JOEY["sentences_per_s_greedy"],
         greedy["sentences_per_s"] / JOEY["sentences_per_s_greedy"]],
        ["train target tokens/s, fp32", speed["fp32"], JOEY["train_target_tokens_per_s"],
         speed["fp32"] / JOEY["train_target_tokens_per_s"]],
        ["train target tokens/s, bf16", speed["bf16"], JOEY["train_target_tokens_per_s"],
         speed["bf16"] / JOEY["train_target_tokens_per_s"]],
    ]
    if at_40 is not None:
        rows.append([f"test BLEU beam 5 after {args.retrain_minutes:g} min training", at_40,
                     JOEY["bleu_beam5"],
                     at_40 / JOEY["bleu_beam5"]])
    markdown = table(["measure", "seqtool", "Joey NMT 2.3 (anchor)", "ratio"], rows)
    markdown += (f"\n\nsignatures: {beam['bleu_signature']} / {beam['chrf_signature']}"
                 f"\nshipped model: {meta.get('train_seconds')} s of training, "
                 f"{meta.get('steps')} steps; command: `{meta.get('command')}`")
    record("translate", {"greedy": greedy, "beam5": beam, "train_tokens_per_s": speed,
                         "joey_anchor": JOEY, "shipped_meta": {k: v for k, v in meta.items()
                                                               if k != "history"}}, markdown)


if __name__ == "__main__":
    main()
