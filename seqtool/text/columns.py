"""The text of each row of a user's file: a TSV, CSV or JSONL column (`--column NAME|N`).

The format comes from the file's name (.tsv, .csv, .jsonl/.json); any other file, or stdin,
is read as JSONL when its first row is a JSON object or array, else as TSV, once a column or
header is asked for (plain lines otherwise). A CSV row may span lines (a quoted field holding
a line break): it gives one text, its line breaks read as spaces. A header is the first row
when it holds the column's name (`text` when no column is named), or when `header` says so.
A bad row is a SeqtoolError naming its file and line. Nothing here imports torch.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from seqtool.errors import SeqtoolError

FORMATS = {".tsv": "tsv", ".tab": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl"}
DEFAULT_COLUMN = "text"  # the text's column when none is named (CSV, TSV, JSONL)


@dataclass(frozen=True)
class Columns:
    """Which column of a user's file holds the text (`--column`, `--header/--no-header`):
    a header's name or a number from 1; None = `text`, or the only column."""

    column: str | None = None
    header: bool | None = None  # None: a header when the first row holds the column's name


def one_line(text: str) -> str:
    """A field's text on one line (a line break in a quoted CSV field or a JSON string reads
    as a space), so that each row's output stays one line."""
    return " ".join(text.splitlines()).strip() if "\n" in text or "\r" in text else text.strip()


def file_format(path: str | Path | None) -> str | None:
    """tsv, csv or jsonl by the file's suffix; None for stdin and other files."""
    if path in (None, "-"):
        return None
    return FORMATS.get(Path(str(path)).suffix.lower())


class ColumnReader:
    """Turns the lines of one file, fed in order, into the texts of its rows: `feed` returns
    the texts a line completes (none for a header, or a line inside a CSV row)."""

    def __init__(self, fmt: str | None, column: str | None, header: bool | None, name: str):
        self.fmt, self.header, self.name = fmt, header, name
        self.number = column if column and column.isdigit() else None  # 1-based
        self.key = None if self.number else column  # a header's name or a JSON key
        if self.number is not None and int(self.number) < 1:
            raise SeqtoolError(f"--column {column}: columns count from 1")
        if self.key and header is False and fmt != "jsonl":
            raise SeqtoolError(f"--column {column} names a column of the header, and "
                               "--no-header says there is none: give its number")
        self.index: int | None = int(self.number) - 1 if self.number else None
        self.started = False  # the first row has been seen (header or not)
        self.pending: list[str] = []  # lines of a CSV row still open
        self.pending_from = 0

    def feed(self, line: str, number: int) -> list[str]:
        if self.fmt is None:  # not known from the name: the first row decides
            if not line.strip():
                return [""]
            self.fmt = "jsonl" if line.lstrip()[:1] in "{[" else "tsv"
        if self.fmt == "jsonl":
            return self._jsonl(line, number)
        if self.fmt == "csv":
            if not self.pending:
                self.pending_from = number
            self.pending.append(line + "\n")
            row = self._csv_row()
            if row is None:
                return []
            self.pending = []
            return self._row(row, self.pending_from)
        return self._row(line.split("\t"), number)

    def finish(self) -> None:
        """At the end of the input: a CSV row still open is an error."""
        if self.pending:
            raise SeqtoolError("a quoted field opened in this row never closes", self.name,
                               self.pending_from)

    def _csv_row(self) -> list[str] | None:
        """The pending lines as one CSV row (Python's csv module, its lenient reading of
        stray quotes), or None while a quoted field is still open."""
        try:
            return next(csv.reader(self.pending, strict=True), [])
        except csv.Error as e:
            if "unexpected end of data" in str(e):  # inside a quoted field: read on
                return None
            return next(csv.reader(self.pending), [])

    def _row(self, fields: list[str], number: int) -> list[str]:
        if not any(f.strip() for f in fields):
            return [""]  # a blank row stays, so outputs stay one per row
        if not self.started:
            self.started = True
            if self._is_header(fields, number):
                return []
        if len(fields) <= self.index:
            raise SeqtoolError(f"{len(fields)} field{'s' if len(fields) > 1 else ''}; the "
                               f"column is number {self.index + 1}", self.name, number)
        return [one_line(fields[self.index])]

    def _is_header(self, fields: list[str], number: int) -> bool:
        """Whether the first row is a header, and which column holds the text."""
        names = [f.strip() for f in fields]
        if self.index is not None:  # a number: a header only when declared
            return bool(self.header)
        key = self.key or DEFAULT_COLUMN
        if key in names and self.header is not False:
            self.index = names.index(key)
            return True
        shown = ", ".join(repr(n) for n in names[:10])
        if self.key:
            raise SeqtoolError(f"no column {key!r} in the header (its columns: {shown})",
                               self.name, number)
        if len(fields) == 1:  # one column, the text
            self.index = 0
            return bool(self.header)
        kind = "tab-separated" if self.fmt == "tsv" else "comma-separated"
        raise SeqtoolError(f"{len(fields)} {kind} columns and none named {key!r}: name the "
                           "text's with --column NAME|N", self.name, number)

    def _jsonl(self, line: str, number: int) -> list[str]:
        if not line.strip():
            return [""]
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            raise SeqtoolError(f"invalid JSON: {e.msg} (JSONL: one JSON value per line)",
                               self.name, number) from None
        if isinstance(record, str) and self.key is None and self.index is None:
            return [one_line(record)]  # a line that is one JSON string
        if isinstance(record, dict):
            if self.index is not None:
                raise SeqtoolError("a JSON object: name its key with --column NAME",
                                   self.name, number)
            key = self.key or DEFAULT_COLUMN
            if key not in record:
                hint = "" if self.key else " (or name the key with --column NAME)"
                raise SeqtoolError(f"no key {key!r} in this object{hint}", self.name, number)
            value = record[key]
        elif isinstance(record, list) and self.index is not None:
            if len(record) <= self.index:
                raise SeqtoolError(f"{len(record)} values; the column is number "
                                   f"{self.index + 1}", self.name, number)
            value = record[self.index]
        else:
            want = "an array" if self.index is not None else "an object"
            raise SeqtoolError(f"expected {want} per line, not {type(record).__name__}",
                               self.name, number)
        if value is None:
            return [""]
        if not isinstance(value, str):
            raise SeqtoolError(f"the text is {type(value).__name__}, not a string", self.name,
                               number)
        return [one_line(value)]


def column_reader(path: str | Path | None, columns: Columns, name: str) -> ColumnReader | None:
    """The reader of `path`'s rows, or None where each line is the text (a file of no known
    format, with neither a column nor a header asked for)."""
    fmt = file_format(path)
    if fmt is None and columns.column is None and columns.header is None:
        return None
    return ColumnReader(fmt, columns.column, columns.header, name)
