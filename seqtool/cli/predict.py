"""`seqtool classify`, `embed`, `generate` and `translate`: use a trained model.

Each command parses its options and calls the public API (`seqtool.load`); results stream to
stdout, or with --out go to a file, written by every process of a torchrun launch together."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from seqtool.cli.common import launched_processes, refuse_texts_and_input, write_answers
from seqtool.cli.options import (
    LINE_FORMATS,
    backend_option,
    batch_size_option,
    beam_option,
    columns_option,
    device_option,
    errors_option,
    format_option,
    guidance_option,
    input_option,
    length_penalty_option,
    lexicon_option,
    max_input_length_option,
    max_output_length_option,
    model_option,
    option,
    out_option,
    precision_option,
    sampling_option,
    search_option,
    seed_option,
    temperature_option,
    top_p_option,
)
from seqtool.errors import SeqtoolError

if TYPE_CHECKING:
    from seqtool.text.columns import Columns

OUT_HELP = ("Write the results to this file instead of stdout: whole, or not at all. Under "
            "torchrun each process answers a share of -i FILE (see the README).")


def input_columns(texts: tuple[str, ...], column: str | None, header: bool | None) -> Columns:
    """The columns to read of -i FILE (`seqtool.text.columns`); a usage error beside TEXTS.
    A text that names a file is read as text, with a warning (it is a common slip)."""
    from seqtool.errors import warn_once
    from seqtool.text.columns import Columns

    if texts and (column is not None or header is not None):
        raise click.UsageError("--column and --header read -i FILE (or stdin), not TEXTS")
    for text in texts[:8]:
        if " " not in text and Path(text).suffix and Path(text).is_file():
            warn_once("text-is-file", f"{text!r} is read as a text; to read the file, give "
                      f"-i {text}")
    return Columns(column, header)


def classify_text(r: dict) -> str:
    return "" if r["label"] is None else f"{r['label']} ({r['probability']:.2f})  {r['text']}"


def classify_tsv(r: dict) -> str:
    probability = "" if r["probability"] is None else f"{r['probability']:.4f}"
    return f"{r['label'] or ''}\t{probability}\t{r['text']}"


@click.command()
@click.argument("texts", nargs=-1)
@model_option("classify")
@input_option()
@columns_option
@out_option(OUT_HELP)
@format_option(LINE_FORMATS)
@max_input_length_option
@errors_option
@device_option
@backend_option
def classify(texts, model, input_path, column, header, out, fmt, max_input_length, errors,
             device, backend):
    """Label each text with a class and its probability (S1).

    Each line is answered as soon as it has arrived (lines that are already waiting are
    batched together), so slow pipes and terminals get results at once. An empty line gets
    no label.

    \b
    Examples:
      seqtool classify "A gorgeous, witty film." "Dull and far too long."
      cut -f2 corpora/sentiment/movie-snippets/test.tsv | seqtool classify --format jsonl
    """
    refuse_texts_and_input(texts, input_path)
    import seqtool
    from seqtool.report import RecordWriter
    from seqtool.text.data import read_text_chunks

    columns = input_columns(texts, column, header)
    classifier = seqtool.load("classify", model, device, backend=backend)
    write_answers(read_text_chunks(texts, input_path, 512, errors, columns),
                  lambda chunk: [r.to_record()
                                 for r in classifier.classify(chunk, max_input_length)],
                  RecordWriter(fmt, text=classify_text, tsv=classify_tsv), out, input_path)


class NpyWriter:
    """Sentence vectors as one .npy matrix (embed --out), written as a RecordWriter would."""

    def __init__(self, dim: int, sink=None):
        self.dim, self.sink, self.rows = dim, sink, []

    def to(self, sink) -> NpyWriter:
        return NpyWriter(self.dim, sink)

    def write(self, vectors: list) -> None:
        self.rows.extend(vectors)

    def __enter__(self) -> NpyWriter:
        return self

    def __exit__(self, kind, *_) -> None:
        import numpy as np

        if kind is None:
            import io

            matrix = np.asarray(self.rows, np.float32).reshape(len(self.rows), self.dim)
            buffer = io.BytesIO()  # np.save needs a seekable file; --out may be a pipe
            np.save(buffer, matrix)
            self.sink.write(buffer.getvalue())


@click.command()
@click.argument("texts", nargs=-1)
@model_option("classify")
@input_option()
@out_option("Write a .npy matrix here instead of lines to stdout (under torchrun each "
            "process answers a share of -i FILE).")
@columns_option
@format_option(["jsonl", "json", "tsv"], default="jsonl")
@max_input_length_option
@errors_option
@device_option
@backend_option
def embed(texts, model, input_path, out, column, header, fmt, max_input_length, errors,
          device, backend):
    """One vector per input line from the classifier's encoder (JSONL, or .npy with --out).

    \b
    Examples:
      seqtool embed "I love my cat." | jq '.vector | length'
      seqtool embed -i corpora/pretraining/dev.txt --out vectors.npy
    """
    refuse_texts_and_input(texts, input_path)
    import seqtool
    from seqtool.report import RecordWriter
    from seqtool.text.data import read_text_chunks

    columns = input_columns(texts, column, header)
    classifier = seqtool.load("classify", model, device, backend=backend)
    chunks = read_text_chunks(texts, input_path, 512, errors, columns)
    if out:
        write_answers(chunks, lambda chunk: classifier.embed(chunk, max_input_length).tolist(),
                      NpyWriter(classifier.embedding_size), out, input_path)
        click.echo(f"wrote {out}", err=True)
        return

    def records(chunk):
        vectors = classifier.embed(chunk, max_input_length)
        return [{"text": t, "vector": [round(x, 5) for x in v.tolist()]}
                for t, v in zip(chunk, vectors, strict=True)]

    write_answers(chunks, records, RecordWriter(
        fmt, tsv=lambda r: r["text"] + "\t" + " ".join(map(str, r["vector"]))), None,
        input_path)


@click.command()
@model_option("generate")
@click.option("--label", "-l", required=True, help="The class to generate from.")
@click.option("-n", "count", default=1, show_default=True, type=click.IntRange(min=1),
              help="Samples (per prompt line with --input).")
@click.option("--prompt", default="", help="Continue this beginning.")
@input_option("Prompts, one per line ('-' = stdin): each line is continued -n times, and "
              "answered as soon as it has arrived.")
@columns_option
@out_option(OUT_HELP)
@temperature_option("Sampling temperature; 0 = greedy.", short=True)
@sampling_option("top_k")
@top_p_option("Nucleus sampling mass.")
@max_output_length_option
@guidance_option("Strengthen the class: contrast with the other classes (0 = off).")
@lexicon_option
@sampling_option("no_repeat_ngram")
@seed_option("Random seed; same seed, same text.")
@format_option(LINE_FORMATS)
@errors_option
@device_option
@backend_option
def generate(model, label, count, prompt, input_path, column, header, out, temperature, top_k,
             top_p, max_output_length, guidance, lexicon, no_repeat_ngram, seed, fmt, errors,
             device, backend):
    """Generate sentences for a class (S2); the model reads its own previous output.

    Each sample is written as soon as it (and those before it) ended.

    \b
    Examples:
      seqtool generate --label positive -n 5
      seqtool generate --label news -n 3   # the Brown genre generator (15 genres)
      seqtool generate --label positive --prompt "the film" --temperature 0 \\
        --no-repeat-ngram 2
      printf 'The plot\\nThe actors\\n' | seqtool generate --label negative -i -
    """
    import seqtool
    from seqtool.report import RecordWriter
    from seqtool.text.columns import Columns
    from seqtool.text.data import read_text_chunks

    if not input_path and (column is not None or header is not None):
        raise click.UsageError("--column and --header read the prompts of -i FILE")
    generator = seqtool.load("generate", model, device, backend=backend)
    options = dict(seed=seed, temperature=temperature, top_k=top_k, top_p=top_p,
                   max_output_length=max_output_length, guidance=guidance, lexicon=lexicon,
                   no_repeat_ngram=no_repeat_ngram)
    writer = RecordWriter(fmt, text=lambda r: r["text"],
                          tsv=lambda r: f"{r['label']}\t{r['logprob']:.4f}\t{r['text']}")
    # a prompt per line; each gets the same seed, so reruns agree
    prompts = (read_text_chunks(None, input_path, 64, errors, Columns(column, header))
               if input_path else [[prompt]])
    if out is None and launched_processes() == 1:
        with writer:
            for chunk in prompts:
                for line in chunk:
                    for sample in generator.generate_stream(label, count, line, **options):
                        writer.write([sample.to_record()])
        return
    write_answers(prompts, lambda chunk: [
        s.to_record() for line in chunk
        for s in generator.generate(label, count, line, **options)], writer, out, input_path)


@click.command()
@click.argument("texts", nargs=-1)
@model_option("translate")
@input_option()
@columns_option
@out_option(OUT_HELP)
@beam_option
@length_penalty_option
@search_option("n_best")
@search_option("max_length_ratio")
@max_input_length_option
@batch_size_option
@format_option(LINE_FORMATS)
@option("--attention-png", "--attention", "attention_png", old=("--attention",),
        type=click.Path(dir_okay=False), origin="translate.attention_png",
        help="Save the attention matrix of the first sentence as a PNG.")
@click.option("--show-attention", is_flag=True,
              help="Print the attention matrix of each sentence to stderr.")
@precision_option
@errors_option
@device_option
@backend_option
@click.pass_context
def translate(ctx, texts, model, input_path, column, header, out, beam, length_penalty, n_best,
              max_length_ratio, max_input_length, batch_size, fmt, attention_png,
              show_attention, precision, errors, device, backend):
    """Translate sentences (S3): one translation per input line, in order.

    Each line is answered as soon as it has arrived; empty lines stay empty.

    \b
    Examples:
      echo "Au commencement, Dieu créa les cieux et la terre." | seqtool translate
      D=corpora/translation/bible-fr-en   # Bible French only: see checkpoints/README.md
      seqtool translate --beam 5 -i $D/test.fr | sacrebleu $D/test.en
      seqtool translate --n-best 3 --format jsonl "Dieu est amour."
    """
    import seqtool
    from seqtool.report import RecordWriter
    from seqtool.text.data import read_text_chunks

    refuse_texts_and_input(texts, input_path)
    if n_best > beam:
        raise click.UsageError("--n-best cannot exceed --beam", ctx)
    columns = input_columns(texts, column, header)
    if attention_png:  # all that can be known before any work
        from seqtool.checkpoint import check_writable, refuse_overwriting_input
        from seqtool.plot import require_matplotlib

        require_matplotlib("--attention-png")
        refuse_overwriting_input(attention_png, [input_path])
        check_writable(Path(attention_png), special_ok=True)
    translator = seqtool.load("translate", model, device, backend=backend)
    want_attention = bool(attention_png or show_attention)
    first = [True]
    picture_failed: list[Exception] = []  # raised once the translations are out

    def answer(chunk):
        results = translator.translate(chunk, beam, length_penalty, n_best, max_length_ratio,
                                       max_input_length, batch_size, precision, want_attention)
        for r in results:
            if r.attention is not None:
                from seqtool.plot import attention_table, save_attention_png

                if show_attention:
                    attention_table(r.attention)
                if attention_png and first[0]:
                    try:
                        save_attention_png(r.attention, attention_png)
                        click.echo(f"wrote {attention_png}", err=True)
                    except (SeqtoolError, OSError) as e:
                        picture_failed.append(e)
                first[0] = False
        return [r.to_record() for r in results]

    write_answers(read_text_chunks(texts, input_path, 512, errors, columns), answer, RecordWriter(
        fmt, text=lambda r: r["translation"],
        tsv=lambda r: f"{r['source']}\t{r['translation']}\t{r['score']:.4f}"), out, input_path)
    if picture_failed:
        raise picture_failed[0]
