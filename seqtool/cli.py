"""The `seqtool` command line: parse options, call library functions, print results.

Heavy modules (torch, sentencepiece, sacrebleu) are imported inside the commands, so
`seqtool --help` starts instantly. Results go to stdout, messages to stderr.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from seqtool import __version__
from seqtool.errors import SeqtoolError

FORMATS = click.Choice(["text", "tsv", "jsonl"])


class SeqtoolGroup(click.Group):
    """Turns a SeqtoolError anywhere below into a one-line message and exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SeqtoolError as e:
            raise click.ClickException(str(e)) from None


def emit(lines: list[str]) -> None:
    """Write result lines and flush, so a pipeline sees each chunk as soon as it is ready."""
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()


def load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """--config FILE.toml supplies defaults for the command's options (flags still win)."""
    if value:
        import tomllib

        try:
            data = tomllib.loads(Path(value).read_text(encoding="utf-8"))
        except OSError as e:
            raise click.BadParameter(f"{value}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise click.BadParameter(f"{value}: {e}") from None
        known = {p.name for p in ctx.command.params}
        options = {k.replace("-", "_"): v for k, v in data.items()}
        unknown = sorted(set(options) - known)
        if unknown:
            raise click.BadParameter(f"{value}: unknown option(s): {', '.join(unknown)}")
        ctx.default_map = {**(ctx.default_map or {}), **options}
    return value


@click.group(cls=SeqtoolGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="seqtool")
def cli() -> None:
    """Learn from text sequences with recurrent networks.

    \b
    S1 sequence -> class:    seqtool classify "I love my cat."
    S2 class -> sequence:    seqtool generate --label positive -n 3
    S3 sequence -> sequence: echo "Au commencement" | seqtool translate --beam 5

    Every command reads stdin when no file or text is given and writes results to stdout.
    """


# ----------------------------------------------------------------------------- tokenizer


@cli.group(cls=SeqtoolGroup)
def tokenizer() -> None:
    """Train sentencepiece tokenizers."""


@tokenizer.command("train")
@click.argument("inputs", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="Where to write the .model file.")
@click.option("--vocab-size", default=8000, show_default=True)
@click.option("--type", "model_type", type=click.Choice(["unigram", "bpe"]), default="unigram",
              show_default=True)
@click.option("--character-coverage", default=1.0, show_default=True)
@click.option("--column", type=int, default=0,
              help="Use only this tab-separated column (1-based); 0 = whole line.")
@click.option("--seed", default=0, show_default=True)
def tokenizer_train(inputs, out, vocab_size, model_type, character_coverage, column, seed):
    """Train a sentencepiece model on text lines (files or stdin).

    \b
    Example:
      cut -f2 corpora/sentiment/movie-snippets/train.tsv | \\
        seqtool tokenizer train --vocab-size 4000 --out sentiment.model
    """
    from seqtool.data import iter_lines
    from seqtool.tokenizer import Tokenizer

    def lines():
        for path in inputs or ["-"]:
            for _, line in iter_lines(path):
                if column:
                    parts = line.split("\t")
                    line = parts[column - 1] if len(parts) >= column else ""
                if line.strip():
                    yield line.strip()

    sentences = list(lines())
    if not sentences:
        raise SeqtoolError("no text to train on")
    tok = Tokenizer.train(sentences, vocab_size, model_type, character_coverage, seed)
    tok.save(out)
    click.echo(f"wrote {out}: {tok.vocab_size} pieces from {len(sentences)} lines", err=True)


def _load_tokenizer(model: str | None, side: str = "src"):
    from seqtool.checkpoint import Checkpoint
    from seqtool.predict import default_checkpoint
    from seqtool.tokenizer import Tokenizer

    path = Path(model) if model else default_checkpoint("classify")
    if path.suffix == ".model":
        return Tokenizer.load(path)
    ckpt = Checkpoint.load(path)
    return Tokenizer(ckpt.tokenizers.get(side, ckpt.tokenizers["src"]))


@cli.command()
@click.argument("texts", nargs=-1)
@click.option("--model", "-m", type=click.Path(dir_okay=False),
              help="A .model file or a checkpoint (default: the shipped classifier).")
@click.option("--input", "-i", "input_path", type=click.Path(dir_okay=False))
@click.option("--ids", is_flag=True, help="Print piece ids instead of pieces.")
@click.option("--decode", is_flag=True, help="Turn pieces (or ids with --ids) back into text.")
@click.option("--target", is_flag=True, help="Use a translator's target-side tokenizer.")
def tokenize(texts, model, input_path, ids, decode, target):
    """Split text into sentencepiece pieces (or ids), one line in, one line out.

    \b
    Example:
      echo "I love my cat." | seqtool tokenize
      echo "▁I ▁love ▁my ▁cat ." | seqtool tokenize --decode
    """
    from seqtool.data import chunked, read_texts

    tok = _load_tokenizer(model, "tgt" if target else "src")
    for part in chunked(read_texts(texts, input_path), 1024):
        out = []
        for line in part:
            if decode:
                items = line.split()
                if ids:
                    out.append(tok.sp.decode([int(x) for x in items]))
                else:
                    out.append(tok.sp.decode_pieces(items))
            elif ids:
                out.append(" ".join(map(str, tok.encode(line))))
            else:
                out.append(" ".join(tok.pieces(line)))
        emit(out)


# ----------------------------------------------------------------------------- training


def training_options(f):
    """The options every `train` command shares."""
    options = [
        click.option("--config", type=click.Path(dir_okay=False), callback=load_config,
                     is_eager=True, expose_value=False,
                     help="TOML file with option values (command-line flags win)."),
        click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
                     help="Best checkpoint; the resumable last one goes to OUT.last.pt."),
        click.option("--epochs", default=10, show_default=True),
        click.option("--seed", default=0, show_default=True),
        click.option("--resume", is_flag=True, help="Continue from OUT.last.pt exactly."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                     show_default=True),
        click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32",
                     show_default=True, help="bf16 = mixed precision through torch.autocast."),
        click.option("--max-tokens", default=4096, show_default=True,
                     help="Padded tokens per batch (all processes together)."),
        click.option("--lr", default=2e-3, show_default=True),
        click.option("--warmup-steps", default=100, show_default=True),
        click.option("--schedule", type=click.Choice(["plateau", "linear", "constant"]),
                     default="plateau", show_default=True),
        click.option("--clip-norm", default=1.0, show_default=True),
        click.option("--eval-every", default=0, show_default=True,
                     help="Evaluate on dev every N steps (0 = every epoch)."),
        click.option("--patience", default=5, show_default=True,
                     help="Stop after N evaluations without improvement."),
        click.option("--max-steps", default=0, help="Stop after N steps (0 = no limit)."),
        click.option("--max-minutes", default=0.0, help="Stop after N minutes (0 = no limit)."),
        click.option("--half-checkpoint", is_flag=True, help="Store best weights in fp16."),
        click.option("--ema", default=0.0, show_default=True,
                     help="Evaluate and keep a moving average of the weights (e.g. 0.999)."),
        click.option("--vocab-size", default=8000, show_default=True),
        click.option("--tokenizer-type", type=click.Choice(["unigram", "bpe"]),
                     default="unigram", show_default=True),
        click.option("--character-coverage", default=1.0, show_default=True),
        click.option("--lowercase", is_flag=True, help="Case-fold text in the tokenizer."),
        click.option("--tokenizer", "tokenizer_path", type=click.Path(dir_okay=False),
                     help="Reuse a trained sentencepiece .model instead of training one."),
        click.option("--quiet", "-q", is_flag=True),
    ]
    for option in reversed(options):
        f = option(f)
    return f


