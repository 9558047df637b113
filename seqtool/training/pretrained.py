"""Finetuning from a pretrained language model (`train classify|generate --init LM.pt`), and
adapting one to a task's own text first (`pretrain --init LM.pt`, ULMFiT's second stage).

The language model of `seqtool pretrain` names its parts as the task models do (`embedding`,
`rnn`), so finetuning copies them by name: into every member of a classifier ensemble, or into
the generator (whose LSTM may also read the class at every step: those extra input columns
keep their fresh initialisation). The task's own layers (class scores, class states) start
fresh; the pretrained ones may learn at their own rate (`--pretrained-lr-scale`), as ULMFiT's
discriminative rates do, or join one layer an epoch (`--gradual-unfreezing`). On movie-snippets'
dev the full rate from the start did best, and adapting the language model to the snippets'
text first helped (see README, "Pretraining and finetuning"). A model of the task itself can
also be the start (warm start): all its weights go on, with other options or data.

Without --init, `train classify` starts from the shipped English language model whose
embeddings started from GloVe (`english-gru-lm-glove.seqtool`) when its training text is English and
no option asks for a tokenizer or sizes of its own (`default_init`): on small sets made from the
corpora it learned what training from scratch could not, and did better on dev than the language
model without GloVe (benchmarks/results/small-data*.md). `--init none` starts from scratch.

Word vectors learned elsewhere on far more text (GloVe, word2vec, fastText; `--embeddings
FILE`) can start the piece embeddings instead: a piece that spells a word takes its vector.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqtool.checkpoint import Checkpoint
from seqtool.errors import SeqtoolError
from seqtool.nn.classifier import Classifier
from seqtool.nn.generator import Generator
from seqtool.nn.language_model import LanguageModel
from seqtool.shipped import checkpoints_folder
from seqtool.text.tokenizer import PAD
from seqtool.words import words

RNN_OF_TASK = {Classifier: "gru", Generator: "lstm"}
ARCHITECTURE = ("rnn", "embed_dim", "hidden_dim", "layers", "bidirectional")
# Pretrained layer groups from the output down, the order gradual unfreezing thaws them in.
LAYERS_FROM_TOP = (("bottleneck.", "output."), ("rnn.",), ("embedding.",))


def load_language_model(path: str | Path, task: str = "pretrain") -> Checkpoint:
    """The checkpoint `--init` starts from: a language model, or a model of the same `task`
    (warm start: all its weights, e.g. to go on with other options or data)."""
    lm = Checkpoint.load(path)
    if lm.task not in ("pretrain", task):
        raise SeqtoolError(f"--init needs a language model from `seqtool pretrain` or a "
                           f"{task} model, not a {lm.task} model", str(path))
    return lm


def init_from_language_model(model: nn.Module, lm: Checkpoint, path: str | Path) -> set[str]:
    """Copy the language model's embedding and recurrent weights into `model`, or all the
    weights of a model of the same task; returns the names of the parameters that count as
    pretrained. Any difference of shape is one error line."""
    name = str(path)
    if isinstance(model, LanguageModel) or lm.task != "pretrain":
        continue_model(model, lm, name)
        # Only a language model's layers under a task model are "pretrained" (their own rate,
        # gradual unfreezing); a model of the task itself goes on as one.
        return {n for n, _ in model.named_parameters()} if lm.task == "pretrain" else set()
    # isinstance: a subclass (training.distill's student) starts as its task model does
    wanted = next((rnn for kind, rnn in RNN_OF_TASK.items() if isinstance(model, kind)), None)
    if wanted is None:
        raise SeqtoolError("--init works for train classify and train generate", name)
    have = lm.model_config.get("rnn")
    if have != wanted:
        raise SeqtoolError(f"--init: the language model's RNN is {have}, this model's is "
                           f"{wanted} (pretrain with --rnn {wanted})", name)
    if isinstance(model, Classifier):
        prefixes = [f"members.{i}." for i in range(len(model.members))]
        parts: tuple[str, ...] = ("embedding.", "rnn.")
    else:
        prefixes = [""]
        # The generator predicts through a bottleneck into the tied embeddings, as the LM.
        parts = ("embedding.", "rnn.", "bottleneck.", "output.bias")
    source = {k: v for k, v in lm.torch_weights().items() if k.startswith(parts)}
    target = dict(model.named_parameters())
    copied: set[str] = set()
    with torch.no_grad():
        for prefix in prefixes:
            for key in sorted({k for k in target if k.startswith(prefix)}):
                local = key[len(prefix):]
                if not local.startswith(("embedding.", "rnn.")):
                    continue
                if local not in source:
                    raise SeqtoolError(f"--init: this model has {local} and the language model "
                                       f"does not (compare --layers and --bidirectional)", name)
            for local, weight in source.items():
                key = prefix + local
                if key not in target:
                    if local.startswith(("embedding.", "rnn.")):
                        raise SeqtoolError(f"--init: the language model has {local} and this "
                                           f"model does not (compare --layers and "
                                           f"--bidirectional)", name)
                    continue  # e.g. a generator without bottleneck: the LM's stays behind
                param = target[key]
                weight = weight.to(param.dtype)
                if param.shape == weight.shape:
                    param.copy_(weight)
                elif (local.startswith("rnn.weight_ih_l0") and param.dim() == 2
                      and param.shape[0] == weight.shape[0] and param.shape[1] > weight.shape[1]):
                    param[:, : weight.shape[1]] = weight  # the class columns stay fresh
                else:
                    raise SeqtoolError(
                        f"--init: {local} is {tuple(weight.shape)} in the language model, "
                        f"{tuple(param.shape)} here (pass the language model's --embed-dim, "
                        f"--hidden-dim and --layers)", name)
                copied.add(key)
        if isinstance(model, Generator):
            # y_h(0) = tanh(W_i x) starts at 0, the state the language model started from.
            model.initial.weight.zero_()
    return copied


# ----------------------------------------------------------------------------- default start

# The shipped language model each task starts from without --init (in checkpoints/).
DEFAULT_INIT = {"classify": "english-gru-lm-glove.seqtool"}
# Options that ask for a tokenizer of the run's own, which a language model's would replace.
OWN_TOKENIZER = ("vocab_size", "tokenizer_type", "character_coverage", "lowercase",
                 "tokenizer_path")
# Text is English when this share of its words are words of the language model's text (its
# stored lexicon): English text scores 0.99 and more, the French of the Bible 0.57.
ENGLISH_SHARE = 0.8
TEXTS_READ = 2000  # training texts that decide whether the text is English


def is_english(texts: Iterable[str], lexicon: Collection[str]) -> bool:
    """Whether at least ENGLISH_SHARE of the texts' words are words of `lexicon`."""
    found = [w for text in texts for w in words(text)]
    return bool(found) and sum(w in lexicon for w in found) >= ENGLISH_SHARE * len(found)


