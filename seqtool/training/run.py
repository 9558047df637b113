"""One training run from its options: what `seqtool train TASK`, `seqtool pretrain` and
`seqtool.train()` all run.

`options` holds every option of the command (defaults included), by the command line's
parameter names; `given` names those the caller set, since sizes left at their defaults follow
a starting model's (`--init`; without it `train classify` starts from the shipped English
language model where that fits, `training.pretrained.default_init`; `--init none` opts out).
With `resume` the tokenizers come from OUT.last.pt, and the run is refused when its data or
options differ from the run that wrote it.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from seqtool.config import (
    MAX_TRAIN_LENGTH,
    ClassifierConfig,
    DataConfig,
    GeneratorConfig,
    LanguageModelConfig,
    TokenizerConfig,
    TrainConfig,
    TranslatorConfig,
)
from seqtool.errors import SeqtoolError, warn_once

MODEL_CONFIGS = {"classify": ClassifierConfig, "generate": GeneratorConfig,
                 "translate": TranslatorConfig, "pretrain": LanguageModelConfig}
TRAIN_KEYS = tuple(f.name for f in fields(TrainConfig))
# Data files each task reads; --out must never be one of them.
DATA_OPTIONS = ("train_path", "dev_path", "train_src", "train_tgt", "dev_src", "dev_tgt",
                "init", "tokenizer_path", "embeddings")


def option_fields(config: type) -> dict[str, Any]:
    """The fields of a configuration that are options (those with help), with defaults."""
    return {f.name: f.default for f in fields(config) if "help" in f.metadata}


def model_options(task: str) -> tuple[str, ...]:
    return tuple(option_fields(MODEL_CONFIGS[task]))


def options_for(task: str) -> dict[str, Any]:
    """Every option of `seqtool train TASK` (`pretrain`), by parameter name, with its default:
    the configurations' fields and the files a run reads and writes."""
    if task not in MODEL_CONFIGS:
        raise SeqtoolError(f"unknown task {task!r}: {', '.join(MODEL_CONFIGS)}")
    files = (("train_path", "dev_path", "train_src", "train_tgt", "dev_src", "dev_tgt")
             if task == "translate" else ("train_path", "dev_path"))
    training = option_fields(TrainConfig)
    if task in ("translate", "pretrain"):  # they start from no pretrained layers to scale
        training = {k: v for k, v in training.items()
                    if k not in ("pretrained_lr_scale", "gradual_unfreezing")}
    data = {"max_train_length": MAX_TRAIN_LENGTH[task]}
    if task == "classify":
        data["subword_sampling"] = DataConfig.subword_sampling
    if task == "translate":
        data["joint_vocab"] = DataConfig.joint_vocab
    starts = {} if task == "translate" else {"init": None, "embeddings": None}
    options = {**dict.fromkeys(files), "out": None, "resume": False, "tokenizer_path": None,
               **training, **option_fields(TokenizerConfig),
               **option_fields(MODEL_CONFIGS[task]), **data, **starts}
    if task == "pretrain":
        options["train_path"] = ()  # one or more files
    return options


def train(task: str, options: Mapping[str, Any], given: Collection[str], command: str,
          make_setup: Callable | None = None) -> dict[str, Any]:
    """Train `task` ("classify", "generate", "translate" or "pretrain") and write the best
    checkpoint to options["out"]; return the loop's summary (best, steps, seconds).
    `make_setup(options, model_options)` builds the recipe when it is not the task's own
    (distillation: a classifier learning a teacher)."""
    opts = dict(options)
    if opts.get("tensorboard"):  # an optional package: checked before any work
        from seqtool.training.events import require_tensorboard

        require_tensorboard(opts["tensorboard"])
    older_run = bool(opts.get("resume")) and _resume_as_saved(opts)
    choose_init(task, opts, given, default=make_setup is None and not older_run)
    if opts.get("init"):  # a file, or a shipped model by name (`english-gru-lm`)
        from seqtool.shipped import resolve_model

        opts["init"] = str(resolve_model(opts["init"], tuple(dict.fromkeys(("pretrain", task)))))
    model_opts = {k: opts[k] for k in model_options(task)}
    _sizes_from_init(task, opts, model_opts, given)
    _refuse_overwriting_data(opts)
    setup = (make_setup or _SETUPS[task])(opts, model_opts)
    return _run(task, opts, setup, command)


def _classify_setup(opts: dict[str, Any], model_opts: dict[str, Any]) -> Callable:
    from seqtool.training.recipes import setup_classify

    train_data, dev_data = _labeled(opts)
    return lambda tok, meta: setup_classify(
        train_data, dev_data, opts["dev_path"], model_opts, tok, opts["seed"], meta,
        opts["subword_sampling"], opts["max_train_length"])


