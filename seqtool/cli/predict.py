"""`seqtool classify`, `embed`, `generate` and `translate`: use a trained model."""

from __future__ import annotations

from pathlib import Path

import click

from seqtool.cli.options import (
    LINE_FORMATS,
    batch_size_option,
    beam_option,
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
    seed_option,
    temperature_option,
    top_p_option,
)
from seqtool.errors import SeqtoolError


@click.command()
@click.argument("texts", nargs=-1)
@model_option("classify")
@input_option()
@format_option(LINE_FORMATS)
@max_input_length_option
@errors_option
@device_option
def classify(texts, model, input_path, fmt, max_input_length, errors, device):
    """Label each text with a class and its probability (S1).

    Each line is answered as soon as it has arrived (lines that are already waiting are
    batched together), so slow pipes and terminals get results at once.

    \b
    Examples:
      seqtool classify "A gorgeous, witty film." "Dull and far too long."
      cut -f2 reviews.tsv | seqtool classify --format jsonl | jq .label
    """
    from seqtool.inference.predict import classify_stream, load
    from seqtool.report import RecordWriter
    from seqtool.text.data import read_text_chunks

    loaded = load(model, "classify", device)
    labels = loaded.checkpoint.labels
    out = RecordWriter(fmt, text=lambda r: f"{r['label']} ({r['probability']:.2f})  {r['text']}",
                       tsv=lambda r: f"{r['label']}\t{r['probability']:.4f}\t{r['text']}")
    chunks = read_text_chunks(texts, input_path, 512, errors)
    with out:
        for part in classify_stream(loaded, chunks, max_input_length):
            records = []
            for text, probs in part:
                best = int(probs.argmax())
                records.append({
                    "label": labels[best], "probability": round(float(probs[best]), 6),
                    "text": text,
                    "probabilities": {lab: round(float(q), 6) for lab, q in zip(labels, probs)},
                })
            out.write(records)


@click.command()
@click.argument("texts", nargs=-1)
@model_option("classify")
@input_option()
@out_option("Write a .npy matrix here instead of lines to stdout.")
@format_option(["jsonl", "json", "tsv"], default="jsonl")
@max_input_length_option
@errors_option
@device_option
def embed(texts, model, input_path, out, fmt, max_input_length, errors, device):
    """One vector per input line from the classifier's encoder (JSONL, or .npy with --out).

    \b
    Examples:
      seqtool embed "I love my cat." | jq '.vector | length'
      seqtool embed -i sentences.txt --out vectors.npy
    """
    import numpy as np

    from seqtool.checkpoint import check_writable, refuse_overwriting_input
    from seqtool.decoding.scoring import classify_outputs
    from seqtool.inference.predict import load
    from seqtool.report import RecordWriter
    from seqtool.text.data import read_text_chunks

    if out:
        refuse_overwriting_input(out, [input_path])
        check_writable(Path(out))
    loaded = load(model, "classify", device)
    parts = []
    writer = RecordWriter(fmt, tsv=lambda r: r["text"] + "\t" + " ".join(map(str, r["vector"])))
    with writer:
        for part in read_text_chunks(texts, input_path, 512, errors):
            vectors = classify_outputs(loaded.model, loaded.tokenizer, part, encode_only=True,
                                       max_length=max_input_length)
            if out:
                parts.append(vectors.numpy())
            else:
                writer.write([{"text": t, "vector": [round(x, 5) for x in v.tolist()]}
                              for t, v in zip(part, vectors)])
    if out:
        import io

        from seqtool.checkpoint import atomic_write_bytes

        buffer = io.BytesIO()
        dim = loaded.model.encoding_dim
        np.save(buffer, np.concatenate(parts) if parts else np.zeros((0, dim), np.float32))
        atomic_write_bytes(Path(out), buffer.getvalue())
        click.echo(f"wrote {out}", err=True)


@click.command()
@model_option("generate")
@click.option("--label", "-l", required=True, help="The class to generate from.")
@click.option("-n", "count", default=1, show_default=True, type=click.IntRange(min=1),
              help="Samples (per prompt line with --input).")
@click.option("--prompt", default="", help="Continue this beginning.")
@input_option("Prompts, one per line ('-' = stdin): each line is continued -n times, and "
              "answered as soon as it has arrived.")
@temperature_option("Sampling temperature; 0 = greedy.", short=True)
@click.option("--top-k", default=0, show_default=True, type=click.IntRange(min=0),
              help="Sample among the k most likely pieces; 0 = no limit.")
