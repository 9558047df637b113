"""One exception type for every problem a user can fix: bad input, bad options, bad files."""

from __future__ import annotations

import sys

_warned: set[str] = set()


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


def os_error(e: OSError, path: object, doing: str = "cannot write") -> SeqtoolError:
    """A SeqtoolError naming `path` for a failed file operation (disk full, read-only, ...)."""
    reason = e.strerror or str(e)
    return SeqtoolError(f"{doing}: {reason}", str(path))


def reset_warnings() -> None:
    """Forget which warnings were given (a new command run starts afresh)."""
    _warned.clear()


def warn_once(key: str, message: str) -> None:
    """Print `message` to stderr the first time `key` comes up in this process."""
    if key not in _warned:
        _warned.add(key)
        print(f"Warning: {message}", file=sys.stderr, flush=True)
