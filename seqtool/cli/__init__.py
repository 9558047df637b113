"""The `seqtool` command line: parse options, call library functions, print results.

Heavy modules (torch, sentencepiece, sacrebleu) are imported inside the commands, so
`seqtool --help` starts instantly. Results go to stdout, messages to stderr.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from seqtool import __version__
from seqtool.errors import SeqtoolError, reset_warnings

LINE_FORMATS = ["text", "tsv", "jsonl", "json"]  # one result per input line
REPORT_FORMATS = ["text", "json", "jsonl"]  # one report (tables, or one JSON document)


class Option(click.Option):
    """A click option whose old spellings (`old=[...]`, also listed among its names) keep
    working but are left out of --help, so one vocabulary shows while old scripts still run."""

    def __init__(self, *args: Any, old: tuple[str, ...] = (), **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.old = set(old)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown, secondary = self.opts, self.secondary_opts
        self.opts = [o for o in shown if o not in self.old]
        self.secondary_opts = [o for o in secondary if o not in self.old]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts, self.secondary_opts = shown, secondary


class PipeClosed(Exception):
    """The reader of stdout went away (`| head`); raised past click, which would exit 1."""


class SeqtoolGroup(click.Group):
    """Turns a SeqtoolError anywhere below into a one-line message and exit code 1 (or the
    error's own `exit_code`, e.g. 130 for training stopped by Ctrl-C)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SeqtoolError as e:
            error = click.ClickException(str(e))
            error.exit_code = getattr(e, "exit_code", 1)
            raise error from None
        except BrokenPipeError:
            raise PipeClosed() from None


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


def input_option(help: str = "One text per line; '-' = stdin (the default when no TEXTS).",
                 required: bool = False, old: tuple[str, ...] = ()):
    return click.option("--input", "-i", *old, "input_path", cls=Option, old=old,
                        required=required, type=click.Path(dir_okay=False), help=help)


def format_option(choices: list[str], default: str = "text"):
    help = {"text": "text = for people", "tsv": "tsv = tab-separated columns",
            "jsonl": "jsonl = one JSON object per line",
            "json": "json = one JSON document"}
    return click.option("--format", "fmt", type=click.Choice(choices), default=default,
                        show_default=True,
                        help="Output format: " + "; ".join(help[c] for c in choices) + ".")


def json_alias(f):
    """The old `--json` flag, now `--format json` (hidden)."""
    return click.option("--json", "as_json", is_flag=True, hidden=True,
                        help="Same as --format json.")(f)


def errors_option(f):
    return click.option(
        "--errors", type=click.Choice(["strict", "skip", "replace"]), default="strict",
        show_default=True,
        help="Input lines that are not valid UTF-8: strict = stop with an error after "
             "answering the lines before; skip = leave the line out (warns once); "
             "replace = read bad bytes as U+FFFD.")(f)


def lexicon_option(f):
    return click.option(
        "--lexicon", default="model", show_default=True, metavar="model|none|FILE",
        help="Words samples may use: model = the words of the model's training text, stored "
             "in it (no limit for a model that stores none); none = any spelling of pieces; "
             "FILE = the words of a word list or text.")(f)


def device_option(f):
    return click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                        show_default=True,
                        help="Where the model runs (auto = cuda when available).")(f)


def max_length_option(f):
    from_predict = 512  # = predict.DEFAULT_MAX_LENGTH (not imported: --help stays light)
    return click.option(
        "--max-length", default=from_predict, show_default=True, type=click.IntRange(min=0),
        help="Cut each input to this many sentencepiece pieces (one warning on stderr when "
             "it happens); keeps a 1 MB line fast and small. 0 = no limit.")(f)


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
    reset_warnings()  # each warning once per command run


# ----------------------------------------------------------------------------- tokenizer


@cli.group(cls=SeqtoolGroup)
def tokenizer() -> None:
    """Train sentencepiece tokenizers."""


@tokenizer.command("train")
@click.argument("inputs", nargs=-1, type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="Where to write the .model file (never one of the inputs).")
@click.option("--vocab-size", default=8000, show_default=True, type=click.IntRange(min=5),
              help="Pieces in the vocabulary (may come out smaller on a tiny corpus).")
@click.option("--type", "model_type", type=click.Choice(["unigram", "bpe"]), default="unigram",
              show_default=True, help="Sentencepiece algorithm.")
@click.option("--character-coverage", default=1.0, show_default=True,
              type=click.FloatRange(0, 1, min_open=True),
              help="Share of characters the vocabulary must cover; the rest become <unk>.")
@click.option("--column", type=click.IntRange(min=0), default=0,
              help="Use only this tab-separated column (1-based); 0 = whole line.")
@click.option("--seed", default=0, show_default=True, help="Random seed of the trainer.")
@click.option("--lowercase", is_flag=True,
              help="Fold case inside the model, so it also applies to every text it reads.")
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


@cli.command()
@click.argument("texts", nargs=-1)
@click.option("--model", "-m", type=click.Path(dir_okay=False),
              help="A .model file or a checkpoint (default: the shipped classifier, found in "
                   "$SEQTOOL_CHECKPOINTS or the repository's checkpoints/).")
