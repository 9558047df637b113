"""What every command module shares: the group classes (error handling, lazy loading) and
the writing of results. Light: no torch."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import click

from seqtool.errors import SeqtoolError


class PipeClosed(Exception):
    """The reader of stdout went away (`| head`); raised past click, which would exit 1."""


class SeqtoolGroup(click.Group):
    """Turns a SeqtoolError anywhere below into a one-line message and exit code 1 (or the
    error's own `exit_code`, e.g. 130 for training stopped by Ctrl-C), and a command that
    needs PyTorch where it is not installed into one line saying what to install."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SeqtoolError as e:
            error = click.ClickException(str(e))
            error.exit_code = getattr(e, "exit_code", 1)
            raise error from None
        except BrokenPipeError:
            raise PipeClosed() from None
        except ModuleNotFoundError as e:
            if (e.name or "").partition(".")[0] != "torch":
                raise
            raise needs_torch(ctx) from None


def needs_torch(ctx: click.Context) -> click.ClickException:
    """torch is an extra (`seqtool[torch]`): the command that wanted it, and how to get it."""
    command = " ".join(filter(None, [ctx.command_path, ctx.invoked_subcommand]))
    return click.ClickException(f"{command} needs PyTorch: pip install 'seqtool[torch]'")


class LazyGroup(SeqtoolGroup):
    """A group whose commands live in other modules, imported only when a command runs or
    shows its help. `lazy` maps a command's name to ("module:attribute", short help): the short
    help is what the group's --help lists, so listing the commands imports none of them (a
    test checks that it matches the command's own)."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None,
                 **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands and name in self.lazy:
            module, _, attribute = self.lazy[name][0].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{self.lazy[name][0]} is not a click command")
            if name not in LIGHT_COMMANDS:
                with_threads(command)
            self.add_command(command, name)
        return super().get_command(ctx, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.commands:
                command = self.commands[name]
                if not command.hidden:
                    rows.append((name, command.get_short_help_str))
            elif name in self.lazy:
                # shortened as click shortens the command's own help, without importing it
                rows.append((name, click.Command(name, help=self.lazy[name][1])
                             .get_short_help_str))
        if rows:
            limit = formatter.width - 6 - max(len(name) for name, _ in rows)
            with formatter.section("Commands"):
                formatter.write_dl([(name, short(limit)) for name, short in rows])


# Commands that compute nothing worth threads; every other command takes --threads.
LIGHT_COMMANDS = ("info", "tokenize", "tokenizer")


def with_threads(command: click.Command) -> None:
    """--threads on a command, and on each command of a group (`train classify`), once."""
    from seqtool.cli.options import threads_option

    for sub in getattr(command, "commands", {}).values():
        with_threads(sub)
    if not isinstance(command, click.Group) and "threads" not in \
            {p.name for p in command.params}:
        threads_option(command)


def emit(lines: list[str]) -> None:
    """Write result lines at once, so a pipeline sees each chunk as soon as it is ready (and a
    short write fails: see `report.write_stdout`)."""
    if lines:
        from seqtool.report import write_stdout

        write_stdout("\n".join(lines) + "\n")


def refuse_texts_and_input(texts: Sequence[str], input_path: str | None) -> None:
    """Texts on the command line and -i FILE together are a usage error: one of them would be
    left unread in silence."""
    if texts and input_path is not None:
        raise click.UsageError(f"got texts on the command line and -i {input_path}: give "
                               "one or the other")


def launched_processes() -> int:
    """How many processes answer together: WORLD_SIZE under torchrun, else 1."""
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


def write_answers(chunks: Iterable[Sequence[str]], answer: Callable[[Sequence[str]], list[Any]],
                  writer: Any, out: str | None, input_path: str | None) -> None:
    """Records of every chunk of input, in order: streamed to stdout as each chunk is
    answered, or (with --out) written to OUT whole or not at all, every process of a torchrun
    launch answering its share (`inference.sharded`)."""
    if out is None:
        if launched_processes() > 1:
            raise SeqtoolError("under torchrun, give --out FILE (and -i FILE): each process "
                               "answers its share of the input into it")
        with writer:
            for chunk in chunks:
                writer.write(answer(chunk))
        return
    if launched_processes() > 1 and input_path in (None, "-"):
        raise SeqtoolError("under torchrun, give the input as -i FILE: every process reads it")
    from seqtool.checkpoint import refuse_overwriting_input
    from seqtool.inference.sharded import answer_to_file

    refuse_overwriting_input(out, [input_path])

    def write(records: Iterator[Any], path: Any) -> None:
        with open(path, "wb") as sink, writer.to(sink) as file_writer:
            batch: list[Any] = []
            for record in records:
                batch.append(record)
                if len(batch) == 512:
                    file_writer.write(batch)
                    batch = []
            file_writer.write(batch)

    answer_to_file(chunks, answer, out, write)