@top_p_option("Nucleus sampling mass.")
@max_output_length_option
@guidance_option("Strengthen the class: contrast with the other classes (0 = off).")
@lexicon_option
@seed_option("Random seed; same seed, same text.")
@format_option(LINE_FORMATS)
@errors_option
@device_option
def generate(model, label, count, prompt, input_path, temperature, top_k, top_p,
             max_output_length, guidance, lexicon, seed, fmt, errors, device):
    """Generate sentences for a class (S2); the model reads its own previous output.

    \b
    Examples:
      seqtool generate --label positive -n 5
      seqtool generate --label news -n 3   # the Brown genre generator (15 genres)
      seqtool generate --label negative --prompt "The plot" --temperature 0
      printf 'The plot\nThe actors\n' | seqtool generate --label negative -i -
    """
    from seqtool.inference.predict import generate as run
    from seqtool.inference.predict import lexicon_for, load
    from seqtool.report import RecordWriter

    loaded = load(model, "generate", device)
    if model is None and label not in loaded.checkpoint.labels:
        from seqtool.inference.predict import shipped_generator_for

        other = shipped_generator_for(label)  # `--label news` picks the genre generator
        if other:
            loaded = load(other, "generate", device)
    words = lexicon_for(loaded, lexicon)
    out = RecordWriter(fmt, text=lambda r: r["text"],
                       tsv=lambda r: f"{r['label']}\t{r['logprob']:.4f}\t{r['text']}")
    with out:
        if not input_path:
            out.write(run(loaded, label, count, prompt, max_output_length, temperature, top_k,
                          top_p, seed, guidance=guidance, lexicon=words))
            return
        from seqtool.text.data import read_text_chunks

        for part in read_text_chunks(None, input_path, 64, errors):
            for line in part:  # a prompt per line; each gets the same seed, so reruns agree
                out.write(run(loaded, label, count, line, max_output_length, temperature, top_k,
                              top_p, seed, guidance=guidance, lexicon=words))


@click.command()
@click.argument("texts", nargs=-1)
@model_option("translate")
@input_option()
@beam_option
@length_penalty_option
@click.option("--n-best", default=1, show_default=True, type=click.IntRange(min=1),
              help="Hypotheses per sentence (jsonl/json), at most --beam.")
@click.option("--max-length-ratio", default=2.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Stop a translation at ratio * source pieces + 5.")
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
def translate(texts, model, input_path, beam, length_penalty, n_best, max_length_ratio,
              max_input_length, batch_size, fmt, attention_png, show_attention, precision,
              errors, device):
    """Translate sentences (S3): one translation per input line, in order.

    Each line is answered as soon as it has arrived; empty lines stay empty.

    \b
    Examples:
      echo "Au commencement, Dieu créa les cieux et la terre." | seqtool translate
      cut -f1 pairs.tsv | seqtool translate --beam 5 | sacrebleu ref.txt
      seqtool translate --n-best 3 --format jsonl "Dieu est amour."
    """
    from seqtool.decoding.translation import Translation
    from seqtool.inference.predict import load
    from seqtool.report import RecordWriter
    from seqtool.text.data import read_text_chunks

    if n_best > beam:
        raise SeqtoolError("--n-best cannot exceed --beam")
    if attention_png:
        from seqtool.checkpoint import check_writable, refuse_overwriting_input

        refuse_overwriting_input(attention_png, [input_path])
        check_writable(Path(attention_png))
    loaded = load(model, "translate", device)
    translation = Translation(loaded.model, loaded.tokenizer, loaded.target_tokenizer, precision)
    want_attention = bool(attention_png or show_attention)
    first = True
    out = RecordWriter(fmt, text=lambda r: r["translation"],
                       tsv=lambda r: f"{r['source']}\t{r['translation']}\t{r['score']:.4f}")
    with out:
        for part in read_text_chunks(texts, input_path, 512, errors):
            results = translation.translate(part, beam, length_penalty, n_best,
                                            max_length_ratio, batch_size, want_attention,
                                            max_input_length)
            records = []
            for src, r in zip(part, results):
                records.append({
                    "source": src, "translation": r.text, "score": round(r.score, 4),
                    "n_best": [{"translation": translation.text(h), "score": round(h.score, 4)}
                               for h in r.hypotheses],
                })
                if want_attention and r.source_pieces:
                    from seqtool.plot import attention_table, save_attention_png

                    if show_attention:
                        attention_table(r)
                    if attention_png and first:
                        save_attention_png(r, attention_png)
                        click.echo(f"wrote {attention_png}", err=True)
                    first = False
            out.write(records)
