"""S3 benchmark: BLEU/chrF (greedy and beam 5), search quality, decoding speed, training tokens/s.

Search quality: on the full test set, the number of sentences where beam 5's translation scores
below greedy's under beam's own objective (log-probability of tokens + <end> over the length
penalty, both rescored by teacher forcing in one batch).

Side by side with the anchor measured on this machine kind for Joey NMT 2.3 (same split, same
model size), every Joey number marked "anchor (date)" or "this run". When Joey NMT is installed
in a side venv (--joey-python), its training speed is measured in the same run, and the ratio
uses that: this machine's speed drifts by 20% from hour to hour; with --joey-quality-minutes M it
is also trained with benchmarks/joey/fr-en-quality.yaml for M minutes (the anchor: 40) and its
best checkpoint tested (BLEU, chrF, sentences/s, beam 5 and greedy).
Decoding speed before and after the fast searches (beam 5 and greedy, one run):
python benchmarks/bench_translate.py --decode-speed [--sentences N] [--rounds R] [--threads N];
the command line against an earlier revision: --cli-against REV [--rounds R].
Run: python benchmarks/bench_translate.py [--quality-only] [--joey-python VENV/bin/python
[--joey-quality-minutes 40]]
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

from common import ROOT, output_options, progress, record, table, use_output

DATA = ROOT / "corpora" / "translation" / "bible-fr-en"
SHIPPED = ROOT / "checkpoints" / "bible-fr-en-gru-attention.seqtool"
# Measured on this machine kind with Joey NMT 2.3.0 (see the issue that set the target); the
# --joey-python options measure them again.
JOEY_ANCHOR = "anchor (2026-11-21)"
JOEY = {"bleu_beam5": 28.6, "chrf_beam5": 47.0, "bleu_greedy": 27.6,
        "sentences_per_s_beam5": 12.5, "sentences_per_s_greedy": 47.0,
        "train_target_tokens_per_s": 1400.0, "parameters": 8.05e6}


def evaluate(beam: int) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "seqtool.cli", "evaluate", "translate", "-m", str(SHIPPED),
         "--src", str(DATA / "test.fr"), "--ref", str(DATA / "test.en"), "--beam", str(beam),
         "--format", "json"], check=True, capture_output=True, text=True).stdout
    return json.loads(out)


def training_speed(precision: str, steps: int) -> float:
    """Target tokens/s of the training loop at the shipped model's size."""
    import torch

    from seqtool.checkpoint import Checkpoint
    from seqtool.config import TranslatorConfig
    from seqtool.device import autocast, reuse_freed_memory
    from seqtool.nn.batches import translate_batch
    from seqtool.nn.translator import Translator
    from seqtool.text.data import read_parallel, token_budget_batches
    from seqtool.text.tokenizer import Tokenizer

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
    reuse_freed_memory()  # as `seqtool train` does when asked
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