TRAIN_KEYS = ("epochs", "seed", "device", "precision", "max_tokens", "lr", "warmup_steps",
              "schedule", "clip_norm", "eval_every", "patience", "max_steps", "max_minutes",
              "half_checkpoint", "ema", "quiet")


def run_training(task_name: str, opts: dict[str, Any], setup) -> None:
    """Shared tail of every `train` command: build the task, train, report."""
    from seqtool.tasks import TokenizerOptions, run_meta
    from seqtool.training import TrainConfig, Trainer, last_path

    out = Path(opts["out"])
    config = TrainConfig(**{k: opts[k] for k in TRAIN_KEYS})
    tok = TokenizerOptions(opts["vocab_size"], opts["tokenizer_type"],
                           opts["character_coverage"], opts["tokenizer_path"], opts["lowercase"])
    meta = run_meta("seqtool " + " ".join(sys.argv[1:]), config.seed,
                    {k: opts[k] for k in TRAIN_KEYS})
    try:
        model, task = setup(tok, meta)
    except ValueError as e:  # a model configuration that cannot be built
        raise SeqtoolError(f"model: {e}") from None
    trainer = Trainer(model, task, config, out)
    if opts["resume"]:
        trainer.resume(last_path(out))
    params = sum(p.numel() for p in model.parameters())
    trainer.log(f"training {task_name}: {params / 1e6:.2f}M parameters, "
                f"{len(task.lengths)} examples, {len(trainer.epoch_batches(0))} batches/epoch")
    result = trainer.fit()
    trainer.log(f"done: best dev {task.metric} {result['best']:.4f} after {result['steps']} "
                f"steps, {result['seconds']:.0f}s; wrote {out}")