def _generate_setup(opts: dict[str, Any], model_opts: dict[str, Any]) -> Callable:
    from seqtool.training.recipes import setup_generate

    train_data, dev_data = _labeled(opts)
    return lambda tok, meta: setup_generate(
        train_data, dev_data, opts["dev_path"], model_opts, tok, opts["seed"], meta,
        opts["max_train_length"])


def _labeled(opts: dict[str, Any]):
    from seqtool.text.data import read_labeled

    return list(read_labeled(opts["train_path"])), list(read_labeled(opts["dev_path"]))


def _translate_setup(opts: dict[str, Any], model_opts: dict[str, Any]) -> Callable:
    from seqtool.text.data import read_parallel
    from seqtool.training.recipes import setup_translate

    def pairs(split: str):
        if opts.get(f"{split}_path"):
            return read_parallel(opts[f"{split}_path"])
        if opts.get(f"{split}_src") and opts.get(f"{split}_tgt"):
            return read_parallel(opts[f"{split}_src"], opts[f"{split}_tgt"])
        raise SeqtoolError(f"give --{split} FILE.tsv or both --{split}-src and --{split}-tgt")

    train_data, dev_data = pairs("train"), pairs("dev")
    return lambda tok, meta: setup_translate(
        train_data, dev_data, model_opts, tok, opts["joint_vocab"], opts["max_train_length"],
        opts["seed"], meta)


def _pretrain_setup(opts: dict[str, Any], model_opts: dict[str, Any]) -> Callable:
    from seqtool.text.data import iter_lines
    from seqtool.training.recipes import setup_pretrain

    paths = opts["train_path"]
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    train_texts = [line for path in paths for _, line in iter_lines(path)]
    dev_texts = [line for _, line in iter_lines(opts["dev_path"])]
    return lambda tok, meta: setup_pretrain(
        train_texts, dev_texts, model_opts, tok, opts["seed"], meta, opts["max_train_length"])


_SETUPS = {"classify": _classify_setup, "generate": _generate_setup,
           "translate": _translate_setup, "pretrain": _pretrain_setup}


def choose_init(task: str, opts: dict[str, Any], given: Collection[str],
                 default: bool) -> None:
    """--init none starts from scratch; without --init a task's own runs (`default`) start
    from the shipped language model where it fits (`default_init`), and say so."""
    if opts.get("init") is not None:
        if str(opts["init"]).lower() == "none":
            opts["init"] = None
        return
    if not default or task != "classify" or not opts.get("train_path"):
        return
    from itertools import islice

    from seqtool.text.data import read_labeled
    from seqtool.training.pretrained import TEXTS_READ, default_init

    texts = [r.text for r in islice(read_labeled(opts["train_path"]), TEXTS_READ)]
    path = default_init(task, texts, opts, given)
    if path is not None:
        opts["init"] = str(path)
        if not opts.get("quiet"):
            print(f"starting from the shipped English language model {path.name} (its "
                  f"tokenizer and sizes; --init none starts from scratch)", file=sys.stderr,
                  flush=True)


def _resume_as_saved(opts: dict[str, Any]) -> bool:
    """A run saved before the warm-up share and the default start (a fingerprint without
    `warmup`) resumes as it ran: over its --warmup-steps, from its own start. True when the
    saved run started without --init."""
    from seqtool.checkpoint import Checkpoint
    from seqtool.training.resume import last_path

    path = last_path(Path(opts["out"]))
    if not path.is_file():
        return False  # resuming refuses in one line later
    saved = Checkpoint.load(path).meta.get("run") or {}
    if "warmup" not in saved.get("options", {"warmup": None}):
        if opts.get("warmup_steps") is None and "warmup_steps" in saved["options"]:
            opts["warmup_steps"] = saved["options"]["warmup_steps"]
            del opts["warmup"]
        return saved.get("data", {}).get("init") is None
    return False


def _sizes_from_init(task: str, opts: dict[str, Any], model_opts: dict[str, Any],
                     given: Collection[str]) -> None:
    """With --init, the sizes left at their defaults are the starting model's (sizes given
    that differ from it stay, and fail in one line when copied). `pretrain --init` goes on
    with the language model's sizes, whatever the options say."""
    if not opts.get("init"):
        return
    from seqtool.training.pretrained import ARCHITECTURE, load_language_model

    sizes = load_language_model(opts["init"], task).model_config
    for name in ARCHITECTURE:
        if name in model_opts and name in sizes and (task == "pretrain" or name not in given):
            model_opts[name] = sizes[name]


def _refuse_overwriting_data(opts: dict[str, Any]) -> None:
    """--out (and OUT.last.pt) must not be a data or tokenizer file of the run."""
    from seqtool.checkpoint import refuse_overwriting_input
    from seqtool.training.resume import last_path

    inputs: list[Any] = []
    for key in DATA_OPTIONS:
        value = opts.get(key)
        inputs.extend(value if isinstance(value, (list, tuple)) else [value])
    for target in (Path(opts["out"]), last_path(Path(opts["out"]))):
        refuse_overwriting_input(target, inputs)


