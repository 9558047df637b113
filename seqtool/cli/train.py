"""`seqtool train classify|generate|translate` and `seqtool pretrain`."""

from __future__ import annotations

import sys
from dataclasses import fields
from pathlib import Path
from typing import Any

import click

from seqtool.cli.common import SeqtoolGroup
from seqtool.cli.options import (
    character_coverage_option,
    config_option,
    data_option,
    lowercase_option,
    max_train_length_option,
    model_fields,
    model_options,
    option,
    out_option,
    stack,
    tokenizer_type_option,
    train_option,
    vocab_size_option,
)
from seqtool.config import (
    ClassifierConfig,
    GeneratorConfig,
    LanguageModelConfig,
    TrainConfig,
    TranslatorConfig,
)
from seqtool.errors import SeqtoolError

TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig))


def labeled_data_options(f):
    return stack(
        data_option("--train", "train_path", variant="labeled",
                    help="label<TAB>text lines (or .jsonl)."),
        data_option("--dev", "dev_path", variant="labeled",
                    help="Held-out data in the same format; picks the best checkpoint."),
    )(f)


# The options every `train` command shares, in --help order: TrainConfig's fields and the
# tokenizer's.
training_options = stack(
    config_option,
    out_option("Best checkpoint; the resumable last one goes to OUT.last.pt.", required=True),
    train_option("epochs"),
    train_option("seed"),
    option("--resume", is_flag=True, origin="train.resume",
           help="Continue from OUT.last.pt exactly."),
    train_option("device"),
    train_option("precision"),
    train_option("max_tokens"),
    train_option("lr"),
    train_option("warmup_steps"),
    train_option("schedule"),
    train_option("clip_norm"),
    train_option("eval_every"),
    train_option("patience"),
    train_option("max_steps"),
    train_option("max_minutes"),
    train_option("half_checkpoint"),
    train_option("keep"),
    train_option("ema"),
    vocab_size_option("Sentencepiece vocabulary size."),
    tokenizer_type_option("--tokenizer-type"),
    character_coverage_option("Share of characters the vocabulary must cover."),
    lowercase_option("Case-fold text in the tokenizer."),
    option("--tokenizer", "tokenizer_path", type=click.Path(dir_okay=False),
           origin="train.tokenizer",
           help="Reuse a trained sentencepiece .model instead of training one."),
    train_option("quiet"),
)

INIT_HELP = ("Start from a language model of `seqtool pretrain`: its tokenizer (in place of "
             "--vocab-size, --lowercase, --tokenizer), embeddings and recurrent layers (and "
             "their sizes, unless given). Or from a model of this task with the same labels "
             "and sizes: its tokenizer and all its weights, to go on with other options or "
             "data.")

# Finetuning from `seqtool pretrain`'s language model or word vectors (S1 and S2).
init_options = stack(
    option("--init", type=click.Path(dir_okay=False), origin="train.init[task]", help=INIT_HELP),
    train_option("pretrained_lr_scale"),
    train_option("gradual_unfreezing"),
)

# Piece embeddings from word vectors (S1, S2 and pretraining).
embeddings_option = option(
    "--embeddings", type=click.Path(dir_okay=False), origin="train.embeddings",
    help="Initialise the piece embeddings from word vectors in the text format of GloVe, "
         "word2vec or fastText (`word v1 ... vD` a line; D must equal --embed-dim), e.g. "
         "GloVe's corpora/embeddings/glove-6b-100d.vec (python corpora/prepare.py --only "
         "embeddings). Pieces that are no word of the file start at random.")


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
    from seqtool.training.loop import Trainer, check_same_run, last_path, run_fingerprint
    from seqtool.training.recipes import TokenizerOptions, run_meta

    out = Path(opts["out"])
    config = TrainConfig(**{k: opts[k] for k in TRAIN_KEYS if k in opts})
    params = dict(click.get_current_context().params)
    if "max_train_length" in params:  # named as before --max-train-length: older runs resume
        params["max_length"] = params.pop("max_train_length")
    fingerprint = run_fingerprint(params)
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