@input_option()
@click.option("--ids", is_flag=True, help="Print piece ids instead of pieces.")
@click.option("--decode", is_flag=True, help="Turn pieces (or ids with --ids) back into text.")
@click.option("--target", is_flag=True, help="Use a translator's target-side tokenizer.")
@errors_option
def tokenize(texts, model, input_path, ids, decode, target, errors):
    """Split text into sentencepiece pieces (or ids), one line in, one line out.

    \b
    Example:
      echo "I love my cat." | seqtool tokenize
      echo "▁I ▁love ▁my ▁cat ." | seqtool tokenize --decode
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


# ----------------------------------------------------------------------------- training


def training_options(f):
    """The options every `train` command shares."""
    options = [
        click.option("--config", type=click.Path(dir_okay=False), callback=load_config,
                     is_eager=True, expose_value=False,
                     help="TOML file with option values (command-line flags win)."),
        click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
                     help="Best checkpoint; the resumable last one goes to OUT.last.pt."),
        click.option("--epochs", default=10, show_default=True, type=click.IntRange(min=1),
                     help="Passes over the training data."),
        click.option("--seed", default=0, show_default=True,
                     help="Random seed: same seed, same data, same model."),
        click.option("--resume", is_flag=True, help="Continue from OUT.last.pt exactly."),
        click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto",
                     show_default=True, help="Where to train (auto = cuda when available)."),
        click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32",
                     show_default=True, help="bf16 = mixed precision through torch.autocast."),
        click.option("--max-tokens", default=4096, show_default=True,
                     help="Padded tokens per batch (all processes together)."),
        click.option("--lr", default=2e-3, show_default=True,
                     type=click.FloatRange(min=0, min_open=True),
                     help="Peak learning rate (Adam)."),
        click.option("--warmup-steps", default=100, show_default=True,
                     type=click.IntRange(min=0), help="Steps of linear learning-rate warm-up."),
        click.option("--schedule", type=click.Choice(["plateau", "linear", "constant"]),
                     default="plateau", show_default=True,
                     help="After warm-up: halve on a dev plateau, decay linearly, or keep."),
        click.option("--clip-norm", default=1.0, show_default=True,
                     type=click.FloatRange(min=0), help="Clip the gradient norm (0 = off)."),
        click.option("--eval-every", default=0, show_default=True,
                     help="Evaluate on dev every N steps (0 = every epoch)."),
        click.option("--patience", default=5, show_default=True,
                     help="Stop after N evaluations without improvement."),
        click.option("--max-steps", default=0, help="Stop after N steps (0 = no limit)."),
        click.option("--max-minutes", default=0.0, help="Stop after N minutes (0 = no limit)."),
        click.option("--half-checkpoint", is_flag=True, help="Store best weights in fp16."),
        click.option("--keep", type=click.Choice(["best", "last"]), default="best",
                     show_default=True,
                     help="What --out holds: the weights of the best dev evaluation, or of "
                          "the last (for objectives the dev metric does not measure, such as "
                          "--discriminative-weight; OUT.last.pt holds the optimizer too)."),
        click.option("--ema", default=0.0, show_default=True,
                     help="Evaluate and keep a moving average of the weights (e.g. 0.999)."),
        click.option("--vocab-size", default=8000, show_default=True,
                     type=click.IntRange(min=5), help="Sentencepiece vocabulary size."),
        click.option("--tokenizer-type", type=click.Choice(["unigram", "bpe"]),
                     default="unigram", show_default=True, help="Sentencepiece algorithm."),
        click.option("--character-coverage", default=1.0, show_default=True,
                     type=click.FloatRange(0, 1, min_open=True),
                     help="Share of characters the vocabulary must cover."),
        click.option("--lowercase", is_flag=True, help="Case-fold text in the tokenizer."),
        click.option("--tokenizer", "tokenizer_path", type=click.Path(dir_okay=False),
                     help="Reuse a trained sentencepiece .model instead of training one."),
        click.option("--quiet", "-q", is_flag=True, help="No progress lines on stderr."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


TRAIN_KEYS = ("epochs", "seed", "device", "precision", "max_tokens", "lr", "warmup_steps",
              "schedule", "clip_norm", "eval_every", "patience", "max_steps", "max_minutes",
              "half_checkpoint", "keep", "ema", "quiet", "pretrained_lr_scale",
              "gradual_unfreezing")


def init_options(f):
    """Finetuning from `seqtool pretrain`'s language model or word vectors (S1 and S2)."""
    f = click.option("--gradual-unfreezing", is_flag=True,
                     help="With --init or --embeddings: the new layers learn alone in the "
                          "first epoch, then one pretrained layer joins each epoch from the "
                          "top (ULMFiT).")(f)
    f = click.option("--pretrained-lr-scale", default=1.0, show_default=True,
                     type=click.FloatRange(min=0),
                     help="With --init or --embeddings: learning rate of the pretrained "
                          "layers, relative to --lr (1 chosen on dev over 0.5; 0 = frozen).")(f)
    return click.option("--init", type=click.Path(dir_okay=False),
                        help="Start from a language model of `seqtool pretrain`: its tokenizer "
                             "(in place of --vocab-size, --lowercase, --tokenizer), embeddings "
                             "and recurrent layers (and their sizes, unless given). Or from a "
                             "model of this task with the same labels and sizes: its tokenizer "
                             "and all its weights, to go on with other options or data.")(f)