def default_init(task: str, texts: Iterable[str], options: Mapping[str, Any],
                 given: Collection[str]) -> Path | None:
    """The shipped language model a run of `task` starts from when --init is not given: for
    English training text (`texts`), when no option asks for another start (--embeddings), a
    tokenizer of its own, or sizes other than the language model's; else None."""
    path = checkpoints_folder() / DEFAULT_INIT.get(task, "")
    if task not in DEFAULT_INIT or options.get("embeddings") or not path.is_file():
        return None
    if any(name in given for name in OWN_TOKENIZER):
        return None
    lm = Checkpoint.load(path)
    for name in ARCHITECTURE:
        if name in given and name in lm.model_config and options[name] != lm.model_config[name]:
            return None
    if not is_english(texts, set(lm.meta.get("lexicon", ()))):
        return None
    return path


def continue_model(model: nn.Module, init: Checkpoint, name: str) -> None:
    """All of a checkpoint's weights, for a model of its task and architecture (`pretrain
    --init` takes ARCHITECTURE from the checkpoint, so only a damaged file differs there)."""
    try:
        model.load_state_dict({k: v.float() for k, v in init.torch_weights().items()})
    except RuntimeError as e:
        first = str(e).strip().splitlines()[-1].strip()
        what = "language model" if init.task == "pretrain" else f"{init.task} model"
        raise SeqtoolError(f"--init: the {what} does not fit: {first} (pass its options, "
                           f"see `seqtool info`)", name) from None


