"""What every command module shares: the group classes (error handling, lazy loading) and
the writing of results. Light: no torch."""

from __future__ import annotations

import importlib
import sys
from typing import Any

import click

from seqtool.errors import SeqtoolError


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


def emit(lines: list[str]) -> None:
    """Write result lines and flush, so a pipeline sees each chunk as soon as it is ready."""
    if lines:
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