def embeddings_option(f):
    """Piece embeddings from word vectors (S1, S2 and pretraining)."""
    return click.option("--embeddings", type=click.Path(dir_okay=False),
                        help="Initialise the piece embeddings from word vectors in the text "
                             "format of GloVe, word2vec or fastText (`word v1 ... vD` a line; "
                             "D must equal --embed-dim), e.g. GloVe's "
                             "corpora/embeddings/glove-6b-100d.vec (python corpora/prepare.py "
                             "--only embeddings). "
                             "Pieces that are no word of the file start at random.")(f)


def sizes_from_init(task_name: str, opts: dict[str, Any], model_opts: dict[str, Any]) -> None:
    """With --init, the sizes the command line leaves at their defaults are the starting
    model's (sizes given that differ from it stay, and fail in one line when copied)."""
    from click.core import ParameterSource

    from seqtool.training.pretrained import ARCHITECTURE, load_language_model

    if not opts.get("init"):
        return
    ctx = click.get_current_context()
    sizes = load_language_model(opts["init"], task_name).model_config
    for name in ARCHITECTURE:
        if (name in model_opts and name in sizes
                and ctx.get_parameter_source(name) == ParameterSource.DEFAULT):
            model_opts[name] = sizes[name]


def run_training(task_name: str, opts: dict[str, Any], setup) -> None:
    """Shared tail of every `train` command: build the task, train, report.

    With --resume the tokenizers come from OUT.last.pt, and the run is refused when its data
    or options differ from the run that wrote it."""
    from seqtool.checkpoint import Checkpoint, check_writable, remove_stale_temp_files
    from seqtool.config import TrainConfig
    from seqtool.training.loop import Trainer, check_same_run, last_path, run_fingerprint
    from seqtool.training.recipes import TokenizerOptions, run_meta

    out = Path(opts["out"])
    config = TrainConfig(**{k: opts[k] for k in TRAIN_KEYS if k in opts})
    fingerprint = run_fingerprint(click.get_current_context().params)
    remove_stale_temp_files(out)
    check_writable(out)
    check_writable(last_path(out))
    resumed = None
    if opts["resume"]:
        resumed = Checkpoint.load(last_path(out))
        check_same_run(resumed.meta.get("run"), fingerprint, last_path(out))
    if opts.get("init") and opts.get("embeddings"):
        raise SeqtoolError("--embeddings and --init both give the embeddings: pass one")
    language_model = None
    if opts.get("init"):  # its tokenizer, then its weights
        from seqtool.training.pretrained import load_language_model

        language_model = load_language_model(opts["init"], task_name)
    trained = resumed.tokenizers if resumed else (
        language_model.tokenizers if language_model else None)
    tok = TokenizerOptions(opts["vocab_size"], opts["tokenizer_type"],
                           opts["character_coverage"], opts["tokenizer_path"], opts["lowercase"],
                           trained=trained)
    meta = run_meta("seqtool " + " ".join(sys.argv[1:]), config.seed,
                    {k: opts[k] for k in TRAIN_KEYS if k in opts})
    meta["run"] = fingerprint
    if language_model is not None and task_name in ("generate", "pretrain"):
        meta["lexicon"] = list(language_model.meta.get("lexicon", []))
    try:
        model, task = setup(tok, meta)
    except ValueError as e:  # a model configuration that cannot be built
        raise SeqtoolError(f"model: {e}") from None
    pretrained: dict[str, int] = {}
    if language_model is not None and language_model.task == task_name:
        labels = task.checkpoint(model).labels
        if labels != language_model.labels:
            raise SeqtoolError(f"--init: the model's labels are {', '.join(language_model.labels)}"
                               f"; the training data's are {', '.join(labels)}", opts["init"])
    if language_model is not None:
        from seqtool.training.pretrained import init_from_language_model, thaw_epochs

        pretrained = thaw_epochs(init_from_language_model(model, language_model, opts["init"]),
                                 bool(opts.get("gradual_unfreezing")))
    found_vectors = None
    if opts.get("embeddings"):
        from seqtool.text.tokenizer import Tokenizer
        from seqtool.training.pretrained import init_word_vectors, piece_embeddings, thaw_epochs

        tokenizer = Tokenizer(task.checkpoint(model).tokenizers["src"])
        if resumed is None:
            pieces = tokenizer.id_to_piece(range(tokenizer.vocab_size))
            names, found = init_word_vectors(model, pieces, opts["embeddings"])
            found_vectors = found, len(pieces)
        else:  # the weights come from the checkpoint; the tables keep their own rate
            names = {f"{n}.weight" for n in piece_embeddings(model, tokenizer.vocab_size)}
        pretrained = thaw_epochs(names, bool(opts.get("gradual_unfreezing")))
    trainer = Trainer(model, task, config, out, pretrained)
    if found_vectors is not None:
        trainer.log(f"--embeddings: {found_vectors[0]} of {found_vectors[1]} pieces are words "
                    f"with a vector")
    if resumed is not None:
        trainer.resume(resumed, last_path(out))
    params = sum(p.numel() for p in model.parameters())
    trainer.log(f"training {task_name}: {params / 1e6:.2f}M parameters, "
                f"{len(task.lengths)} examples, {len(trainer.epoch_batches(0))} batches/epoch")
    result = trainer.fit()
    trainer.log(f"done: {config.keep} dev {task.metric} {result['best']:.4f} after "
                f"{result['steps']} steps, {result['seconds']:.0f}s; wrote {out}")


