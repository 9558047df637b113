"""How the command line declares its options: once each, defaults from the config dataclasses,
old spellings hidden but working, commands loaded lazily. No model is trained here."""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from dataclasses import dataclass, fields

import click
import pytest
from test_cli import all_commands

from seqtool.cli import COMMANDS, cli
from seqtool.cli.options import field_option, model_fields, old_names
from seqtool.config import (
    ClassifierConfig,
    GeneratorConfig,
    LanguageModelConfig,
    TrainConfig,
    TranslatorConfig,
    option,
)

MODEL_OF = {("train", "classify"): ClassifierConfig, ("train", "generate"): GeneratorConfig,
            ("train", "translate"): TranslatorConfig, ("pretrain",): LanguageModelConfig}
TRAINING = list(MODEL_OF)


def command(*path: str) -> click.Command:
    return dict(all_commands())[path]


def options_of(cmd: click.Command) -> dict[str, click.Option]:
    return {p.name: p for p in cmd.params if isinstance(p, click.Option)}


# ----------------------------------------------------------------------------- generated options


@pytest.mark.parametrize("path", TRAINING)
def test_model_options_come_from_the_model_config(path):
    config, opts = MODEL_OF[path], options_of(command(*path))
    assert model_fields(config), config
    for f in fields(config):
        if "help" not in f.metadata:
            assert f.name not in opts or f.name in ("vocab_size",), (path, f.name)
            continue
        param = opts[f.name]
        assert param.default == f.default, (path, f.name)
        assert param.help == f.metadata["help"], (path, f.name)
        assert param.origin == f"{config.__name__}.{f.name}"
        if "choices" in f.metadata:
            assert list(param.type.choices) == list(f.metadata["choices"])


@pytest.mark.parametrize("path", TRAINING)
def test_training_options_come_from_train_config(path):
    opts = options_of(command(*path))
    expected = {"epochs", "max_tokens", "lr", "warmup", "warmup_steps", "schedule", "clip_norm",
                "eval_every", "patience", "seed", "device", "precision", "max_steps",
                "max_minutes", "half_checkpoint", "keep", "ema", "quiet", "tensorboard"}
    if path in (("train", "classify"), ("train", "generate")):  # with --init
        expected |= {"pretrained_lr_scale", "gradual_unfreezing"}
    for f in fields(TrainConfig):
        if f.name in expected:
            param = opts[f.name]
            assert param.default == f.default and param.help == f.metadata["help"], f.name
            assert param.origin == f"TrainConfig.{f.name}"
        else:
            assert f.name not in opts, (path, f.name)


def test_config_defaults_are_the_command_line_defaults():
    """The defaults that had drifted apart: the command line's behaviour won."""
    assert GeneratorConfig(vocab_size=5, num_classes=2).class_bias is True
    assert options_of(command("train", "generate"))["class_bias"].default is True


def test_field_option_reads_the_field_metadata():
    @dataclass
    class Example:
        size: int = option(3, "A size.", min=1)
        rate: float = option(0.5, "A rate.", min=0, max=1, max_open=True)
        kind: str = option("b", "A kind.", choices=("b", "a"))
        both: bool = option(True, "Both ways.", off="one-way")
        loud: bool = option(False, "Louder.", short="-l")
        steps: int = option(0, "Steps.", show_default=False)
        radius: float = option(0.0, "Radius.", metavar="R")
        hidden: int = 7

    @click.command()
    @field_option(Example, "size")
    @field_option(Example, "rate")
    @field_option(Example, "kind")
    @field_option(Example, "both")
    @field_option(Example, "loud")
    @field_option(Example, "steps")
    @field_option(Example, "radius", help="Radius here.")
    def run(**kwargs):
        click.echo(repr(sorted(kwargs.items())))

    opts = options_of(run)
    assert isinstance(opts["size"].type, click.IntRange) and opts["size"].type.min == 1
    assert isinstance(opts["rate"].type, click.FloatRange) and opts["rate"].type.max_open
    assert list(opts["kind"].type.choices) == ["b", "a"]
    assert opts["both"].opts == ["--both"] and opts["both"].secondary_opts == ["--one-way"]
    assert opts["loud"].is_flag and "-l" in opts["loud"].opts and opts["loud"].default is False
    assert opts["steps"].show_default is False and opts["size"].show_default is True
    assert opts["radius"].help == "Radius here." and opts["radius"].metavar == "R"
    assert {o.origin for o in opts.values()} == {f"Example.{n}" for n in opts}
    result = click.testing.CliRunner().invoke(run, ["--one-way", "-l", "--kind", "a"])
    assert result.output.strip() == repr(sorted({
        "size": 3, "rate": 0.5, "kind": "a", "both": False, "loud": True, "steps": 0,
        "radius": 0.0}.items()))
    assert click.testing.CliRunner().invoke(run, ["--size", "0"]).exit_code == 2
    with pytest.raises(ValueError, match="no command-line option"):
        field_option(Example, "hidden")