@cli.group(cls=SeqtoolGroup)
def train() -> None:
    """Train a model: classify, generate or translate."""


@train.command("classify")
@click.option("--train", "train_path", required=True, type=click.Path(dir_okay=False),
              help="label<TAB>text lines (or .jsonl).")
@click.option("--dev", "dev_path", required=True, type=click.Path(dir_okay=False))
@training_options
@click.option("--embed-dim", default=128, show_default=True)
@click.option("--hidden-dim", default=192, show_default=True)
@click.option("--layers", default=1, show_default=True)
@click.option("--bidirectional/--unidirectional", default=True, show_default=True)
@click.option("--dropout", default=0.3, show_default=True)
@click.option("--pooling", type=click.Choice(["max", "mean", "last"]), default="max",
              show_default=True)
@click.option("--ensemble", default=1, show_default=True,
              help="Train N GRUs together and average their predictions.")
@click.option("--subword-sampling", default=0.0, show_default=True,
              help="Sample segmentations with this alpha while training (0 = off).")
def train_classify(train_path, dev_path, **opts):
    """Train a GRU sequence -> class model (S1).

    \b
    Example:
      seqtool train classify --train corpora/sentiment/movie-snippets/train.tsv \\
        --dev corpora/sentiment/movie-snippets/dev.tsv --out sentiment.pt --epochs 8
    """
    from seqtool.data import read_labeled
    from seqtool.tasks import setup_classify

    model_opts = {k: opts.pop(k) for k in
                  ("embed_dim", "hidden_dim", "layers", "bidirectional", "dropout", "pooling",
                   "ensemble")}
    alpha = opts.pop("subword_sampling")
    train_data, dev_data = list(read_labeled(train_path)), list(read_labeled(dev_path))
    run_training("classify", opts, lambda tok, meta: setup_classify(
        train_data, dev_data, dev_path, model_opts, tok, opts["seed"], meta, alpha))


@train.command("generate")
@click.option("--train", "train_path", required=True, type=click.Path(dir_okay=False),
              help="label<TAB>text lines (or .jsonl).")
@click.option("--dev", "dev_path", required=True, type=click.Path(dir_okay=False))
@training_options
@click.option("--embed-dim", default=256, show_default=True)
@click.option("--hidden-dim", default=512, show_default=True)
@click.option("--layers", default=1, show_default=True)
@click.option("--dropout", default=0.3, show_default=True)
@click.option("--tie-embeddings/--no-tie-embeddings", default=True, show_default=True)
@click.option("--class-every-step", is_flag=True,
              help="Also feed the class at every step, not only into y_h(0).")