def refuse_overwriting_data(opts: dict[str, Any], *inputs: str | None) -> None:
    """--out (and OUT.last.pt) must not be a data or tokenizer file of the run."""
    from seqtool.checkpoint import refuse_overwriting_input
    from seqtool.training.loop import last_path

    inputs = (*inputs, opts.get("tokenizer_path"))
    for target in (Path(opts["out"]), last_path(Path(opts["out"]))):
        refuse_overwriting_input(target, list(inputs))


@cli.group(cls=SeqtoolGroup)
def train() -> None:
    """Train a model: classify, generate or translate."""


@train.command("classify")
@click.option("--train", "train_path", required=True, type=click.Path(dir_okay=False),
              help="label<TAB>text lines (or .jsonl).")
@click.option("--dev", "dev_path", required=True, type=click.Path(dir_okay=False),
              help="Held-out data in the same format; picks the best checkpoint.")
@training_options
@click.option("--embed-dim", default=128, show_default=True, type=click.IntRange(min=1),
              help="Size of the piece embeddings.")
@click.option("--hidden-dim", default=192, show_default=True, type=click.IntRange(min=1),
              help="GRU state size (per direction).")
@click.option("--layers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Stacked GRU layers.")
@click.option("--bidirectional/--unidirectional", default=True, show_default=True,
              help="Read the text in both directions.")
@click.option("--dropout", default=0.3, show_default=True, type=click.FloatRange(0, 1),
              help="Dropout rate.")
@click.option("--pooling", type=click.Choice(["max", "mean", "last", "concat"]),
              default="max", show_default=True,
              help="How the GRU states become one sentence vector (concat: last, max and mean "
              "side by side, as ULMFiT).")
@click.option("--ensemble", default=1, show_default=True,
              help="Train N GRUs together and average their predictions.")
@click.option("--adversarial", default=0.0, show_default=True, type=click.FloatRange(min=0),
              metavar="RADIUS",
              help="Adversarial training (Miyato et al. 2017): also learn from each text's "
              "embeddings shifted, by RADIUS times their norm, the way that raises the loss "
              "most (0 = off; a step costs about twice as much, and the training loss shown "
              "includes both terms).")
@click.option("--subword-sampling", default=0.0, show_default=True,
              help="Sample segmentations with this alpha while training (0 = off).")
@click.option("--max-length", default=256, show_default=True, type=click.IntRange(min=1),
              help="Cut training texts to this many pieces (warns once).")
@init_options
@embeddings_option
def train_classify(train_path, dev_path, **opts):
    """Train a GRU sequence -> class model (S1).

    \b
    Example:
      seqtool train classify --train corpora/sentiment/movie-snippets/train.tsv \\
        --dev corpora/sentiment/movie-snippets/dev.tsv --out sentiment.pt --epochs 8
    """
    from seqtool.text.data import read_labeled
    from seqtool.training.recipes import setup_classify

    model_opts = {k: opts.pop(k) for k in
                  ("embed_dim", "hidden_dim", "layers", "bidirectional", "dropout", "pooling",
                   "ensemble", "adversarial")}
    sizes_from_init("classify", opts, model_opts)
    alpha, max_length = opts.pop("subword_sampling"), opts.pop("max_length")
    refuse_overwriting_data(opts, train_path, dev_path, opts["init"])
    train_data, dev_data = list(read_labeled(train_path)), list(read_labeled(dev_path))
    run_training("classify", opts, lambda tok, meta: setup_classify(
        train_data, dev_data, dev_path, model_opts, tok, opts["seed"], meta, alpha,
        max_length))


@train.command("generate")
@click.option("--train", "train_path", required=True, type=click.Path(dir_okay=False),
              help="label<TAB>text lines (or .jsonl).")
@click.option("--dev", "dev_path", required=True, type=click.Path(dir_okay=False),
              help="Held-out data in the same format; picks the best checkpoint.")
@training_options
@click.option("--embed-dim", default=256, show_default=True, type=click.IntRange(min=1),
              help="Size of the piece embeddings.")
@click.option("--hidden-dim", default=512, show_default=True, type=click.IntRange(min=1),
              help="LSTM state size.")
@click.option("--layers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Stacked LSTM layers.")
@click.option("--dropout", default=0.3, show_default=True, type=click.FloatRange(0, 1),
              help="Dropout rate.")
@click.option("--tie-embeddings/--no-tie-embeddings", default=True, show_default=True,
              help="Share input embeddings and output projection.")
@click.option("--class-every-step", is_flag=True,
              help="Also feed the class at every step, not only into y_h(0).")