@click.group(cls=SeqtoolGroup)
def train() -> None:
    """Train a model: classify, generate or translate."""


def pop_model_options(config: type, opts: dict[str, Any]) -> dict[str, Any]:
    return {k: opts.pop(k) for k in model_fields(config)}


@train.command("classify")
@labeled_data_options
@training_options
@model_options(ClassifierConfig)
@option("--subword-sampling", default=0.0, show_default=True, origin="train.subword_sampling",
        help="Sample segmentations with this alpha while training (0 = off).")
@max_train_length_option("classify")
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

    model_opts = pop_model_options(ClassifierConfig, opts)
    sizes_from_init("classify", opts, model_opts)
    alpha, max_length = opts.pop("subword_sampling"), opts.pop("max_train_length")
    refuse_overwriting_data(opts, train_path, dev_path, opts["init"])
    train_data, dev_data = list(read_labeled(train_path)), list(read_labeled(dev_path))
    run_training("classify", opts, lambda tok, meta: setup_classify(
        train_data, dev_data, dev_path, model_opts, tok, opts["seed"], meta, alpha,
        max_length))


@train.command("generate")
@labeled_data_options
@training_options
@model_options(GeneratorConfig)
@max_train_length_option("generate")
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

    model_opts = pop_model_options(GeneratorConfig, opts)
    sizes_from_init("generate", opts, model_opts)
    max_length = opts.pop("max_train_length")
    refuse_overwriting_data(opts, train_path, dev_path, opts["init"])
    train_data, dev_data = list(read_labeled(train_path)), list(read_labeled(dev_path))
    run_training("generate", opts, lambda tok, meta: setup_generate(
        train_data, dev_data, dev_path, model_opts, tok, opts["seed"], meta, max_length))


@train.command("translate")
@data_option("--train", "train_path", required=False, variant="parallel",
             help="source<TAB>target lines (instead of --train-src/--train-tgt).")
@data_option("--dev", "dev_path", required=False, variant="parallel",
             help="Dev source<TAB>target lines (instead of --dev-src/--dev-tgt).")
@data_option("--train-src", required=False, variant="parallel",
             help="Training source sentences, one per line (with --train-tgt).")
@data_option("--train-tgt", required=False, variant="parallel",
             help="Training target sentences, aligned with --train-src.")
@data_option("--dev-src", required=False, variant="parallel",
             help="Dev source sentences (with --dev-tgt).")
@data_option("--dev-tgt", required=False, variant="parallel",
             help="Dev target sentences, aligned with --dev-src.")
@training_options
@model_options(TranslatorConfig)
@option("--joint-vocab/--separate-vocab", default=True, show_default=True,
        origin="train.joint_vocab",
        help="One sentencepiece model for both languages, or one each.")
@max_train_length_option("translate")
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
    model_opts = pop_model_options(TranslatorConfig, opts)
    joint, max_length = opts.pop("joint_vocab"), opts.pop("max_train_length")
    run_training("translate", opts, lambda tok, meta: setup_translate(
        train_data, dev_data, model_opts, tok, joint, max_length, opts["seed"], meta))


@click.command(cls=click.Command)
@data_option("--train", "train_path", multiple=True, variant="text",
             help="Unlabelled text, one sentence per line (repeat for more files).")
@data_option("--dev", "dev_path", variant="text",
             help="Held-out text of the same kind; picks the best checkpoint.")
@training_options
@model_options(LanguageModelConfig)
@max_train_length_option("pretrain")
@option("--init", type=click.Path(dir_okay=False), origin="train.init[pretrain]",
        help="Go on from this language model (its tokenizer, sizes and weights) on new text, "
             "e.g. a task's own training text before finetuning (ULMFiT).")
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
    max_length = opts.pop("max_train_length")
    refuse_overwriting_data(opts, *train_path, dev_path, opts["init"])
    train_texts = [line for path in train_path for _, line in iter_lines(path)]
    dev_texts = [line for _, line in iter_lines(dev_path)]
    run_training("pretrain", opts, lambda tok, meta: setup_pretrain(
        train_texts, dev_texts, model_opts, tok, opts["seed"], meta, max_length))