@click.option("--class-bias/--no-class-bias", default=True, show_default=True,
              help="A learned per-class bias on the output scores.")
def train_generate(train_path, dev_path, **opts):
    """Train an LSTM class -> sequence generator with teacher forcing (S2).

    \b
    Example:
      seqtool train generate --train corpora/sentiment/movie-snippets/train.tsv \\
        --dev corpora/sentiment/movie-snippets/dev.tsv --out generator.pt
    """
    from seqtool.data import read_labeled
    from seqtool.tasks import setup_generate

    model_opts = {k: opts.pop(k) for k in ("embed_dim", "hidden_dim", "layers", "dropout",
                                            "tie_embeddings", "class_every_step",
                                            "class_bias")}
    train_data, dev_data = list(read_labeled(train_path)), list(read_labeled(dev_path))
    run_training("generate", opts, lambda tok, meta: setup_generate(
        train_data, dev_data, dev_path, model_opts, tok, opts["seed"], meta))


@train.command("translate")
@click.option("--train", "train_path", type=click.Path(dir_okay=False),
              help="source<TAB>target lines (instead of --train-src/--train-tgt).")
@click.option("--dev", "dev_path", type=click.Path(dir_okay=False))
@click.option("--train-src", type=click.Path(dir_okay=False))
@click.option("--train-tgt", type=click.Path(dir_okay=False))
@click.option("--dev-src", type=click.Path(dir_okay=False))
@click.option("--dev-tgt", type=click.Path(dir_okay=False))
@training_options
@click.option("--embed-dim", default=256, show_default=True)
@click.option("--hidden-dim", default=256, show_default=True)
@click.option("--encoder-layers", default=1, show_default=True)
@click.option("--decoder-layers", default=1, show_default=True)
@click.option("--rnn", type=click.Choice(["gru", "lstm"]), default="gru", show_default=True)
@click.option("--attention", type=click.Choice(["bahdanau", "luong-general", "luong-dot"]),
              default="bahdanau", show_default=True)
@click.option("--attention-dim", default=256, show_default=True)
@click.option("--dropout", default=0.2, show_default=True)
@click.option("--input-feeding/--no-input-feeding", default=True, show_default=True)
@click.option("--label-smoothing", default=0.1, show_default=True)
@click.option("--joint-vocab/--separate-vocab", default=True, show_default=True)
@click.option("--max-length", default=128, show_default=True,
              help="Drop training pairs longer than this many pieces.")
def train_translate(train_path, dev_path, train_src, train_tgt, dev_src, dev_tgt, **opts):
    """Train an attention encoder-decoder (S3).

    \b
    Example:
      D=corpora/translation/bible-fr-en
      seqtool train translate --train-src $D/train.fr --train-tgt $D/train.en \\
        --dev-src $D/dev.fr --dev-tgt $D/dev.en --out fr-en.pt --precision bf16
    """
    from seqtool.data import read_parallel
    from seqtool.tasks import setup_translate

    if train_path:
        train_data = read_parallel(train_path)
    elif train_src and train_tgt:
        train_data = read_parallel(train_src, train_tgt)
    else:
        raise SeqtoolError("give --train FILE.tsv or both --train-src and --train-tgt")
    if dev_path:
        dev_data = read_parallel(dev_path)
    elif dev_src and dev_tgt:
        dev_data = read_parallel(dev_src, dev_tgt)
    else:
        raise SeqtoolError("give --dev FILE.tsv or both --dev-src and --dev-tgt")
    model_opts = {k: opts.pop(k) for k in (
        "embed_dim", "hidden_dim", "encoder_layers", "decoder_layers", "rnn", "attention",
        "attention_dim", "dropout", "input_feeding", "label_smoothing")}
    joint, max_length = opts.pop("joint_vocab"), opts.pop("max_length")
    run_training("translate", opts, lambda tok, meta: setup_translate(
        train_data, dev_data, model_opts, tok, joint, max_length, opts["seed"], meta))