@click.option("--class-bias/--no-class-bias", default=True, show_default=True,
              help="A learned per-class bias on the output scores.")
@click.option("--discriminative-weight", default=0.0, show_default=True,
              type=click.FloatRange(min=0),
              help="Also train the generator as a classifier by Bayes' rule, p(c|x) ∝ "
                   "p(x|c) (GeDi): its loss per sentence, times this weight, is added to "
                   "the likelihood's, so samples keep to their class without guidance. Each "
                   "step runs every class: as many times the compute as classes.")
@click.option("--max-length", default=256, show_default=True, type=click.IntRange(min=1),
              help="Drop training sentences longer than this many pieces (warns once).")
@init_options
@embeddings_option
def train_generate(train_path, dev_path, **opts):
    """Train an LSTM class -> sequence generator with teacher forcing (S2).

    \b
    Example:
      seqtool train generate --train corpora/sentiment/movie-snippets/train.tsv \\
        --dev corpora/sentiment/movie-snippets/dev.tsv --out generator.pt
    """
    from seqtool.text.data import read_labeled
    from seqtool.training.recipes import setup_generate

    model_opts = {k: opts.pop(k) for k in ("embed_dim", "hidden_dim", "layers", "dropout",
                                            "tie_embeddings", "class_every_step",
                                            "class_bias", "discriminative_weight")}
    sizes_from_init("generate", opts, model_opts)
    max_length = opts.pop("max_length")
    refuse_overwriting_data(opts, train_path, dev_path, opts["init"])
    train_data, dev_data = list(read_labeled(train_path)), list(read_labeled(dev_path))
    run_training("generate", opts, lambda tok, meta: setup_generate(
        train_data, dev_data, dev_path, model_opts, tok, opts["seed"], meta, max_length))


@train.command("translate")
@click.option("--train", "train_path", type=click.Path(dir_okay=False),
              help="source<TAB>target lines (instead of --train-src/--train-tgt).")
@click.option("--dev", "dev_path", type=click.Path(dir_okay=False),
              help="Dev source<TAB>target lines (instead of --dev-src/--dev-tgt).")
@click.option("--train-src", type=click.Path(dir_okay=False),
              help="Training source sentences, one per line (with --train-tgt).")
@click.option("--train-tgt", type=click.Path(dir_okay=False),
              help="Training target sentences, aligned with --train-src.")
@click.option("--dev-src", type=click.Path(dir_okay=False),
              help="Dev source sentences (with --dev-tgt).")
@click.option("--dev-tgt", type=click.Path(dir_okay=False),
              help="Dev target sentences, aligned with --dev-src.")
@training_options
@click.option("--embed-dim", default=256, show_default=True, type=click.IntRange(min=1),
              help="Size of the piece embeddings.")
@click.option("--hidden-dim", default=256, show_default=True, type=click.IntRange(min=1),
              help="Decoder state size (and per encoder direction).")
@click.option("--encoder-layers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Stacked bidirectional encoder layers.")
@click.option("--decoder-layers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Stacked decoder layers.")
@click.option("--rnn", type=click.Choice(["gru", "lstm"]), default="gru", show_default=True,
              help="Recurrent cell of encoder and decoder.")
@click.option("--attention", type=click.Choice(["bahdanau", "luong-general", "luong-dot"]),
              default="bahdanau", show_default=True, help="Attention type.")
@click.option("--attention-dim", default=256, show_default=True, type=click.IntRange(min=1),
              help="Size of the additive (bahdanau) attention layer.")
@click.option("--dropout", default=0.2, show_default=True, type=click.FloatRange(0, 1),
              help="Dropout rate.")
@click.option("--input-feeding/--no-input-feeding", default=True, show_default=True,
              help="Feed the previous attention output into the next decoder step.")
@click.option("--label-smoothing", default=0.1, show_default=True,
              type=click.FloatRange(0, 1, max_open=True), help="Label smoothing of the loss.")
@click.option("--joint-vocab/--separate-vocab", default=True, show_default=True,
              help="One sentencepiece model for both languages, or one each.")
@click.option("--max-length", default=128, show_default=True, type=click.IntRange(min=1),
              help="Drop training pairs longer than this many pieces (warns once).")
def train_translate(train_path, dev_path, train_src, train_tgt, dev_src, dev_tgt, **opts):
    """Train an attention encoder-decoder (S3).

    \b
    Example:
      D=corpora/translation/bible-fr-en
      seqtool train translate --train-src $D/train.fr --train-tgt $D/train.en \\
        --dev-src $D/dev.fr --dev-tgt $D/dev.en --out fr-en.pt --precision bf16
    """
    from seqtool.text.data import read_parallel
    from seqtool.training.recipes import setup_translate

    refuse_overwriting_data(opts, train_path, dev_path, train_src, train_tgt, dev_src, dev_tgt)
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


@cli.command()
@click.option("--train", "train_path", required=True, multiple=True,
              type=click.Path(dir_okay=False),
              help="Unlabelled text, one sentence per line (repeat for more files).")
@click.option("--dev", "dev_path", required=True, type=click.Path(dir_okay=False),
              help="Held-out text of the same kind; picks the best checkpoint.")
