"""Every option more than one command takes, declared once, with its default in one place.

Model and training options are generated from the fields of the config dataclasses
(`seqtool.config`): the field's default is the option's, its metadata gives the help and how
click reads it (`field_option`). The other shared options are declared here as functions that
return a click decorator. Each generated option records where it was declared (`origin`), so a
test can check that one name never means two things.

Old spellings (`Option(old=...)`) keep working, hidden from --help, with a one-line notice on
stderr. Light: no torch, and no command module, is imported here.
"""

from __future__ import annotations

from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

import click

from seqtool.config import (
    MAX_INPUT_LENGTH,
    MAX_TRAIN_LENGTH,
    ComputeConfig,
    InferenceConfig,
    InputConfig,
    SamplingConfig,
    SearchConfig,
    TokenizerConfig,
    TrainConfig,
)

LINE_FORMATS = ["text", "tsv", "jsonl", "json"]  # one result per input line
REPORT_FORMATS = ["text", "json", "jsonl"]  # one report (tables, or one JSON document)


# ----------------------------------------------------------------------------- old spellings


def notice_renamed(old: str, new: str) -> None:
    """The one-line notice for an old spelling, on stderr."""
    click.echo(f"seqtool: {old} is now {new}", err=True)


class _RenamedSpelling:
    """Stands in the parser for an old spelling of an option: says so, then parses as before."""

    def __init__(self, inner: Any, old: str, new: str):
        self._inner, self._old, self._new = inner, old, new

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def process(self, value: Any, state: Any) -> None:
        notice_renamed(self._old, self._new)
        self._inner.process(value, state)