def joey_workdir(work: str, config_name: str) -> str:
    """Joey's sentencepiece vocabulary and a filled-in copy of benchmarks/joey/CONFIG_NAME."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.Train(  # Joey's scripts/build_vocab.py settings
        input=f"{DATA}/train.fr,{DATA}/train.en", model_prefix=f"{work}/spm8000",
        model_type="unigram", vocab_size=8000, character_coverage=1.0,
        unk_id=0, pad_id=1, bos_id=2, eos_id=3, unk_piece="<unk>", pad_piece="<pad>",
        bos_piece="<s>", eos_piece="</s>", minloglevel=2)
    sp = spm.SentencePieceProcessor(model_file=f"{work}/spm8000.model")
    Path(f"{work}/spm8000.joey_vocab.txt").write_text(
        "".join(sp.id_to_piece(i) + "\n" for i in range(sp.get_piece_size())))
    config = (Path(__file__).parent / "joey" / config_name).read_text()
    path = f"{work}/{config_name}"
    Path(path).write_text(config.replace("{data}", str(DATA)).replace("{work}", work))
    return path


def run_joey(joey_python: str, args: list[str], seconds: float | None = None) -> None:
    try:
        subprocess.run([joey_python, "-m", "joeynmt", *args], timeout=seconds,
                       capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    except subprocess.TimeoutExpired:
        pass


def joey_training_speed(joey_python: str, seconds: float) -> float:
    """Joey NMT's own target tokens/s on the same data and model size (speed config): the
    mean of its 10-step "Tokens per Sec" log windows, the first (warm-up) one left out."""
    import re
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        run_joey(joey_python, ["train", joey_workdir(work, "fr-en.yaml")], seconds)
        log = Path(f"{work}/model/train.log").read_text()
    windows = [float(x) for x in re.findall(r"Tokens per Sec:\s*([0-9.]+)", log)][1:]
    if not windows:
        raise SystemExit("Joey NMT logged no training steps; see its train.log")
    return sum(windows) / len(windows)


def joey_quality(joey_python: str, minutes: float) -> dict:
    """Train Joey NMT with its quality config for `minutes`, then test its best checkpoint
    (best dev BLEU) on the test set with beam 5 and greedy: the anchor's numbers, this run."""
    import tempfile

    from seqtool.metrics import corpus_scores

    refs = (DATA / "test.en").read_text(encoding="utf-8").splitlines()
    out: dict = {}
    with tempfile.TemporaryDirectory() as work:
        config = joey_workdir(work, "fr-en-quality.yaml")
        run_joey(joey_python, ["train", config], minutes * 60)
        best = Path(f"{work}/model/best.ckpt")
        if not best.exists():
            raise SystemExit("Joey NMT saved no best checkpoint; see its train.log")
        for name, beam in (("beam5", 5), ("greedy", 1)):
            beam_config = f"{work}/test-{name}.yaml"
            Path(beam_config).write_text(Path(config).read_text().replace(
                "beam_size: 5", f"beam_size: {beam}"))
            start = time.perf_counter()  # model load included, as for seqtool
            run_joey(joey_python, ["test", beam_config, "--ckpt", str(best),
                                   "--output_path", f"{work}/{name}"])
            seconds = time.perf_counter() - start
            hyps = Path(f"{work}/{name}.test").read_text(encoding="utf-8").splitlines()
            scores = corpus_scores(hyps, refs)
            out[f"bleu_{name}"] = scores["bleu"]
            out[f"chrf_{name}"] = scores["chrf"]
            out[f"sentences_per_s_{name}"] = len(refs) / seconds  # dev decoded too: a floor
    return out


