"""`seqtool train classify|generate|translate` and `seqtool pretrain`."""

from __future__ import annotations

from typing import Any

import click

from seqtool.cli.common import SeqtoolGroup
from seqtool.cli.options import (
    character_coverage_option,
    config_option,
    data_option,
    field_option,
    lowercase_option,
    max_train_length_option,
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
    DataConfig,
    GeneratorConfig,
    LanguageModelConfig,
    TranslatorConfig,
)


def run(task: str, options: dict[str, Any]) -> None:
    """Hand the parsed options to the API, naming those the user gave (on the command line or
    in --config): sizes left at their defaults follow a starting model's (--init)."""
    from click.core import ParameterSource

    from seqtool.api import run_training

    ctx = click.get_current_context()
    given = {name for name in options
             if ctx.get_parameter_source(name) not in (ParameterSource.DEFAULT, None)}
    run_training(task, options, given, canonical_command(ctx))


def canonical_command(ctx: click.Context) -> str:
    """The command that reproduces this run, for the checkpoint's record: every option the
    user gave (on the command line or through --config) in its current spelling, shell-quoted,
    in --help order. Old spellings, repeats and --config files do not survive in it."""
    import shlex

    from click.core import ParameterSource

    words = ["seqtool", *ctx.command_path.split()[1:]]
    for param in ctx.command.params:
        if not isinstance(param, click.Option) or param.name in ("config", "help"):
            continue
        if ctx.get_parameter_source(param.name) in (ParameterSource.DEFAULT, None):
            continue
        value = ctx.params.get(param.name)
        old = getattr(param, "old", set())
        flag = next(o for o in param.opts if o.startswith("--") and o not in old)
        if param.is_flag and param.secondary_opts:
            words.append(flag if value else param.secondary_opts[0])
        elif param.is_flag:
            if value:
                words.append(flag)
        else:
            for v in value if param.multiple else [value]:
                if v is not None:
                    words += [flag, str(v)]
    return shlex.join(words)


def labeled_data_options(f):
    return stack(
        data_option("--train", "train_path", variant="labeled",
                    help="label<TAB>text or fastText (__label__LABEL text) lines (or .jsonl)."),
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
    train_option("warmup"),
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
    train_option("tensorboard"),
)

INIT_HELP = ("Start from a language model of `seqtool pretrain`: its tokenizer (in place of "
             "--vocab-size, --lowercase, --tokenizer), embeddings and recurrent layers (and "
             "their sizes, unless given). Or from a model of this task with the same labels "
             "and sizes: its tokenizer and all its weights, to go on with other options or "
             "data. Without it, `train classify` on English text starts from the shipped "
             "english-gru-lm-glove.seqtool unless a tokenizer option, other sizes or "
             "--embeddings are given; none = from scratch.")

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


@click.group(cls=SeqtoolGroup)
def train() -> None:
    """Train a model: classify, generate or translate."""


# What training a classifier takes besides its data: `train classify` and `distill`.
classifier_training_options = stack(
    training_options,
    model_options(ClassifierConfig),
    field_option(DataConfig, "subword_sampling"),
    max_train_length_option("classify"),
    init_options,
    embeddings_option,
)


@train.command("classify")
@labeled_data_options
@classifier_training_options
def train_classify(**opts):
    """Train a GRU sequence -> class model (S1).

    \b
    Example:
      seqtool train classify --train corpora/sentiment/movie-snippets/train.tsv \\
        --dev corpora/sentiment/movie-snippets/dev.tsv --out sentiment.pt --epochs 8
    """
    run("classify", opts)



@train.command("generate")
@labeled_data_options
@training_options
@model_options(GeneratorConfig)
@max_train_length_option("generate")
@init_options
@embeddings_option
def train_generate(**opts):
    """Train an LSTM class -> sequence generator with teacher forcing (S2).

    \b
    Example:
      seqtool train generate --train corpora/sentiment/movie-snippets/train.tsv \\
        --dev corpora/sentiment/movie-snippets/dev.tsv --out generator.pt
    """
    run("generate", opts)



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
@field_option(DataConfig, "joint_vocab")
@max_train_length_option("translate")
def train_translate(**opts):
    """Train an attention encoder-decoder (S3).

    \b
    Example:
      D=corpora/translation/bible-fr-en
      seqtool train translate --train-src $D/train.fr --train-tgt $D/train.en \\
        --dev-src $D/dev.fr --dev-tgt $D/dev.en --out fr-en.pt --precision bf16
    """
    run("translate", opts)



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
def pretrain(**opts):
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
    run("pretrain", opts)