class Option(click.Option):
    """A click option whose old spellings (`old=[...]`, also listed among its names) keep
    working, with a notice on stderr, but are left out of --help, so one vocabulary shows while
    old scripts still run. `renamed_to` names what a hidden option is now spelled (by default
    the first new spelling). `origin` says where the option was declared."""

    def __init__(self, *args: Any, old: tuple[str, ...] = (), renamed_to: str | None = None,
                 origin: str | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.old = set(old)
        self.origin = origin
        new = [o for o in self.opts if o not in self.old and o.startswith("--")]
        self.renamed_to = renamed_to or (new[0] if new else None)

    def add_to_parser(self, parser: Any, ctx: click.Context) -> None:
        super().add_to_parser(parser, ctx)
        renamed = self.old | (set(self.opts) if self.hidden and self.renamed_to else set())
        # click's parser keeps its options by spelling (8.x); wrap the old ones' entries
        for table in (getattr(parser, "_long_opt", {}), getattr(parser, "_short_opt", {})):
            for opt in renamed & set(table):
                table[opt] = _RenamedSpelling(table[opt], opt, self.renamed_to)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown, secondary = self.opts, self.secondary_opts
        self.opts = [o for o in shown if o not in self.old]
        self.secondary_opts = [o for o in secondary if o not in self.old]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts, self.secondary_opts = shown, secondary


def option(*names: str, origin: str, **kwargs: Any):
    """click.option with this module's Option class and a record of where it was declared."""
    return click.option(*names, cls=Option, origin=origin, **kwargs)


def old_names(command: click.Command) -> dict[str, str]:
    """Old spellings as --config keys (max_length) -> the parameter now (max_input_length)."""
    names = {}
    for param in command.params:
        for old in getattr(param, "old", ()):
            if old.startswith("--"):
                names[old[2:].replace("-", "_")] = param.name
    return names


# ----------------------------------------------------------------------------- from config fields


def refuse_non_finite(kind: type) -> type:
    """A click float type that refuses NaN and infinity (a usage error, exit 2): such a value
    passes every range check and then fails deep inside, or prints invalid JSON."""

    class Finite(kind):
        def convert(self, value: Any, param: Any, ctx: Any) -> Any:
            import math

            if not math.isfinite(click.FLOAT.convert(value, param, ctx)):  # before the range
                self.fail(f"{value!r} is not a finite number.", param, ctx)
            return super().convert(value, param, ctx)

    Finite.__name__ = f"Finite{kind.__name__}"
    return Finite


FiniteFloat = refuse_non_finite(click.types.FloatParamType)
FiniteFloatRange = refuse_non_finite(click.FloatRange)


def admit_zero(kind: type) -> type:
    """A click range type that also takes 0 (`or_zero` in a field's metadata: temperature's
    greedy 0 below its range)."""

    class OrZero(kind):
        def convert(self, value: Any, param: Any, ctx: Any) -> Any:
            try:
                if float(value) == 0:
                    return type(self.min)(0) if self.min is not None else 0
            except (TypeError, ValueError):
                pass
            return super().convert(value, param, ctx)

        def _describe_range(self) -> str:
            return "x=0 or " + super()._describe_range()

    OrZero.__name__ = f"{kind.__name__}OrZero"
    return OrZero


def field_option(config: type, name: str, *, old: tuple[str, ...] = (), short: bool = True,
                 param: str | None = None, **override: Any):
    """The option of a config dataclass field: `--embed-dim` from `embed_dim`, its default the
    field's, its help and type from the field's metadata (see `seqtool.config`). `old`: hidden
    old spellings; `short=False` leaves out the field's short spelling."""
    spec = {f.name: f for f in fields(config)}[name]
    meta = dict(spec.metadata)
    if "help" not in meta:
        raise ValueError(f"{config.__name__}.{name} is no command-line option (no help)")
    default = spec.default
    assert default is not MISSING, (config.__name__, name)
    flag = "--" + name.replace("_", "-")
    names: list[str] = [f"{flag}/--{meta['off']}" if "off" in meta else flag, *old]
    if "short" in meta and short:
        names.append(meta["short"])
    kwargs: dict[str, Any] = {"default": default, "help": meta["help"]}
    ranged = {k: meta[k] for k in ("min", "max", "min_open", "max_open") if k in meta}
    if "choices" in meta:
        kwargs["type"] = click.Choice(list(meta["choices"]))
    elif isinstance(default, float):
        kind = FiniteFloatRange if ranged else FiniteFloat
        kwargs["type"] = (admit_zero(kind) if meta.get("or_zero") else kind)(**ranged)
    elif ranged:
        kind = admit_zero(click.IntRange) if meta.get("or_zero") else click.IntRange
        kwargs["type"] = kind(**ranged)
    if isinstance(default, bool) and "off" not in meta:
        kwargs["is_flag"] = True
    else:
        kwargs["show_default"] = meta.get("show_default", True)
    if "metavar" in meta:
        kwargs["metavar"] = meta["metavar"]
    kwargs.update(override)
    return option(*names, param or name, old=old, origin=f"{config.__name__}.{name}",
                  **kwargs)


def model_fields(config: type) -> list[str]:
    """The fields of a model configuration that are command-line options, in order."""
    return [f.name for f in fields(config) if "help" in f.metadata]


def model_options(config: type):
    """Every option of a model configuration, in the order of its fields."""
    return stack(*(field_option(config, name) for name in model_fields(config)))


def stack(*decorators):
    """Apply decorators so that their options show in the order given."""
    def apply(f):
        for decorator in reversed(decorators):
            f = decorator(f)
        return f
    return apply


def train_option(name: str, **override: Any):
    return field_option(TrainConfig, name, **override)


# ----------------------------------------------------------------------------- shared options


def load_config(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """--config FILE.toml supplies defaults for the command's options (flags still win)."""
    if value:
        try:
            import tomllib
        except ModuleNotFoundError:  # Python 3.10
            import tomli as tomllib

        try:
            data = tomllib.loads(Path(value).read_text(encoding="utf-8"))
        except OSError as e:
            raise click.BadParameter(f"{value}: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise click.BadParameter(f"{value}: {e}") from None
        known = {p.name for p in ctx.command.params}
        renamed = old_names(ctx.command)
        options = {}
        for key, v in data.items():
            name = key.replace("-", "_")
            if name not in known and name in renamed:
                notice_renamed(f"{key} (in {value})", renamed[name].replace("_", "-"))
                name = renamed[name]
            options[name] = v
        unknown = sorted(set(options) - known)
        if unknown:
            raise click.BadParameter(f"{value}: unknown option(s): {', '.join(unknown)}")
        ctx.default_map = {**(ctx.default_map or {}), **options}
    return value


def config_option(f):
    return option("--config", type=click.Path(dir_okay=False), callback=load_config,
                  is_eager=True, expose_value=False, origin="options.config",
                  help="TOML file with option values (command-line flags win).")(f)


def input_option(help: str = "One text per line; '-' = stdin (the default when no TEXTS).",
                 required: bool = False, old: tuple[str, ...] = (), variant: str = "texts"):
    return option("--input", "-i", *old, "input_path", old=old, required=required,
                  type=click.Path(dir_okay=False), help=help,
                  origin=f"options.input[{variant}]")


def labeled_input_option(f):
    return input_option("label<TAB>text or fastText lines (or .jsonl).", required=True,
                        old=("--data", "-d"), variant="labeled")(f)


def format_option(choices: list[str], default: str = "text"):
    help = {"text": "text = for people", "tsv": "tsv = tab-separated columns",
            "jsonl": "jsonl = one JSON object per line",
            "json": "json = one JSON document"}
    return option("--format", "fmt", type=click.Choice(choices), default=default,
                  show_default=True, origin=f"options.format[{','.join(choices)}]",
                  help="Output format: " + "; ".join(help[c] for c in choices) + ".")


def json_alias(f):
    """The old `--json` flag, now `--format json` (hidden)."""
    return option("--json", "as_json", is_flag=True, hidden=True, renamed_to="--format json",
                  origin="options.json", help="Same as --format json.")(f)


def report_format(fmt: str, as_json: bool) -> str:
    return "json" if as_json else fmt


def errors_option(f):
    return option(
        "--errors", type=click.Choice(["strict", "skip", "replace"]), default="strict",
        show_default=True, origin="options.errors",
        help="Input lines that are not valid UTF-8: strict = stop with an error after "
             "answering the lines before; skip = leave the line out (warns once); "
             "replace = read bad bytes as U+FFFD.")(f)


def lexicon_option(f):
    return field_option(SamplingConfig, "lexicon")(f)


def device_option(f):
    """Where a trained model runs; training's --device is TrainConfig.device."""
    return train_option("device", help="Where the model runs (auto = cuda when available).")(f)


def backend_option(f):
    return field_option(InferenceConfig, "backend")(f)


def precision_option(f):
    """Decoding precision; training's --precision is TrainConfig.precision."""
    return train_option("precision",
                        help="bf16 runs the matrix products in bfloat16 (faster).")(f)


def seed_option(help: str):
    """--seed of sampling and tokenizer training: TrainConfig.seed, with its own help."""
    return train_option("seed", help=help)


def columns_option(f):
    """--column and --header/--no-header: which column of -i FILE holds the texts."""
    return stack(field_option(InputConfig, "column"), field_option(InputConfig, "header"))(f)


def max_input_length_option(f):
    return option(
        "--max-input-length", "--max-length", "max_input_length", old=("--max-length",),
        default=MAX_INPUT_LENGTH, show_default=True, type=click.IntRange(min=0),
        origin="options.max_input_length",
        help="Cut each input to this many sentencepiece pieces (one warning on stderr when "
             "it happens); keeps a 1 MB line fast and small. 0 = no limit.")(f)


TRAIN_LENGTH_HELP = {
    "classify": "Cut training texts to this many pieces (warns once).",
    "generate": "Drop training sentences longer than this many pieces (warns once).",
    "translate": "Drop training pairs longer than this many pieces (warns once).",
    "pretrain": "Drop training lines longer than this many pieces (warns once).",
}


def max_train_length_option(task: str):
    return option("--max-train-length", "--max-length", "max_train_length",
                  old=("--max-length",), default=MAX_TRAIN_LENGTH[task], show_default=True,
                  type=click.IntRange(min=1), origin=f"options.max_train_length[{task}]",
                  help=TRAIN_LENGTH_HELP[task])


def max_output_length_option(f):
    return field_option(SamplingConfig, "max_output_length",
                        old=("--max-length", "--max-tokens"))(f)


def model_option(task: str):
    """--model of a task's commands (the checkpoint to use); tokenize's takes a .model too."""
    if task == "tokenize":
        return option("--model", "-m", type=click.Path(dir_okay=False),
                      origin="options.model[tokenize]",
                      help="A .model file or a checkpoint (default: the shipped classifier, "
                           "found in $SEQTOOL_CHECKPOINTS or the repository's checkpoints/).")
    from seqtool.shipped import SHIPPED_MODELS

    names = ", ".join(SHIPPED_MODELS[task])
    return option("--model", "-m", type=click.Path(dir_okay=False),
                  origin=f"options.model[{task}]",
                  help=f"Checkpoint file, or the name of a shipped {task} model ({names}; "
                       "default: the first; `seqtool models` describes them), found in "
                       "$SEQTOOL_CHECKPOINTS or the repository's checkpoints/.")


def out_option(help: str, required: bool = False):
    return option("--out", "-o", required=required, type=click.Path(dir_okay=False), help=help,
                  origin="options.out")


def data_option(*names: str, help: str, variant: str, required: bool = True, **kwargs: Any):
    """A data file of training or evaluation (--train, --dev, ...): `variant` names its kind."""
    return option(*names, required=required, type=click.Path(dir_okay=False), help=help,
                  origin=f"options.data[{variant}]", **kwargs)


def half_checkpoint_option(help: str = "Store the weights in fp16."):
    return train_option("half_checkpoint", help=help)


# decoding, shared by translate and evaluate translate
def search_option(name: str):
    return field_option(SearchConfig, name)


beam_option = search_option("beam")
length_penalty_option = search_option("length_penalty")
batch_size_option = search_option("batch_size")


# sampling, shared by generate and evaluate generate
def sampling_option(name: str, help: str | None = None, short: bool = True):
    return field_option(SamplingConfig, name, short=short, **({"help": help} if help else {}))


def temperature_option(help: str, short: bool = False):
    return sampling_option("temperature", help, short)


def top_p_option(help: str):
    return sampling_option("top_p", help)


def guidance_option(help: str):
    return sampling_option("guidance", help)


# tokenizer training, shared by `tokenizer train` and the train commands
def vocab_size_option(help: str):
    return field_option(TokenizerConfig, "vocab_size", help=help)


def character_coverage_option(help: str):
    return field_option(TokenizerConfig, "character_coverage", help=help)


def tokenizer_type_option(*names: str):
    """--tokenizer-type of the train commands, --type of `tokenizer train`."""
    spec = {f.name: f for f in fields(TokenizerConfig)}["tokenizer_type"]
    return option(*names, type=click.Choice(list(spec.metadata["choices"])),
                  default=spec.default, show_default=True, origin="options.tokenizer_type",
                  help=spec.metadata["help"])


def lowercase_option(help: str):
    return field_option(TokenizerConfig, "lowercase", help=help)


# the machine's share, on every command that computes (`common.LazyGroup` adds it)
def apply_threads(_ctx: click.Context, _param: click.Parameter, value: int) -> int:
    """Set before the command runs, so before it imports torch or numpy."""
    from seqtool.threads import use_threads

    return use_threads(value)


def threads_option(f):
    from seqtool.threads import THREADS_ENV

    return field_option(ComputeConfig, "threads", envvar=THREADS_ENV, show_envvar=True,
                        callback=apply_threads, expose_value=False)(f)