@training_options
@click.option("--rnn", type=click.Choice(["gru", "lstm"]), default="gru", show_default=True,
              help="gru to initialise classifiers, lstm for generators.")
@click.option("--embed-dim", default=128, show_default=True, type=click.IntRange(min=1),
              help="Size of the piece embeddings.")
@click.option("--hidden-dim", default=192, show_default=True, type=click.IntRange(min=1),
              help="RNN state size (per direction).")
@click.option("--layers", default=1, show_default=True, type=click.IntRange(min=1),
              help="Stacked RNN layers (one when bidirectional).")
@click.option("--bidirectional/--unidirectional", default=True, show_default=True,
              help="Also learn to predict each piece from the text after it (classifiers).")
@click.option("--dropout", default=0.1, show_default=True, type=click.FloatRange(0, 1),
              help="Dropout rate.")
@click.option("--max-length", default=128, show_default=True, type=click.IntRange(min=1),
              help="Drop training lines longer than this many pieces (warns once).")
@click.option("--init", type=click.Path(dir_okay=False),
              help="Go on from this language model (its tokenizer, sizes and weights) on new "
                   "text, e.g. a task's own training text before finetuning (ULMFiT).")
@embeddings_option
def pretrain(train_path, dev_path, **opts):
    """Pretrain a recurrent language model on unlabelled text, for `train classify|generate
    --init`: its checkpoint holds the tokenizer, the embeddings and the recurrent layers.

    \b
    Examples:
      P=corpora/pretraining S=corpora/sentiment/movie-snippets
      seqtool pretrain --train $P/train.txt --dev $P/dev.txt --out lm-gru.pt
      seqtool train classify --init lm-gru.pt --train $S/train.tsv --dev $S/dev.tsv \\
        --out sentiment.pt
      seqtool pretrain --train $P/train.txt --dev $P/dev.txt --out lm-lstm.pt --rnn lstm \\
        --unidirectional --embed-dim 256 --hidden-dim 512
      cut -f2 $S/train.tsv > snippets.txt; cut -f2 $S/dev.tsv > snippets-dev.txt
      seqtool pretrain --init lm-gru.pt --train snippets.txt --dev snippets-dev.txt \\
        --out lm-gru-snippets.pt --epochs 14 --patience 2
    """
    from seqtool.text.data import iter_lines
    from seqtool.training.pretrained import ARCHITECTURE, load_language_model
    from seqtool.training.recipes import setup_pretrain

    model_opts = {k: opts.pop(k) for k in (*ARCHITECTURE, "dropout")}
    if opts["init"]:  # its sizes, whatever the flags say
        sizes = load_language_model(opts["init"]).model_config
        model_opts.update({k: sizes[k] for k in ARCHITECTURE})
    max_length = opts.pop("max_length")
    refuse_overwriting_data(opts, *train_path, dev_path, opts["init"])
    train_texts = [line for path in train_path for _, line in iter_lines(path)]
    dev_texts = [line for _, line in iter_lines(dev_path)]
    run_training("pretrain", opts, lambda tok, meta: setup_pretrain(
        train_texts, dev_texts, model_opts, tok, opts["seed"], meta, max_length))


# ----------------------------------------------------------------------------- prediction


@cli.command()
@click.argument("checkpoints", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", "-o", required=True, type=click.Path(dir_okay=False),
              help="The combined checkpoint.")
@click.option("--half-checkpoint", is_flag=True, help="Store the weights in fp16.")
def ensemble(checkpoints, out, half_checkpoint):
    """Combine classifiers trained apart into one that averages them.

    Each part keeps its own tokenizer and weights, so classifiers started from word vectors,
    from a language model or from scratch can vote together; each counts by its number of
    GRUs. The result works wherever a classifier does (classify, embed, evaluate).

    \b
    Example:
      seqtool ensemble vectors.pt lm-finetuned.pt -o combined.pt
    """
    from seqtool.inference.combine import combine_classifiers

    combined = combine_classifiers(checkpoints, out, "seqtool " + " ".join(sys.argv[1:]),
                                   half_checkpoint)
    members = sum(part["members"] for part in combined.meta["parts"])
    click.echo(f"wrote {out}: {len(combined.meta['parts'])} classifiers, {members} GRUs",
               err=True)


def model_option(task: str):
    from seqtool.shipped import SHIPPED_MODELS

    names = ", ".join(SHIPPED_MODELS[task])
    return click.option("--model", "-m", type=click.Path(dir_okay=False),
                        help=f"Checkpoint file, or the name of a shipped {task} model ({names}; "
                             "default: the first), found in $SEQTOOL_CHECKPOINTS or the "
                             "repository's checkpoints/.")


def report_format(fmt: str, as_json: bool) -> str:
    return "json" if as_json else fmt


@cli.command()
@click.argument("texts", nargs=-1)
@model_option("classify")
@input_option()
@format_option(LINE_FORMATS)
@max_length_option
@errors_option
@device_option
def classify(texts, model, input_path, fmt, max_length, errors, device):
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
        for part in classify_stream(loaded, chunks, max_length):
            records = []
            for text, probs in part:
                best = int(probs.argmax())
                records.append({
                    "label": labels[best], "probability": round(float(probs[best]), 6),
                    "text": text,
                    "probabilities": {lab: round(float(q), 6) for lab, q in zip(labels, probs)},
                })
            out.write(records)


