"""One exception type for every problem a user can fix: bad input, bad options, bad files."""

from __future__ import annotations


class SeqtoolError(Exception):
    """A user-facing error; the CLI prints it as one line and exits non-zero."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.message = message
        self.path = path
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        return f"{where}{self.message}"
