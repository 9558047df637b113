"""`seqtool tokenizer train`, `tokenize`, `ensemble`, `info` and `plot`: tools around the models."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click

from seqtool.cli.common import SeqtoolGroup, emit, refuse_texts_and_input
from seqtool.cli.options import (
    REPORT_FORMATS,
    character_coverage_option,
    columns_option,
    errors_option,
    format_option,
    half_checkpoint_option,
    input_option,
    json_alias,
    lowercase_option,
    max_input_length_option,
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
@columns_option
@seed_option("Random seed of the trainer.")
@lowercase_option("Fold case inside the model, so it also applies to every text it reads.")
@errors_option
def tokenizer_train(inputs, out, vocab_size, model_type, character_coverage, column, header,
                    seed, lowercase, errors):
    """Train a sentencepiece model on text lines (files or stdin).

    \b
    Example:
      cut -f2 corpora/sentiment/movie-snippets/train.tsv | \\
        seqtool tokenizer train --vocab-size 4000 --out sentiment.model
    """
    from seqtool.checkpoint import check_writable, refuse_overwriting_input
    from seqtool.text.columns import Columns
    from seqtool.text.data import read_texts
    from seqtool.text.tokenizer import Tokenizer

    refuse_overwriting_input(out, list(inputs))
    check_writable(Path(out))
    if column == "0":  # the whole line, as before --column was shared with classify
        column = None
    # whole lines unless a column is asked for (a .tsv corpus is read whole by default)
    columns = Columns(column, header) if column or header is not None else None

    def lines():
        for path in inputs or ["-"]:
            for line in read_texts(None, path, errors, columns):
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
    from seqtool.shipped import ALL_TASKS, resolve_model
    from seqtool.text.tokenizer import Tokenizer

    path = resolve_model(model, ALL_TASKS)  # a file, or any shipped model by name
    if path.suffix == ".model":
        return Tokenizer.load(path)
    ckpt = Checkpoint.load(path)
    try:
        return Tokenizer(ckpt.tokenizers.get(side, ckpt.tokenizers["src"]))
    except SeqtoolError as e:
        raise SeqtoolError(f"damaged checkpoint: tokenizer is {e.message}", str(path)) from None


def cut_pieces(split, text: str, max_pieces: int) -> list:
    """`split(text)` (pieces or ids) cut to `max_pieces` (0 = no limit) as the models cut
    their input: the text first to the characters those can cover, then the pieces, with one
    warning on stderr."""
    from seqtool.errors import warn_once
    from seqtool.text.tokenizer import cap_characters

    if max_pieces <= 0:
        return split(text)
    pieces = split(cap_characters(text, max_pieces))
    if len(pieces) > max_pieces:
        warn_once("max-length", f"cut input longer than {max_pieces} pieces to {max_pieces} "
                  "(--max-input-length); warned once")
    return pieces[:max_pieces]


@click.command()
@click.argument("texts", nargs=-1)
@model_option("tokenize")
@input_option()
@click.option("--ids", is_flag=True, help="Print piece ids instead of pieces.")
@click.option("--decode", is_flag=True, help="Turn pieces (or ids with --ids) back into text.")
@click.option("--target", is_flag=True, help="Use a translator's target-side tokenizer.")
@max_input_length_option
@errors_option
def tokenize(texts, model, input_path, ids, decode, target, max_input_length, errors):
    """Split text into sentencepiece pieces (or ids), one line in, one line out.

    \b
    Example:
      echo "I love my cat." | seqtool tokenize   # ▁i ▁love ▁my ▁cat . (it lowercases)
      echo "▁i ▁love ▁my ▁cat ." | seqtool tokenize --decode   # i love my cat.
    """
    refuse_texts_and_input(texts, input_path)
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
            else:  # cut as the models' input is, so a 50 MB line costs what a sentence does
                out.append(" ".join(map(str, cut_pieces(
                    tok.encode if ids else tok.pieces, line, max_input_length))))
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
        --init checkpoints/english-gru-lm-glove.seqtool
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
      seqtool info checkpoints/sentiment-gru.seqtool
      seqtool info bible-fr-en       # a shipped model by name (`seqtool models` lists them)
    """
    from seqtool.report import checkpoint_summary, print_info, print_report
    from seqtool.shipped import ALL_TASKS, resolve_model

    path = str(resolve_model(checkpoint, ALL_TASKS))
    print_report(checkpoint_summary(path), report_format(fmt, as_json), print_info)


def _size(n: int | None) -> str:
    return "missing" if n is None else f"{n / 1e6:.1f} MB"


def _what(row: dict) -> str:
    """A model's labels (a few, and how many) or languages."""
    labels = row["labels"]
    if not labels:
        return row["languages"]
    shown = ", ".join(labels[:3]) + (", …" if len(labels) > 3 else "")
    return shown if len(labels) <= 3 else f"{len(labels)} labels: {shown}"


@click.command()
@format_option(["text", "tsv", "jsonl", "json"])
def models(fmt):
    """List the shipped models: name, task, labels or languages, domain, size and score.

    A name works wherever a model does: -m, --init, --teacher, info, tokenize, serve and
    seqtool.load. Reads no model, so it answers at once.

    \b
    Example:
      seqtool models
      seqtool models --format jsonl | jq -r 'select(.task == "classify") | .name'
    """
    from seqtool.report import RecordWriter, write_stdout
    from seqtool.shipped import checkpoints_folder, listing

    rows = listing()
    if fmt != "text":
        with RecordWriter(fmt, tsv=lambda r: "\t".join(
                [r["name"], r["task"], ",".join(r["labels"]) or r["languages"], r["domain"],
                 str(r["bytes"] or ""), r["score"]])) as writer:
            writer.write(rows)
        return
    table = [("name", "task", "labels / languages", "size", "score", "domain")]
    table += [(r["name"], r["task"], _what(r), _size(r["bytes"]), r["score"], r["domain"])
              for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[5]
             for row in table]
    write_stdout("\n".join(lines) + f"\n(files in {checkpoints_folder()})\n")


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
      seqtool plot checkpoints/brown-genre-gru.seqtool --out curves.png
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