@cli.command()
@click.argument("texts", nargs=-1)
@model_option("classify")
@input_option()
@click.option("--out", "-o", type=click.Path(dir_okay=False),
              help="Write a .npy matrix here instead of lines to stdout.")
@format_option(["jsonl", "json", "tsv"], default="jsonl")
@max_length_option
@errors_option
@device_option
def embed(texts, model, input_path, out, fmt, max_length, errors, device):
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
                                       max_length=max_length)
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


@cli.command()
@model_option("generate")
@click.option("--label", "-l", required=True, help="The class to generate from.")
@click.option("-n", "count", default=1, show_default=True, type=click.IntRange(min=1),
              help="Samples (per prompt line with --input).")
@click.option("--prompt", default="", help="Continue this beginning.")
@input_option("Prompts, one per line ('-' = stdin): each line is continued -n times, and "
              "answered as soon as it has arrived.")
@click.option("--temperature", "-t", default=0.8, show_default=True,
              type=click.FloatRange(min=0), help="Sampling temperature; 0 = greedy.")
@click.option("--top-k", default=0, show_default=True, type=click.IntRange(min=0),
              help="Sample among the k most likely pieces; 0 = no limit.")
@click.option("--top-p", default=1.0, show_default=True,
              type=click.FloatRange(0, 1, min_open=True), help="Nucleus sampling mass.")
@click.option("--max-length", "--max-tokens", "max_length", cls=Option, old=("--max-tokens",),
              default=60, show_default=True, type=click.IntRange(min=1),
              help="Longest output in pieces (the prompt not counted).")
@click.option("--guidance", "-g", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Strengthen the class: contrast with the other classes (0 = off).")
@lexicon_option
@click.option("--seed", default=0, show_default=True, help="Random seed; same seed, same text.")
@format_option(LINE_FORMATS)
@errors_option
@device_option
def generate(model, label, count, prompt, input_path, temperature, top_k, top_p, max_length,
             guidance, lexicon, seed, fmt, errors, device):
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
            out.write(run(loaded, label, count, prompt, max_length, temperature, top_k, top_p,
                          seed, guidance=guidance, lexicon=words))
            return
        from seqtool.text.data import read_text_chunks

        for part in read_text_chunks(None, input_path, 64, errors):
            for line in part:  # a prompt per line; each gets the same seed, so reruns agree
                out.write(run(loaded, label, count, line, max_length, temperature, top_k,
                              top_p, seed, guidance=guidance, lexicon=words))


@cli.command()
@click.argument("texts", nargs=-1)
@model_option("translate")
@input_option()
@click.option("--beam", "-b", default=5, show_default=True, type=click.IntRange(min=1),
              help="Beam size; 1 = greedy.")
@click.option("--length-penalty", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="alpha of ((5+len)/6)^alpha; 0 = none.")
@click.option("--n-best", default=1, show_default=True, type=click.IntRange(min=1),
              help="Hypotheses per sentence (jsonl/json), at most --beam.")
@click.option("--max-length-ratio", default=2.0, show_default=True,
              type=click.FloatRange(min=0, min_open=True),
              help="Stop a translation at ratio * source pieces + 5.")
@max_length_option
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1),
              help="Sentences decoded together.")
@format_option(LINE_FORMATS)
@click.option("--attention-png", "--attention", "attention_png", cls=Option,
              old=("--attention",), type=click.Path(dir_okay=False),
              help="Save the attention matrix of the first sentence as a PNG.")
@click.option("--show-attention", is_flag=True,
              help="Print the attention matrix of each sentence to stderr.")
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32",
              show_default=True, help="bf16 runs the matrix products in bfloat16 (faster).")
@errors_option
@device_option
def translate(texts, model, input_path, beam, length_penalty, n_best, max_length_ratio,
              max_length, batch_size, fmt, attention_png, show_attention, precision, errors,
              device):
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
                                            max_length)
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


# ----------------------------------------------------------------------------- evaluation


@cli.group(cls=SeqtoolGroup)
def evaluate() -> None:
    """Score a model on labelled data."""


def labeled_input_option(f):
    return input_option("label<TAB>text lines (or .jsonl).", required=True,
                        old=("--data", "-d"))(f)


@evaluate.command("classify")
@model_option("classify")
@labeled_input_option
@format_option(REPORT_FORMATS)
@json_alias
@max_length_option
@device_option
def evaluate_classify(model, input_path, fmt, as_json, max_length, device):
    """Accuracy, macro-F1, per-class precision/recall and the confusion matrix.

    \b
    Example:
      seqtool evaluate classify -i corpora/sentiment/movie-snippets/test.tsv
    """
    from seqtool.inference.evaluation import evaluate_classifier
    from seqtool.report import print_classification, print_report

    report = evaluate_classifier(model, input_path, device, max_length)
    print_report(report, report_format(fmt, as_json), print_classification)