def beam_below_greedy(beam: int = 5, alpha: float = 1.0, tolerance: float = 1e-4) -> dict:
    """Sentences of the test set where beam's translation scores below greedy's under beam's
    own objective, both rescored by teacher forcing in the same batch (so they differ by more
    than float rounding only when beam really found less): for the shipped search (exact
    stopping rule, greedy's translation among the candidates), the exact rule alone, and the
    rule it replaced (close a sentence once `beam` hypotheses finished). Decoder rows
    (sentence-hypotheses advanced by one step) measure the search's cost independently of the
    machine's load."""
    import functools

    import torch

    from seqtool.config import MAX_INPUT_LENGTH
    from seqtool.decoding import search
    from seqtool.decoding import translation as translation_module
    from seqtool.decoding.search import normalised_score
    from seqtool.decoding.translation import Translation
    from seqtool.inference.predict import load
    from seqtool.metrics import corpus_scores
    from seqtool.nn import fast
    from seqtool.nn.batches import translate_batch
    from seqtool.text.data import read_parallel

    loaded = load(SHIPPED, "translate")
    model = loaded.model.eval()
    rows_done = [0]
    prepare = fast.decode_step  # the step the searches take

    def counted(model):
        step = prepare(model)

        def counted_step(memory, prev, *group):
            rows_done[0] += prev.numel()
            return step(memory, prev, *group)
        return counted_step

    def old_rule(best_live, finished, length, limit, alpha, n_best):
        return length < limit and len(finished) < beam

    pairs = read_parallel(DATA / "test.fr", DATA / "test.en")
    texts = [p.src for p in pairs]
    translation = Translation(model, loaded.tokenizer, loaded.target_tokenizer)
    greedy = translation.translate(texts, beam=1)
    fast.decode_step = counted
    runs = {}
    variants = {"shipped": (search.may_improve, True), "exact": (search.may_improve, False),
                "closes at k finished": (old_rule, False)}
    for name, (rule, include_greedy) in variants.items():
        exact_rule, search.may_improve = search.may_improve, rule
        translation_module.beam_search_batches = functools.partial(
            search.beam_search_batches, include_greedy=include_greedy)
        rows_done[0] = 0
        try:
            runs[name] = (translation.translate(texts, beam=beam, alpha=alpha), rows_done[0])
        finally:
            search.may_improve = exact_rule
            translation_module.beam_search_batches = search.beam_search_batches
    fast.decode_step = prepare
    ids = [s[: MAX_INPUT_LENGTH]  # as translate cuts them
           for s in loaded.tokenizer.encode_batch(texts)]
    out: dict = {"sentences": len(texts), "tolerance": tolerance}
    for name, (beamed, decoder_rows) in runs.items():
        below, gaps = [], []
        with torch.no_grad():
            for start in range(0, len(texts), 64):
                rows = range(start, min(start + 64, len(texts)))
                batch = translate_batch([ids[i] for i in rows])
                limits = (batch["src_lengths"].double() * 2.0 + 5).long()
                args = (model, batch["src"], batch["src_lengths"], limits)
                g = normalised_score(*args, [greedy[i].hypotheses[0].tokens for i in rows],
                                     alpha)
                b = normalised_score(*args, [beamed[i].hypotheses[0].tokens for i in rows],
                                     alpha)
                for i, gs, bs in zip(rows, g, b):
                    if bs < gs - tolerance:
                        below.append(i)
                        gaps.append(round(gs - bs, 4))
        out[name] = {"beam_below_greedy": len(below), "which": below, "gaps": gaps,
                     "decoder_rows": decoder_rows,
                     "bleu": corpus_scores([r.text for r in beamed],
                                           [p.tgt for p in pairs])["bleu"]}
    return out


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
    parser.add_argument("--quality-only", action="store_true",
                        help="Decode only: skip the training-speed measurements.")
    parser.add_argument("--train-steps", type=int, default=30)
    parser.add_argument("--retrain-minutes", type=float, default=0,
                        help="Also retrain for this long (e.g. 40) and report test BLEU.")
    parser.add_argument("--keep-retrained", help="Copy the retrained checkpoint here.")
    parser.add_argument("--joey-python", help="Python of a venv with Joey NMT 2.3.")
    parser.add_argument("--joey-seconds", type=float, default=240)
    parser.add_argument("--joey-quality-minutes", type=float, default=0,
                        help="With --joey-python: train Joey's quality config this long (the "
                             "anchor: 40) and test it, instead of using the anchor's numbers.")
    parser.add_argument("--decode-speed", action="store_true",
                        help="Only time decoding before and after the fast searches "
                             "(benchmarks/results/translate-speed.*).")
    parser.add_argument("--sentences", type=int, default=0,
                        help="With --decode-speed: the first N test sentences (0 = all).")
    parser.add_argument("--rounds", type=int, default=2,
                        help="With --decode-speed or --cli-against: time every variant this "
                             "many times.")
    parser.add_argument("--cli-against", metavar="REV",
                        help="Only time `seqtool translate` (beam 5, greedy) on the test set, "
                             "fresh processes, this tree against git revision REV "
                             "(benchmarks/results/translate-cli-speed.*).")
    parser.add_argument("--threads", type=int, default=0,
                        help="With --decode-speed: torch threads (0 = torch's default); "
                             "another than the default writes translate-speed-Nthread.*.")
    output_options(parser)
    args = parser.parse_args()
    use_output(args)
    if args.decode_speed:
        name = "translate-speed"
        if args.threads:
            import torch

            name += "" if args.threads == torch.get_num_threads() else f"-{args.threads}thread"
            torch.set_num_threads(args.threads)
        from translate_speed import decode_speed

        results, markdown = decode_speed(DATA, SHIPPED, args.sentences, args.rounds)
        record(name, results, markdown)
        return
    if args.cli_against:
        from translate_speed import cli_speed

        record("translate-cli-speed", *cli_speed(DATA, args.cli_against, args.rounds))
        return
    from seqtool.checkpoint import Checkpoint

    meta = Checkpoint.load(SHIPPED).meta
    progress("evaluate translate, greedy and beam 5")
    greedy, beam = evaluate(1), evaluate(5)
    progress("beam against greedy under the model's objective")
    search = beam_below_greedy()
    joey = dict(JOEY)
    quality_source = JOEY_ANCHOR
    if args.joey_python and args.joey_quality_minutes:
        joey.update(joey_quality(args.joey_python, args.joey_quality_minutes))
        quality_source = f"this run ({args.joey_quality_minutes:g} min)"
    speed = before = after = joey_speed = None
    if not args.quality_only:
        # seqtool's runs bracket Joey's, so a drift of the machine's speed hits both sides.
        before = {p: training_speed(p, args.train_steps) for p in ("fp32", "bf16")}
        joey_speed = (joey_training_speed(args.joey_python, args.joey_seconds)
                      if args.joey_python else None)
        after = {p: training_speed(p, args.train_steps) for p in ("fp32", "bf16")}
        speed = {p: (before[p] + after[p]) / 2 for p in before}
    at_40 = bleu_after(args.retrain_minutes, meta["command"],
                       args.keep_retrained) if args.retrain_minutes else None

    def row(measure: str, ours: float, key: str | None, source: str) -> list:
        if key is None:
            return [measure, ours, "-", "-", "-"]
        return [measure, ours, joey[key], ours / joey[key], source]

    rows = [
        row("test BLEU, beam 5", beam["bleu"], "bleu_beam5", quality_source),
        row("test chrF, beam 5", beam["chrf"], "chrf_beam5", quality_source),
        row("test BLEU, greedy", greedy["bleu"], "bleu_greedy", quality_source),
        row(f"beam 5 below greedy under beam's objective (of {search['sentences']} sentences)",
            search["shipped"]["beam_below_greedy"], None, ""),
        row("  same, exact stopping without greedy's candidate",
            search["exact"]["beam_below_greedy"], None, ""),
        row("  same, the replaced rule (close at 5 finished)",
            search["closes at k finished"]["beam_below_greedy"], None, ""),
        row("test BLEU, beam 5: exact without greedy's candidate", search["exact"]["bleu"],
            None, ""),
        row("test BLEU, beam 5: replaced rule", search["closes at k finished"]["bleu"], None, ""),
        row("beam 5 decoder rows, shipped / replaced rule",
            search["shipped"]["decoder_rows"] / search["closes at k finished"]["decoder_rows"],
            None, ""),
        row("beam 5 decoder rows, exact without greedy / replaced rule",
            search["exact"]["decoder_rows"] / search["closes at k finished"]["decoder_rows"],
            None, ""),
        row("decode sentences/s, beam 5 (load incl.)", beam["sentences_per_s"],
            "sentences_per_s_beam5", quality_source),
        row("decode sentences/s, greedy (load incl.)", greedy["sentences_per_s"],
            "sentences_per_s_greedy", quality_source),
    ]
    if speed is not None:
        if joey_speed:
            joey["train_target_tokens_per_s"] = joey_speed
        source = "this run" if joey_speed else JOEY_ANCHOR
        rows += [row(f"train target tokens/s, {p}", speed[p], "train_target_tokens_per_s",
                     source) for p in ("fp32", "bf16")]
    if at_40 is not None:
        rows.append(row(f"test BLEU beam 5 after {args.retrain_minutes:g} min training", at_40,
                        "bleu_beam5", quality_source))
    markdown = table(["measure", "seqtool (this run)", "Joey NMT 2.3", "ratio", "Joey source"],
                     rows)
    markdown += (f"\n\nJoey NMT column: \"{JOEY_ANCHOR}\" marks the issue's measurements on "
                 "this machine kind, hard-coded in the script, not measured in this run; \"this "
                 "run\" marks a same-run measurement (--joey-python). Beam below greedy: both "
                 "translations rescored by teacher forcing, gap over "
                 f"{search['tolerance']:g}; without greedy's candidate, sentences "
                 f"{search['exact']['which']} (gaps {search['exact']['gaps']}): there greedy's "
                 "path left the beam. Decoder rows: sentence-hypotheses advanced one step, "
                 f"{search['shipped']['decoder_rows']} shipped (greedy's pass included), "
                 f"{search['exact']['decoder_rows']} exact without greedy, "
                 f"{search['closes at k finished']['decoder_rows']} with the replaced rule (the "
                 "search's cost, independent of the machine's load)."
                 f"\n\nload average at the end (1, 5, 15 min): {os.getloadavg()}")
    markdown += (f"\n\nsignatures: {beam['bleu_signature']} / {beam['chrf_signature']}"
                 f"\nshipped model: {meta.get('train_seconds')} s of training, "
                 f"{meta.get('steps')} steps; command: `{meta.get('command')}`")
    # A decode-only run keeps the full run's file (its training speeds) and writes its own.
    name = "translate-quality" if args.quality_only else "translate"
    record(name, {
        "greedy": greedy, "beam5": beam, "search": search, "train_tokens_per_s": speed,
        "train_tokens_per_s_runs": [before, after],
        "joey_train_tokens_per_s_this_run": joey_speed, "joey": joey,
        "joey_quality_source": quality_source, "bleu_beam5_after_retrain": at_40,
        "retrain_minutes": args.retrain_minutes, "joey_anchor": JOEY,
        "shipped_meta": {k: v for k, v in meta.items() if k != "history"}}, markdown)


if __name__ == "__main__":
    main()