def recorded_inputs(opts: Mapping[str, Any], digests: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every file the run read, by option (its flag), path as given and SHA-256, so that the
    record names the inputs a rerun needs and shows when a file of that name changed since
    (a distilled model's teacher, say, replaced by the student). `digests`: the run
    fingerprint's, by option; a teacher's and unlabelled files' come with their options."""
    named = {**{k: (opts.get(k), digests.get(k)) for k in DATA_OPTIONS},
             "teacher": (opts.get("teacher"), opts.get("teacher_digest")),
             "unlabelled": (opts.get("unlabelled"), opts.get("unlabelled_digests"))}
    flags = {"train_path": "--train", "dev_path": "--dev", "tokenizer_path": "--tokenizer"}
    inputs = []
    for key, (paths, sums) in named.items():
        if not paths:
            continue
        paths = list(paths) if isinstance(paths, (list, tuple)) else [paths]
        sums = list(sums) if isinstance(sums, (list, tuple)) else [sums]
        for path, digest in zip(paths, sums + [None] * (len(paths) - len(sums))):
            inputs.append({"option": flags.get(key, "--" + key.replace("_", "-")),
                           "path": str(path), "sha256": digest})
    return inputs


def _run(task_name: str, opts: dict[str, Any], setup: Callable, command: str) -> dict[str, Any]:
    """The run itself, holding the lock on --out (the first process of a torchrun launch
    holds it for all: only it writes)."""
    import os

    from seqtool.checkpoint import check_writable, output_lock

    check_writable(Path(opts["out"]))  # its folder exists before the lock is made there
    if int(os.environ.get("RANK", "0")) != 0:
        return _locked_run(task_name, opts, setup, command)
    with output_lock(Path(opts["out"])):
        return _locked_run(task_name, opts, setup, command)


def _locked_run(task_name: str, opts: dict[str, Any], setup: Callable,
                command: str) -> dict[str, Any]:
    from seqtool.checkpoint import Checkpoint, check_writable, remove_stale_temp_files
    from seqtool.training.loop import Trainer
    from seqtool.training.recipes import TokenizerOptions, run_meta
    from seqtool.training.resume import check_same_run, last_path, run_fingerprint

    out = Path(opts["out"])
    config = TrainConfig(**{k: opts[k] for k in TRAIN_KEYS if k in opts})
    named = dict(opts)  # named as before --max-train-length, so older runs resume
    named["max_length"] = named.pop("max_train_length")
    fingerprint = run_fingerprint(named)
    remove_stale_temp_files(out)
    check_writable(out)
    check_writable(last_path(out))
    resumed = None
    if opts["resume"]:
        resumed = Checkpoint.load(last_path(out))
        if resumed.task != task_name:
            raise SeqtoolError(f"cannot resume: this is a {resumed.task} run, not a "
                               f"{task_name} run", str(last_path(out)))
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
    meta = run_meta(command, config.seed, {k: opts[k] for k in TRAIN_KEYS if k in opts})
    meta["run"] = fingerprint
    meta["inputs"] = recorded_inputs(opts, fingerprint["data"])
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
    if opts.get("tensorboard") and trainer.rank == 0:
        from seqtool.training.events import EventWriter

        trainer.events = EventWriter(opts["tensorboard"])
    try:
        result = trainer.fit()
    finally:
        if trainer.events is not None:
            trainer.events.close()
    trainer.log(f"done: {config.keep} dev {task.metric} {result['best']:.4f} after "
                f"{result['steps']} steps, {result['seconds']:.0f}s; wrote {out}")
    if trainer.rank == 0:
        warn_weak_run(trainer.warmup_steps, result, task.metric, task.chance, task.dev_size)
    return result


def near_chance(value: float, chance: float, dev_size: int) -> bool:
    """Whether a dev accuracy is within one standard error (of a binomial on the dev set, at
    least 0.01) above the accuracy of a constant answer: what a model that learned nothing
    scores."""
    margin = math.sqrt(chance * (1 - chance) / max(1, dev_size))
    return value <= chance + max(margin, 0.01)


def warn_weak_run(warmup_steps: int, result: Mapping[str, Any], metric: str,
                  chance: float | None, dev_size: int) -> None:
    """One line each when the warm-up outlasted the run, or the kept model scores near chance
    on dev (both happen with defaults meant for more data)."""
    if result["steps"] < warmup_steps:
        warn_once("warmup-outlasted",
                  f"the warm-up ({warmup_steps} steps) outlasted the run ({result['steps']} "
                  f"steps): the learning rate never reached --lr (lower --warmup-steps or "
                  f"--warmup, or train longer)")
    best = result["best"]
    if chance is not None and not math.isnan(best) and near_chance(best, chance, dev_size):
        warn_once("near-chance",
                  f"dev {metric} {best:.4f} is near chance ({chance:.4f}, always answering "
                  f"the most frequent class, on {dev_size} dev examples): the model learned "
                  f"little from this training data")