# ----------------------------------------------------------------------------- prediction


def model_option(task: str):
    return click.option("--model", "-m", type=click.Path(dir_okay=False),
                        help=f"Checkpoint (default: the shipped {task} model).")


@cli.command()
@click.argument("texts", nargs=-1)
@model_option("classify")
@click.option("--input", "-i", "input_path", type=click.Path(dir_okay=False),
              help="One text per line (default: stdin).")
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
def classify(texts, model, input_path, fmt):
    """Label each text with a class and its probability (S1).

    \b
    Examples:
      seqtool classify "A gorgeous, witty film." "Dull and far too long."
      cut -f2 reviews.tsv | seqtool classify --format jsonl | jq .label
    """
    from seqtool.data import chunked, read_texts
    from seqtool.predict import classify_stream, load

    loaded = load(model, "classify")
    labels = loaded.checkpoint.labels
    for part in chunked(classify_stream(loaded, read_texts(texts, input_path)), 512):
        lines = []
        for text, probs in part:
            best = int(probs.argmax())
            p = float(probs[best])
            if fmt == "jsonl":
                lines.append(json.dumps({
                    "label": labels[best], "probability": round(p, 6), "text": text,
                    "probabilities": {lab: round(float(q), 6) for lab, q in zip(labels, probs)},
                }, ensure_ascii=False))
            elif fmt == "tsv":
                lines.append(f"{labels[best]}\t{p:.4f}\t{text}")
            else:
                lines.append(f"{labels[best]} ({p:.2f})  {text}")
        emit(lines)


@cli.command()
@click.argument("texts", nargs=-1)
@model_option("classify")
@click.option("--input", "-i", "input_path", type=click.Path(dir_okay=False))
@click.option("--out", "-o", type=click.Path(dir_okay=False),
              help="Write a .npy matrix here instead of JSONL to stdout.")
def embed(texts, model, input_path, out):
    """One vector per input line from the classifier's encoder (JSONL or .npy).

    \b
    Examples:
      seqtool embed "I love my cat." | jq '.vector | length'
      seqtool embed -i sentences.txt --out vectors.npy
    """
    import numpy as np

    from seqtool.data import chunked, read_texts
    from seqtool.predict import classify_outputs, load

    loaded = load(model, "classify")
    parts = []
    for part in chunked(read_texts(texts, input_path), 512):
        vectors = classify_outputs(loaded.model, loaded.tokenizer, part, encode_only=True)
        if out:
            parts.append(vectors.numpy())
        else:
            emit([json.dumps({"text": t, "vector": [round(x, 5) for x in v.tolist()]},
                             ensure_ascii=False) for t, v in zip(part, vectors)])
    if out:
        import io

        from seqtool.checkpoint import atomic_write_bytes

        buffer = io.BytesIO()
        dim = loaded.model.encoding_dim
        np.save(buffer, np.concatenate(parts) if parts else np.zeros((0, dim), np.float32))
        atomic_write_bytes(Path(out), buffer.getvalue())
        click.echo(f"wrote {out}", err=True)


@cli.command()
@model_option("generate")
@click.option("--label", "-l", required=True, help="The class to generate from.")
@click.option("-n", "count", default=1, show_default=True, help="Number of samples.")
@click.option("--prompt", default="", help="Continue this beginning.")
@click.option("--temperature", "-t", default=0.8, show_default=True, help="0 = greedy.")
@click.option("--top-k", default=0, show_default=True, help="0 = no limit.")
@click.option("--top-p", default=1.0, show_default=True, help="Nucleus sampling mass.")
@click.option("--max-tokens", default=60, show_default=True)
@click.option("--guidance", "-g", default=1.0, show_default=True,
              help="Strengthen the class: contrast with the other classes (0 = off).")
