"""S3 benchmark: BLEU/chrF (greedy and beam 5), decoding speed, training tokens/s.

Side by side with the anchor measured on this machine for Joey NMT 2.3 (same split, same
model size). When Joey NMT is installed in a side venv (--joey-python), its training speed is
measured in the same run too, and the ratio uses that: this machine's speed drifts by 20% from
hour to hour. Run: python benchmarks/bench_translate.py [--joey-python VENV/bin/python]
(the venv: pip install torch==2.13.0 sentencepiece==0.2.0 importlib_metadata, then
--no-deps joeynmt==2.3.0 and its other requirements; remove `verbose` from ReduceLROnPlateau's
arguments in joeynmt/builders.py).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
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
    from seqtool.training import autocast, reuse_freed_memory, token_budget_batches

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
    reuse_freed_memory()  # as the Trainer does
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


def joey_training_speed(joey_python: str, seconds: float) -> float:
    """Joey NMT's own target tokens/s on the same data and model size: the mean of its
    10-step "Tokens per Sec" log windows, the first (warm-up) one left out."""
    import re
    import tempfile

    import sentencepiece as spm

    with tempfile.TemporaryDirectory() as work:
        spm.SentencePieceTrainer.Train(  # Joey's scripts/build_vocab.py settings
            input=f"{DATA}/train.fr,{DATA}/train.en", model_prefix=f"{work}/spm8000",
            model_type="unigram", vocab_size=8000, character_coverage=1.0,
            unk_id=0, pad_id=1, bos_id=2, eos_id=3, unk_piece="<unk>", pad_piece="<pad>",
            bos_piece="<s>", eos_piece="</s>", minloglevel=2)
        sp = spm.SentencePieceProcessor(model_file=f"{work}/spm8000.model")
        Path(f"{work}/spm8000.joey_vocab.txt").write_text(
            "".join(sp.id_to_piece(i) + "\n" for i in range(sp.get_piece_size())))
        config = (Path(__file__).parent / "joey" / "fr-en.yaml").read_text()
        Path(f"{work}/fr-en.yaml").write_text(
            config.replace("{data}", str(DATA)).replace("{work}", work))
        try:
            subprocess.run([joey_python, "-m", "joeynmt", "train", f"{work}/fr-en.yaml"],
                           timeout=seconds, capture_output=True,
                           env={**os.environ, "OMP_NUM_THREADS": "2"})
        except subprocess.TimeoutExpired:
            pass
        log = Path(f"{work}/model/train.log").read_text()
    windows = [float(x) for x in re.findall(r"Tokens per Sec:\s*([0-9.]+)", log)][1:]
    if not windows:
        raise SystemExit("Joey NMT logged no training steps; see its train.log")
    return sum(windows) / len(windows)


def bleu_after(minutes: float, command: str, keep: str | None = None) -> float:
    """Retrain with the shipped model's command for `minutes` and score test with beam 5."""
    import tempfile

    args = [a for a in command.split()[1:] if a != "--resume"]
    out_index = args.index("--out") + 1
    with tempfile.TemporaryDirectory() as tmp:
        args[out_index] = f"{tmp}/m.pt"
        if "--max-minutes" in args:
            args[args.index("--max-minutes") + 1] = str(minutes)
        else:
            args += ["--max-minutes", str(minutes)]
        subprocess.run([sys.executable, "-m", "seqtool.cli", *args, "-q"], check=True,
                       cwd=ROOT)
        if keep:
            shutil.copyfile(f"{tmp}/m.pt", keep)
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
    parser.add_argument("--keep-retrained", help="Copy the retrained checkpoint here.")
    parser.add_argument("--joey-python", help="Python of a venv with Joey NMT 2.3.")
    parser.add_argument("--joey-seconds", type=float, default=240)
    args = parser.parse_args()
    from seqtool.checkpoint import Checkpoint

    meta = Checkpoint.load(SHIPPED).meta
    greedy, beam = evaluate(1), evaluate(5)
    # seqtool's runs bracket Joey's, so a drift of the machine's speed hits both sides.
    before = {p: training_speed(p, args.train_steps) for p in ("fp32", "bf16")}
    joey_speed = (joey_training_speed(args.joey_python, args.joey_seconds)
                  if args.joey_python else None)
    after = {p: training_speed(p, args.train_steps) for p in ("fp32", "bf16")}
    speed = {p: (before[p] + after[p]) / 2 for p in before}
    joey_tps = joey_speed or JOEY["train_target_tokens_per_s"]
    joey_label = "Joey: this run" if joey_speed else "Joey: anchor"
    at_40 = bleu_after(args.retrain_minutes, meta["command"],
                                args.keep_retrained) if args.retrain_minutes else None
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
        [f"train target tokens/s, fp32 ({joey_label})", speed["fp32"], joey_tps,
         speed["fp32"] / joey_tps],
        [f"train target tokens/s, bf16 ({joey_label})", speed["bf16"], joey_tps,
         speed["bf16"] / joey_tps],
    ]
    if at_40 is not None:
        rows.append([f"test BLEU beam 5 after {args.retrain_minutes:g} min training", at_40,
                     JOEY["bleu_beam5"],
                     at_40 / JOEY["bleu_beam5"]])
    markdown = table(["measure", "seqtool", "Joey NMT 2.3", "ratio"], rows)
    markdown += ("\n\nJoey NMT column: the issue's anchor measurements on this machine kind, "
                 "except where a row says \"this run\".")
    markdown += (f"\n\nsignatures: {beam['bleu_signature']} / {beam['chrf_signature']}"
                 f"\nshipped model: {meta.get('train_seconds')} s of training, "
                 f"{meta.get('steps')} steps; command: `{meta.get('command')}`")
    record("translate", {"greedy": greedy, "beam5": beam, "train_tokens_per_s": speed,
                         "train_tokens_per_s_runs": [before, after],
                         "joey_train_tokens_per_s_this_run": joey_speed,
                         "bleu_beam5_after_retrain": at_40, "retrain_minutes": args.retrain_minutes,
                         "joey_anchor": JOEY, "shipped_meta": {k: v for k, v in meta.items()
                                                               if k != "history"}}, markdown)


if __name__ == "__main__":
    main()