@evaluate.command("generate")
@model_option("generate")
@labeled_input_option
@click.option("--judge", type=click.Path(dir_okay=False),
              help="Classifier that judges class consistency (default: the shipped one).")
@click.option("--train", "train_path", type=click.Path(dir_okay=False),
              help="Training file, to count verbatim copies (default: the --train file of the "
                   "command recorded in the checkpoint, when that file can be found).")
@click.option("--samples", default=200, show_default=True, type=click.IntRange(min=1),
              help="Samples per class.")
@click.option("--temperature", default=0.8, show_default=True, type=click.FloatRange(min=0),
              help="Sampling temperature of the samples; 0 = greedy.")
@click.option("--top-p", default=1.0, show_default=True,
              type=click.FloatRange(0, 1, min_open=True),
              help="Nucleus sampling mass of the samples, as in `seqtool generate`.")
@click.option("--guidance", "-g", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="Class guidance of the samples, as in `seqtool generate`.")
@lexicon_option
@click.option("--seed", default=0, show_default=True, help="Random seed of the samples.")
@click.option("--wordlist", type=click.Path(dir_okay=False),
              help="Text whose words are the real ones, for the non-word rate (default: the "
                   "English corpora of the repository).")
@format_option(REPORT_FORMATS)
@json_alias
@device_option
def evaluate_generate(model, input_path, judge, train_path, samples, temperature, top_p,
                      guidance, lexicon, seed, wordlist, fmt, as_json, device):
    """Perplexity (right vs wrong class), bits per character, diversity, copying, non-words
    and class consistency.

    \b
    Example:
      seqtool evaluate generate -i corpora/sentiment/movie-snippets/test.tsv
    """
    from seqtool.inference.evaluation import evaluate_generator
    from seqtool.report import print_generation, print_report

    report = evaluate_generator(model, input_path, judge, train_path, samples, temperature,
                                seed, guidance, device, wordlist, top_p=top_p, lexicon=lexicon)
    print_report(report, report_format(fmt, as_json), print_generation)


@evaluate.command("translate")
@model_option("translate")
@click.option("--src", "-i", "--input", "src", cls=Option, old=("--input",), required=True,
              type=click.Path(dir_okay=False), help="Source sentences, one per line.")
@click.option("--ref", required=True, type=click.Path(dir_okay=False),
              help="Reference translations, aligned with --src.")
@click.option("--beam", "-b", default=5, show_default=True, type=click.IntRange(min=1),
              help="Beam size; 1 = greedy.")
@click.option("--length-penalty", default=1.0, show_default=True, type=click.FloatRange(min=0),
              help="alpha of ((5+len)/6)^alpha; 0 = none.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1),
              help="Sentences decoded together.")
@max_length_option
@click.option("--out", "-o", type=click.Path(dir_okay=False),
              help="Also write the translations, one per --src line (blank lines kept).")
@format_option(REPORT_FORMATS)
@json_alias
@click.option("--precision", type=click.Choice(["fp32", "bf16"]), default="fp32",
              show_default=True, help="bf16 runs the matrix products in bfloat16 (faster).")
@device_option
def evaluate_translate(model, src, ref, beam, length_penalty, batch_size, max_length, out,
                       fmt, as_json, precision, device):
    """BLEU and chrF (sacrebleu, detokenized) and decoding speed.

    \b
    Example:
      D=corpora/translation/bible-fr-en
      seqtool evaluate translate --src $D/test.fr --ref $D/test.en --beam 5
    """
    from seqtool.inference.evaluation import evaluate_translator
    from seqtool.report import print_report, print_translation

    if out:
        from seqtool.checkpoint import check_writable, refuse_overwriting_input

        refuse_overwriting_input(out, [src, ref, model])
        check_writable(Path(out))
    report = evaluate_translator(model, src, ref, beam, length_penalty, batch_size, out,
                                 precision, device, max_length)
    print_report(report, report_format(fmt, as_json), print_translation)


# ----------------------------------------------------------------------------- info


@cli.command()
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


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the flush at exit raises nothing more."""
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main() -> None:
    """Console entry point: one line per error, no traceback for anything a user can cause.

    A closed pipe (`| head`) exits quietly with 0; Ctrl-C exits 130; a failed write (stdout to
    a full disk, /dev/full) names what could not be written and exits 1."""
    import errno

    try:
        code = cli.main(prog_name="seqtool", standalone_mode=False)
        sys.stdout.flush()  # inside the try: a full disk shows up here, not at exit
    except click.exceptions.Abort as e:  # click turns KeyboardInterrupt into Abort
        code = 130 if isinstance(e.__cause__, KeyboardInterrupt) else 1
    except KeyboardInterrupt:
        code = 130
    except click.ClickException as e:
        e.show()
        code = e.exit_code
    except PipeClosed:
        _silence_stdout()
        code = 0
    except OSError as e:
        if e.errno == errno.EPIPE:
            _silence_stdout()
            code = 0
        else:
            where = e.filename if e.filename is not None else "<stdout>"
            print(f"Error: {where}: {e.strerror or e}", file=sys.stderr)
            _silence_stdout()
            code = 1
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