# ----------------------------------------------------------------------------- one declaration


# These mean the same everywhere but say it in the words of their command (one declaration,
# one default; the help is given where they are used).
CONTEXTUAL_HELP = {"TrainConfig.seed", "TrainConfig.device", "TrainConfig.precision",
                   "TrainConfig.half_checkpoint", "options.out", "options.input[texts]",
                   "SamplingConfig.temperature", "SamplingConfig.top_p",
                   "SamplingConfig.guidance", "TokenizerConfig.vocab_size",
                   "TokenizerConfig.character_coverage", "TokenizerConfig.lowercase"}


def declaration(origin: str) -> str:
    """Variants of one declaration: per task (name[task]) or per model config (Config.field)."""
    if "[" in origin:
        return origin.split("[")[0]
    owner, _, name = origin.rpartition(".")
    return f"config.{name}" if owner.endswith("Config") and owner != "TrainConfig" else origin


def test_no_option_name_is_declared_twice():
    uses = defaultdict(list)
    for path, cmd in all_commands():
        for param in cmd.params:
            if isinstance(param, click.Option):
                uses[param.name].append((path, param))
    shared = {name: found for name, found in uses.items() if len(found) > 1}
    assert {"seed", "device", "dropout", "embed_dim", "hidden_dim", "max_input_length",
            "max_train_length", "model", "input_path", "fmt"} <= set(shared)
    for name, found in shared.items():
        origins = {getattr(p, "origin", None) for _, p in found}
        assert None not in origins, (name, [path for path, p in found
                                            if getattr(p, "origin", None) is None])
        assert len({declaration(o) for o in origins}) == 1, (name, origins)
        for origin in origins:
            same = [p for _, p in found if p.origin == origin]
            # (a short alias, such as generate's -t, may be the command's own)
            described = {(repr(p.default), repr(p.type.to_info_dict()),
                          tuple(o for o in p.opts if o.startswith("--")),
                          tuple(p.secondary_opts), p.is_flag, tuple(sorted(p.old)))
                         for p in same}
            assert len(described) == 1, (name, origin, described)
            if origin not in CONTEXTUAL_HELP:
                assert len({p.help for p in same}) == 1, (name, origin)
        if len({repr(p.default) for _, p in found}) > 1:  # defaults differ only per task/model
            assert len(origins) > 1, name


def test_every_option_is_declared_in_one_place():
    """Every option knows where it was declared, and flag spellings do not collide."""
    for path, cmd in all_commands():
        spellings = []
        for param in cmd.params:
            if isinstance(param, click.Option):
                spellings += [*param.opts, *param.secondary_opts]
        assert len(spellings) == len(set(spellings)), path


# ----------------------------------------------------------------------------- old spellings