def thaw_epochs(pretrained: Collection[str], gradual: bool) -> dict[str, int]:
    """The first epoch (from 0) in which each pretrained parameter learns. Gradual unfreezing
    (ULMFiT): the new layers learn alone in epoch 0, then one pretrained layer group joins
    each epoch, from the top; otherwise all learn from the start."""
    def level(name: str) -> int:
        local = name.split(".", 2)[2] if name.startswith("members.") else name
        return next(i for i, group in enumerate(LAYERS_FROM_TOP) if local.startswith(group))

    present = sorted({level(n) for n in pretrained})
    return {n: present.index(level(n)) + 1 if gradual else 0 for n in pretrained}


# ----------------------------------------------------------------------------- word vectors

WORD_START = "\u2581"  # sentencepiece's mark of a piece that begins a word


def read_word_vectors(path: str | Path, wanted: Collection[str]) -> dict[str, torch.Tensor]:
    """The vectors of the `wanted` words in a text file of word vectors, the format of word2vec,
    GloVe and fastText (`word v1 … vD` a line; word2vec's `count D` header line is skipped).
    Only the wanted lines are parsed, so a file of millions of words reads in seconds."""
    wanted = set(wanted)
    vectors: dict[str, torch.Tensor] = {}
    dim = None
    try:
        # Bytes, so a bad byte is named by its line and unwanted lines cost a split only.
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                head, _, rest = line.rstrip(b"\r\n").rstrip(b" ").partition(b" ")
                try:
                    word = head.decode("utf-8")
                except UnicodeDecodeError as e:
                    raise SeqtoolError(f"not UTF-8 text ({e.reason})", str(path),
                                       number) from None
                if number == 1 and word.isdigit() and rest.strip().isdigit():
                    continue  # word2vec's "count dimensions" header
                if word not in wanted or word in vectors:
                    continue
                try:
                    values = [float(v) for v in rest.split(b" ")]
                except ValueError:
                    raise SeqtoolError("expected a word and its numbers, separated by single "
                                       "spaces", str(path), number) from None
                if dim is None:
                    dim = len(values)
                elif len(values) != dim:
                    raise SeqtoolError(f"{len(values)} numbers where the file's first vector "
                                       f"has {dim}", str(path), number)
                vectors[word] = torch.tensor(values)
    except OSError as e:
        raise SeqtoolError(f"cannot read: {e.strerror or e}", str(path)) from None
    return vectors


def piece_embeddings(model: nn.Module, vocab_size: int) -> dict[str, nn.Embedding]:
    """The piece embedding tables of `model` by module name (one per ensemble member): what
    `--embeddings` starts, and what a resumed run of it still treats as pretrained."""
    return {n: m for n, m in model.named_modules()
            if isinstance(m, nn.Embedding) and m.num_embeddings == vocab_size}


def init_word_vectors(model: nn.Module, pieces: Sequence[str],
                      path: str | Path) -> tuple[set[str], int]:
    """Initialise every piece embedding table of `model` (one per ensemble member) from word
    vectors (GloVe, word2vec, fastText): a piece takes the vector of the word it spells, without
    sentencepiece's word-start mark, or of its lowercase form. The other pieces are drawn from a
    normal of the vectors' own spread, so all rows start on one scale. Returns the names of the
    tables' parameters (pretrained, as `--init`'s) and how many pieces found a vector."""
    name = str(path)
    tables = piece_embeddings(model, len(pieces))
    if not tables:
        raise SeqtoolError("--embeddings: this model has no piece embeddings", name)
    words = [p.removeprefix(WORD_START) for p in pieces]
    vectors = read_word_vectors(path, set(words) | {w.lower() for w in words})
    if not vectors:
        raise SeqtoolError("--embeddings: no piece of the tokenizer is a word of this file", name)
    dim = len(next(iter(vectors.values())))
    width = next(iter(tables.values())).embedding_dim
    if dim != width:
        raise SeqtoolError(f"--embeddings: the vectors have {dim} dimensions, the model's "
                           f"embeddings {width} (pass --embed-dim {dim})", name)
    spread = torch.stack(list(vectors.values())).std().item()
    rows = {i: vectors.get(word, vectors.get(word.lower())) for i, word in enumerate(words)
            if i != PAD}
    rows = {i: vector for i, vector in rows.items() if vector is not None}
    with torch.no_grad():
        for table in tables.values():
            table.weight.normal_(0.0, spread)
            for i, vector in rows.items():
                table.weight[i] = vector
            table.weight[PAD].zero_()
    return {f"{n}.weight" for n in tables}, len(rows)