@click.option("--seed", default=0, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["text", "jsonl"]), default="text",
              show_default=True)
def generate(model, label, count, prompt, temperature, top_k, top_p, max_tokens, guidance,
             seed, fmt):
    """Generate sentences for a class (S2); the model reads its own previous output.

    \b
    Examples:
      seqtool generate --label positive -n 5
      seqtool generate --label negative --prompt "The plot" --temperature 0
    """
    from seqtool.predict import generate as run

    if count < 1 or max_tokens < 1:
        raise SeqtoolError("-n and --max-tokens must be at least 1")
    if not 0 < top_p <= 1:
        raise SeqtoolError("--top-p must be in (0, 1]")
    from seqtool.predict import load

    loaded = load(model, "generate")
    samples = run(loaded, label, count, prompt, max_tokens, temperature, top_k, top_p, seed,
                  guidance=guidance)
    emit([json.dumps(s, ensure_ascii=False) if fmt == "jsonl" else s["text"] for s in samples])


@cli.command()
@click.argument("texts", nargs=-1)
@model_option("translate")
@click.option("--input", "-i", "input_path", type=click.Path(dir_okay=False))
@click.option("--beam", "-b", default=5, show_default=True, help="Beam size; 1 = greedy.")
@click.option("--length-penalty", default=1.0, show_default=True,
              help="alpha of ((5+len)/6)^alpha; 0 = none.")
@click.option("--n-best", default=1, show_default=True, help="Hypotheses per sentence (JSONL).")
@click.option("--max-length-ratio", default=2.0, show_default=True,
              help="Stop a translation at ratio * source pieces + 5.")
@click.option("--batch-size", default=64, show_default=True)
@click.option("--format", "fmt", type=FORMATS, default="text", show_default=True)
@click.option("--attention", "attention_png", type=click.Path(dir_okay=False),
              help="Save the attention matrix of the first sentence as a PNG.")
@click.option("--show-attention", is_flag=True,
              help="Print the attention matrix of each sentence to stderr.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32",
              show_default=True, help="bf16 runs the matrix products in bfloat16 (faster).")
def translate(texts, model, input_path, beam, length_penalty, n_best, max_length_ratio,
              batch_size, fmt, attention_png, show_attention, precision):
    """Translate sentences (S3): one translation per input line, in order.

    \b
    Examples:
      echo "Au commencement, Dieu créa les cieux et la terre." | seqtool translate
      cut -f1 pairs.tsv | seqtool translate --beam 5 | sacrebleu ref.txt
      seqtool translate --n-best 3 --format jsonl "Dieu est amour."
    """
    from seqtool.data import chunked, read_texts
    from seqtool.predict import Translation, load

    if beam < 1 or n_best < 1 or n_best > max(beam, 1):
        raise SeqtoolError("need --beam >= 1 and 1 <= --n-best <= --beam")
    loaded = load(model, "translate")
    translation = Translation(loaded.model, loaded.tokenizer, loaded.target_tokenizer, precision)
    want_attention = bool(attention_png or show_attention)
    first = True
    for part in chunked(read_texts(texts, input_path), 512):
        results = translation.translate(part, beam, length_penalty, n_best, max_length_ratio,
                                        batch_size, want_attention)
        lines = []
        for src, r in zip(part, results):
            if fmt == "jsonl":
                lines.append(json.dumps({
                    "source": src, "translation": r.text, "score": round(r.score, 4),
                    "n_best": [{"translation": translation.text(h), "score": round(h.score, 4)}
                               for h in r.hypotheses],
                }, ensure_ascii=False))
            elif fmt == "tsv":
                lines.append(f"{src}\t{r.text}\t{r.score:.4f}")
            else:
                lines.append(r.text)
            if want_attention and r.source_pieces:
                from seqtool.plot import attention_table, save_attention_png

                if show_attention:
                    attention_table(r)
                if attention_png and first:
                    save_attention_png(r, attention_png)
                    click.echo(f"wrote {attention_png}", err=True)
                first = False
        emit(lines)