OLD_SPELLINGS = [  # path, extra arguments, old spelling, parameter, notice
    (("classify",), [], "--max-length", "max_input_length", "--max-input-length"),
    (("embed",), [], "--max-length", "max_input_length", "--max-input-length"),
    (("translate",), [], "--max-length", "max_input_length", "--max-input-length"),
    (("evaluate", "classify"), ["-i", "x"], "--max-length", "max_input_length",
     "--max-input-length"),
    (("evaluate", "translate"), ["--src", "x", "--ref", "y"], "--max-length",
     "max_input_length", "--max-input-length"),
    (("generate",), ["-l", "a"], "--max-length", "max_output_length", "--max-output-length"),
    (("generate",), ["-l", "a"], "--max-tokens", "max_output_length", "--max-output-length"),
    (("train", "classify"), ["--train", "t", "--dev", "d", "-o", "o"], "--max-length",
     "max_train_length", "--max-train-length"),
    (("train", "generate"), ["--train", "t", "--dev", "d", "-o", "o"], "--max-length",
     "max_train_length", "--max-train-length"),
    (("train", "translate"), ["-o", "o"], "--max-length", "max_train_length",
     "--max-train-length"),
    (("pretrain",), ["--train", "t", "--dev", "d", "-o", "o"], "--max-length",
     "max_train_length", "--max-train-length"),
    (("translate",), [], "--attention", "attention_png", "--attention-png"),
    (("evaluate", "classify"), [], "--data", "input_path", "--input"),
    (("evaluate", "classify"), [], "-d", "input_path", "--input"),
    (("evaluate", "translate"), ["--ref", "y"], "--input", "src", "--src"),
]


@pytest.mark.parametrize("path, extra, old, name, new", OLD_SPELLINGS)
def test_old_spelling_works_with_a_notice_and_is_hidden(path, extra, old, name, new, capsys):
    cmd = command(*path)
    value = "x.png" if name in ("attention_png", "input_path", "src") else "7"
    ctx = cmd.make_context(" ".join(path), [*extra, old, value])
    assert str(ctx.params[name]) == value
    assert capsys.readouterr().err == f"seqtool: {old} is now {new}\n"
    ctx = cmd.make_context(" ".join(path), [*extra, new, value])  # the new one says nothing
    assert str(ctx.params[name]) == value and capsys.readouterr().err == ""
    with click.Context(cmd, info_name=" ".join(path)) as ctx:
        help = cmd.get_help(ctx)
    assert not re.search(rf"(?<![\w-]){re.escape(old)}(?![\w-])", help), help
    assert new in help


@pytest.mark.parametrize("path", [("info",), ("evaluate", "classify"),
                                  ("evaluate", "generate"), ("evaluate", "translate")])
def test_json_flag_is_format_json_with_a_notice(path, capsys):
    extra = {"info": [], "classify": ["-i", "x"], "generate": ["-i", "x"],
             "translate": ["--src", "x", "--ref", "y"]}[path[-1]]
    ctx = command(*path).make_context(path[-1], [*extra, "--json"])
    assert ctx.params["as_json"] is True
    assert capsys.readouterr().err == "seqtool: --json is now --format json\n"


def test_old_names_in_a_config_file(tmp_path, capsys):
    cmd = command("train", "classify")
    assert old_names(cmd) == {"max_length": "max_train_length"}
    config = tmp_path / "run.toml"
    config.write_text("max-length = 40\nepochs = 2\n")
    ctx = cmd.make_context("classify", ["--config", str(config), "--train", "t", "--dev", "d",
                                        "-o", "o"])
    assert ctx.params["max_train_length"] == 40 and ctx.params["epochs"] == 2
    assert capsys.readouterr().err == (f"seqtool: max-length (in {config}) is now "
                                       "max-train-length\n")


def test_config_file_without_tomllib_reads_tomli(tmp_path, monkeypatch):
    """Python 3.10 has no tomllib: --config falls back to the tomli package."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the package itself
        import tomli as tomllib

    monkeypatch.setitem(sys.modules, "tomllib", None)
    monkeypatch.setitem(sys.modules, "tomli", tomllib)  # stands in for the package (3.11+)
    config = tmp_path / "run.toml"
    config.write_text("epochs = 3\n")
    ctx = command("train", "generate").make_context(
        "generate", ["--config", str(config), "--train", "t", "--dev", "d", "-o", "o"])
    assert ctx.params["epochs"] == 3


# ----------------------------------------------------------------------------- lazy loading


def test_lazy_commands_list_their_own_short_help():
    ctx = click.Context(cli)
    assert set(COMMANDS) == set(cli.list_commands(ctx))
    for name, (_, short) in COMMANDS.items():
        cmd = cli.get_command(ctx, name)
        for limit in (30, 45, 200):
            assert click.Command(name, help=short).get_short_help_str(limit) == \
                cmd.get_short_help_str(limit), name
