"""`seqtool tokenizer train`, `tokenize`, `ensemble`, `info` and `plot`: tools around the models."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from seqtool.cli.common import SeqtoolGroup, emit
from seqtool.cli.options import (
    REPORT_FORMATS,
    character_coverage_option,
    errors_option,
    format_option,
    half_checkpoint_option,
    input_option,
    json_alias,
    lowercase_option,
    model_option,
    out_option,
    report_format,
    seed_option,
    tokenizer_type_option,
    vocab_size_option,
)
from seqtool.errors import SeqtoolError


@click.group(cls=SeqtoolGroup)
def tokenizer() -> None:
    """Train sentencepiece tokenizers."""


@tokenizer.command("train")
@click.argument("inputs", nargs=-1, type=click.Path(dir_okay=False))
@out_option("Where to write the .model file (never one of the inputs).", required=True)
@vocab_size_option("Pieces in the vocabulary (may come out smaller on a tiny corpus).")
@tokenizer_type_option("--type", "model_type")
@character_coverage_option("Share of characters the vocabulary must cover; the rest become "
                           "<unk>.")
@click.option("--column", type=click.IntRange(min=0), default=0,
              help="Use only this tab-separated column (1-based); 0 = whole line.")
@seed_option("Random seed of the trainer.")
@lowercase_option("Fold case inside the model, so it also applies to every text it reads.")
@errors_option
def tokenizer_train(inputs, out, vocab_size, model_type, character_coverage, column, seed,
                    lowercase, errors):
    """Train a sentencepiece model on text lines (files or stdin).

    \b
    Example:
      cut -f2 corpora/sentiment/movie-snippets/train.tsv | \\
        seqtool tokenizer train --vocab-size 4000 --out sentiment.model
    """
    from seqtool.checkpoint import check_writable, refuse_overwriting_input
    from seqtool.text.data import read_texts
    from seqtool.text.tokenizer import Tokenizer

    refuse_overwriting_input(out, list(inputs))
    check_writable(Path(out))

    def lines():
        for path in inputs or ["-"]:
            for line in read_texts(None, path, errors):
                if column:
                    parts = line.split("\t")
                    line = parts[column - 1] if len(parts) >= column else ""
                if line.strip():
                    yield line.strip()

    sentences = list(lines())
    if not sentences:
        raise SeqtoolError("no text to train on")
    tok = Tokenizer.train(sentences, vocab_size, model_type, character_coverage, seed,
                          lowercase)
    tok.save(out)
    click.echo(f"wrote {out}: {tok.vocab_size} pieces from {len(sentences)} lines", err=True)


def _load_tokenizer(model: str | None, side: str = "src"):
    from seqtool.checkpoint import Checkpoint
    from seqtool.inference.predict import resolve_path
    from seqtool.text.tokenizer import Tokenizer

    path = resolve_path(model, "classify")
    if path.suffix == ".model":
        return Tokenizer.load(path)
    ckpt = Checkpoint.load(path)
    try:
        return Tokenizer(ckpt.tokenizers.get(side, ckpt.tokenizers["src"]))
    except SeqtoolError as e:
        raise SeqtoolError(f"damaged checkpoint: tokenizer is {e.message}", str(path)) from None


@click.command()
@click.argument("texts", nargs=-1)
@model_option("tokenize")
@input_option()
@click.option("--ids", is_flag=True, help="Print piece ids instead of pieces.")
@click.option("--decode", is_flag=True, help="Turn pieces (or ids with --ids) back into text.")
@click.option("--target", is_flag=True, help="Use a translator's target-side tokenizer.")
@errors_option
def tokenize(texts, model, input_path, ids, decode, target, errors):
    """Split text into sentencepiece pieces (or ids), one line in, one line out.

    \b
    Example:
      echo "I love my cat." | seqtool tokenize   # ▁i ▁love ▁my ▁cat . (it lowercases)
      echo "▁i ▁love ▁my ▁cat ." | seqtool tokenize --decode   # i love my cat.
    """
    from seqtool.text.data import read_text_chunks

    tok = _load_tokenizer(model, "tgt" if target else "src")
    for part in read_text_chunks(texts, input_path, 1024, errors):
        out = []
        for line in part:
            if decode:
                items = line.split()
                if ids:
                    if not all(x.isdigit() and int(x) < tok.vocab_size for x in items):
                        emit(out)
                        raise SeqtoolError(f"--decode --ids: expected piece ids below "
                                           f"{tok.vocab_size}, got {line[:60]!r}")
                    out.append(tok.sp.decode([int(x) for x in items]))
                else:
                    out.append(tok.sp.decode_pieces(items))
            elif ids:
                out.append(" ".join(map(str, tok.encode(line))))
            else:
                out.append(" ".join(tok.pieces(line)))
        emit(out)


@click.command()
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=False))
@out_option("The combined checkpoint.", required=True)
@half_checkpoint_option()
def ensemble(checkpoints, out, half_checkpoint):
    """Combine classifiers trained apart into one that averages them.

    Each part keeps its own tokenizer and weights, so classifiers started from word vectors,
    from a language model or from scratch can vote together; each counts by its number of
    GRUs. The result works wherever a classifier does (classify, embed, evaluate).

    \b
    Example:
      S=corpora/sentiment/movie-snippets
      seqtool train classify --train $S/train.tsv --dev $S/dev.tsv --out a.pt --seed 1
      seqtool train classify --train $S/train.tsv --dev $S/dev.tsv --out b.pt --seed 2 \\
        --init checkpoints/english-gru-lm-glove.pt
      seqtool ensemble a.pt b.pt -o combined.pt
    """
    from seqtool.inference.combine import combine_classifiers

    combined = combine_classifiers(checkpoints, out, shlex.join(["seqtool", *sys.argv[1:]]),
                                   half_checkpoint)
    members = sum(part["members"] for part in combined.meta["parts"])
    click.echo(f"wrote {out}: {len(combined.meta['parts'])} classifiers, {members} GRUs",
               err=True)


@click.command()
@click.argument("checkpoint", required=False, type=click.Path(dir_okay=False))
@format_option(REPORT_FORMATS)
@json_alias
def info(checkpoint, fmt, as_json):
    """Show what a checkpoint holds: task, model, labels, training history, versions.

    \b
    Example:
      seqtool info checkpoints/sentiment-gru.pt
    """
    from seqtool.report import checkpoint_summary, print_info, print_report

    print_report(checkpoint_summary(checkpoint), report_format(fmt, as_json), print_info)


@click.command()
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=False))
@out_option("The PNG to write.", required=True)
@click.option("--chain/--no-chain", default=True, show_default=True,
              help="Also draw the runs each checkpoint started from (--init), when their "
                   "files are at hand and unchanged.")
def plot(checkpoints, out, chain):
    """Draw a checkpoint's training record: train loss, dev metric and learning rate over
    steps (PNG).

    A column per run: with several checkpoints, or a checkpoint started from another
    (--init), a pretrain → finetune chain in order. Needs matplotlib.

    \b
    Example:
      seqtool plot checkpoints/brown-genre-gru.pt --out curves.png
    """
    from seqtool.checkpoint import check_writable, refuse_overwriting_input
    from seqtool.plot import require_matplotlib, save_training_curves
    from seqtool.report import training_runs

    require_matplotlib("seqtool plot")
    refuse_overwriting_input(out, list(checkpoints))
    check_writable(Path(out))
    runs = training_runs(list(checkpoints), chain)
    save_training_curves(runs, out)
    click.echo(f"wrote {out}: {len(runs)} run(s)", err=True)