# ----------------------------------------------------------------------------- evaluation


@cli.group(cls=SeqtoolGroup)
def evaluate() -> None:
    """Score a model on labelled data."""


@evaluate.command("classify")
@model_option("classify")
@click.option("--data", "-d", required=True, type=click.Path(dir_okay=False),
              help="label<TAB>text lines (or .jsonl).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def evaluate_classify(model, data, as_json):
    """Accuracy, macro-F1, per-class precision/recall and the confusion matrix.

    \b
    Example:
      seqtool evaluate classify --data corpora/sentiment/movie-snippets/test.tsv
    """
    from seqtool.evaluation import evaluate_classifier
    from seqtool.report import print_classification

    report = evaluate_classifier(model, data)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_classification(report)


@evaluate.command("generate")
@model_option("generate")
@click.option("--data", "-d", required=True, type=click.Path(dir_okay=False))
@click.option("--judge", type=click.Path(dir_okay=False),
              help="Classifier that judges class consistency (default: the shipped one).")
@click.option("--train", "train_path", type=click.Path(dir_okay=False),
              help="Training file, to count verbatim copies (default: from the model card).")
@click.option("--samples", default=200, show_default=True, help="Samples per class.")
@click.option("--temperature", default=0.8, show_default=True)
@click.option("--guidance", "-g", default=1.0, show_default=True,
              help="Class guidance of the samples, as in `seqtool generate`.")
@click.option("--seed", default=0, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def evaluate_generate(model, data, judge, train_path, samples, temperature, guidance, seed,
                      as_json):
    """Perplexity (right vs wrong class), diversity, copying and class consistency.

    \b
    Example:
      seqtool evaluate generate --data corpora/sentiment/movie-snippets/test.tsv
    """
    from seqtool.evaluation import evaluate_generator
    from seqtool.report import print_generation

    report = evaluate_generator(model, data, judge, train_path, samples, temperature, seed,
                                guidance)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_generation(report)


@evaluate.command("translate")
@model_option("translate")
@click.option("--src", required=True, type=click.Path(dir_okay=False))
@click.option("--ref", required=True, type=click.Path(dir_okay=False))
@click.option("--beam", "-b", default=5, show_default=True)
@click.option("--length-penalty", default=1.0, show_default=True)
@click.option("--batch-size", default=64, show_default=True)
@click.option("--out", "-o", type=click.Path(dir_okay=False), help="Also write the translations.")
@click.option("--json", "as_json", is_flag=True)
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32",
              show_default=True, help="bf16 runs the matrix products in bfloat16 (faster).")
def evaluate_translate(model, src, ref, beam, length_penalty, batch_size, out, as_json,
                       precision):
    """BLEU and chrF (sacrebleu, detokenized) and decoding speed.

    \b
    Example:
      D=corpora/translation/bible-fr-en
      seqtool evaluate translate --src $D/test.fr --ref $D/test.en --beam 5
    """
    from seqtool.evaluation import evaluate_translator
    from seqtool.report import print_translation

    report = evaluate_translator(model, src, ref, beam, length_penalty, batch_size, out,
                                 precision)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        print_translation(report)


# ----------------------------------------------------------------------------- info


@cli.command()
@click.argument("checkpoint", required=False, type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True)
def info(checkpoint, as_json):
    """Show what a checkpoint holds: task, model, labels, training history, versions.

    \b
    Example:
      seqtool info checkpoints/sentiment-gru.pt
    """
    from seqtool.report import checkpoint_summary, print_info

    summary = checkpoint_summary(checkpoint)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        print_info(summary)


def main() -> None:
    """Console entry point: quiet on a closed pipe and on Ctrl-C."""
    import os

    try:
        cli.main(prog_name="seqtool")
    except BrokenPipeError:
        # Python flushes stdout at exit; point it at devnull so that raises nothing.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(0)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
