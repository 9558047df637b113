"""Reading examples from files and streams, and cutting them into batches by a token budget.

Readers yield plain Python records and raise :class:`SeqtoolError` naming the file and line
of the first bad record. Nothing here imports torch.
"""

from __future__ import annotations

import json
import random
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from seqtool.errors import SeqtoolError, warn_once
from seqtool.text.blank import is_blank

if TYPE_CHECKING:
    from seqtool.text.columns import Columns


@dataclass(frozen=True)
class LabeledText:
    """One `label<TAB>text` record (S1 input, S2 target)."""

    label: str
    text: str
    line: int = field(default=0, compare=False)  # where it came from, for error messages


@dataclass(frozen=True)
class TextPair:
    """One aligned source/target pair (S3)."""

    src: str
    tgt: str


def _display_name(path: str | Path | None) -> str:
    return "<stdin>" if path in (None, "-") else str(path)


def iter_lines(path: str | Path | None) -> Iterator[tuple[int, str]]:
    """Yield (line number, line without its line ending) from a file or stdin ('-' or None).

    Lines are decoded strictly as UTF-8 so that a bad byte is reported with its line number;
    CRLF endings are accepted.
    """
    name = _display_name(path)
    if path in (None, "-"):
        stream = sys.stdin.buffer
        close = False
    else:
        try:
            stream = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError as e:
            raise SeqtoolError(f"cannot open: {e.strerror}", name) from None
        close = True
    try:
        for number, raw in enumerate(stream, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise SeqtoolError(
                    f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1})",
                    name,
                    number,
                ) from None
            if number == 1 and line.startswith("\ufeff"):
                line = line[1:]
            yield number, line.rstrip("\r\n")
    finally:
        if close:
            stream.close()


def read_labeled(path: str | Path | None) -> Iterator[LabeledText]:
    """Read `label<TAB>text` lines, fastText's `__label__LABEL text` lines, or JSONL
    `{"label": ..., "text": ...}` for *.jsonl files."""
    name = _display_name(path)
    is_jsonl = str(path).endswith((".jsonl", ".json"))
    seen = False
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        seen = True
        if is_jsonl:
            yield _parse_jsonl_record(line, name, number)
            continue
        if line.startswith(FASTTEXT_LABEL):
            label, text = _fasttext_record(line, name, number)
        elif "\t" not in line:
            raise SeqtoolError("missing tab: expected 'label<TAB>text' (or fastText's "
                               "'__label__LABEL text')", name, number)
        else:
            label, text = line.split("\t", 1)
        label, text = label.strip(), text.strip()
        if not label:
            raise SeqtoolError("empty label", name, number)
        if not text:
            raise SeqtoolError("empty text", name, number)
        yield LabeledText(label, text, number)
    if not seen:
        raise SeqtoolError("file is empty: no records", name)


FASTTEXT_LABEL = "__label__"  # fastText's training format: `__label__positive A fine film.`


def _fasttext_record(line: str, name: str, number: int) -> tuple[str, str]:
    """A fastText line's label and text; one label only (seqtool's classes exclude each
    other)."""
    words = line.split(None, 1)
    label, text = words[0][len(FASTTEXT_LABEL):], words[1] if len(words) > 1 else ""
    if text.startswith(FASTTEXT_LABEL):
        second = text.split(None, 1)[0]
        raise SeqtoolError(f"two labels ({words[0]}, {second}): each text takes one class",
                           name, number)
    return label, text


def _parse_jsonl_record(line: str, name: str, number: int) -> LabeledText:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as e:
        raise SeqtoolError(f"invalid JSON: {e.msg}", name, number) from None
    if not isinstance(record, dict) or "text" not in record or "label" not in record:
        raise SeqtoolError('expected an object with "label" and "text"', name, number)
    label, text = str(record["label"]).strip(), str(record["text"]).strip()
    if not label:
        raise SeqtoolError("empty label", name, number)
    if not text:
        raise SeqtoolError("empty text", name, number)
    return LabeledText(label, text, number)


def read_parallel(
    src: str | Path, tgt: str | Path | None = None, keep_blank: bool = False
) -> list[TextPair]:
    """Read aligned pairs from two files, or from one `src<TAB>tgt` file when `tgt` is None.

    Lines blank on both sides are left out, or kept as empty pairs with `keep_blank` (two
    files only), so that output written per source line stays aligned with it."""
    pairs: list[TextPair] = []
    if tgt is None:
        name = _display_name(src)
        for number, line in iter_lines(src):
            if not line.strip():
                continue
            if "\t" not in line:
                raise SeqtoolError("missing tab: expected 'source<TAB>target'", name, number)
            s, t = (part.strip() for part in line.split("\t", 1))
            if not s or not t:
                raise SeqtoolError(f"empty {'source' if not s else 'target'}", name, number)
            pairs.append(TextPair(s, t))
    else:
        src_lines = list(iter_lines(src))
        tgt_lines = list(iter_lines(tgt))
        if len(src_lines) != len(tgt_lines):
            shorter, line = (
                (tgt, len(tgt_lines) + 1)
                if len(tgt_lines) < len(src_lines)
                else (src, len(src_lines) + 1)
            )
            raise SeqtoolError(
                f"parallel files differ in length ({src}: {len(src_lines)} lines, "
                f"{tgt}: {len(tgt_lines)} lines)",
                _display_name(shorter),
                line,
            )
        for (number, s), (_, t) in zip(src_lines, tgt_lines, strict=True):
            s, t = s.strip(), t.strip()
            if not s and not t:
                if keep_blank:
                    pairs.append(TextPair("", ""))
                continue
            if not s or not t:
                bad = src if not s else tgt
                raise SeqtoolError(
                    "empty line where its partner is not", _display_name(bad), number
                )
            pairs.append(TextPair(s, t))
    if not any(p.src for p in pairs):
        raise SeqtoolError("file is empty: no records", _display_name(src))
    return pairs


ERRORS = ("strict", "skip", "replace")  # what to do with a line that is not valid UTF-8


class LineSource:
    """Lines of a file descriptor, handed out as soon as they have arrived.

    `take(limit)` waits for one line, then adds only the lines that are already readable
    (up to `limit`), so a slow pipe or a terminal gets an answer per line while a file or a
    fast pipe still fills whole batches.
    """

    def __init__(self, fd: int):
        self.fd = fd
        self.buffer = bytearray()
        self.scanned = 0  # no newline in buffer[:scanned]
        self.eof = False

    def _ready(self) -> bool:
        import select

        try:
            return bool(select.select([self.fd], [], [], 0)[0])
        except (OSError, ValueError):  # not selectable (some platforms): take what we have
            return False

    def _fill(self, wait: bool) -> bool:
        if self.eof or (not wait and not self._ready()):
            return False
        import os

        data = os.read(self.fd, 1 << 16)
        if not data:
            self.eof = True
            return False
        self.buffer += data
        return True

    def take(self, limit: int) -> list[bytes]:
        """Up to `limit` lines (with their endings); [] only at the end of input."""
        lines: list[bytes] = []
        while len(lines) < limit:
            end = self.buffer.find(b"\n", self.scanned)
            if end >= 0:
                lines.append(bytes(self.buffer[: end + 1]))
                del self.buffer[: end + 1]
                self.scanned = 0
                continue
            self.scanned = len(self.buffer)
            if self._fill(wait=not lines):
                continue
            if self.eof and self.buffer:  # a last line without a newline
                lines.append(bytes(self.buffer))
                self.buffer.clear()
                self.scanned = 0
            break
        return lines


class StreamSource:
    """`LineSource` for a stream without a file descriptor (e.g. an in-memory test stdin)."""

    def __init__(self, stream):
        self.stream = stream

    def take(self, limit: int) -> list[bytes]:
        lines = []
        while len(lines) < limit and (line := self.stream.readline()):
            lines.append(line)
        return lines


def decode_line(raw: bytes, errors: str, name: str, number: int) -> str | None:
    """A raw line as text without its line ending; None when `errors="skip"` drops it."""
    try:
        line = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        if errors == "replace":
            line = raw.decode("utf-8", errors="replace")
        elif errors == "skip":
            warn_once("skip-utf8", f"{name}:{number}: skipped a line that is not valid UTF-8 "
                      "(--errors skip); later ones are skipped silently")
            return None
        else:
            raise SeqtoolError(
                f"not valid UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); "
                "--errors skip|replace reads dirty input", name, number) from None
    if number == 1 and line.startswith("\ufeff"):
        line = line[1:]
    return line.rstrip("\r\n")


def read_text_chunks(
    inputs: Sequence[str] | None, path: str | None = None, size: int = 512,
    errors: str = "strict", columns: Columns | None = None,
) -> Iterator[list[str]]:
    """Texts to predict on, in lists of at most `size`, each list as soon as it is available.

    The command-line arguments if any, else the lines of a file or stdin, stripped; with
    `columns`, the rows of a TSV, CSV or JSONL file, each its text column's value
    (`seqtool.text.columns`; a header row is left out). Empty rows are kept (as empty
    strings) so that outputs stay aligned with input rows. A bad row (or a line that is not
    valid UTF-8) ends the stream with an error after the rows before it.
    """
    if inputs:
        if columns and (columns.column is not None or columns.header is not None):
            raise SeqtoolError("--column and --header read -i FILE or stdin; texts given as "
                               "arguments are read whole")
        yield from chunked(inputs, size)
        return
    import os

    from seqtool.text.columns import column_reader

    name = _display_name(path)
    if path in (None, "-"):
        try:
            source, close = LineSource(sys.stdin.fileno()), False
        except (AttributeError, OSError, ValueError):  # no descriptor: read the stream itself
            source, close = StreamSource(sys.stdin.buffer), False
    else:
        try:
            source, close = LineSource(os.open(path, os.O_RDONLY)), True
        except OSError as e:
            raise SeqtoolError(f"cannot open: {e.strerror}", name) from None
    rows = column_reader(path, columns, name) if columns else None
    try:
        number = 0
        while raw_lines := source.take(size):
            texts: list[str] = []
            for raw in raw_lines:
                number += 1
                try:
                    line = decode_line(raw, errors, name, number)
                    if line is not None:
                        # a line (or field) that shows nothing is the empty line
                        texts.extend("" if is_blank(text) else text.strip() for text in
                                     (rows.feed(line, number) if rows else [line]))
                except SeqtoolError:
                    if texts:
                        yield texts  # answer what came before the bad line first
                    raise
            if texts:
                yield texts
        if rows:
            rows.finish()
    finally:
        if close:
            os.close(source.fd)


def read_texts(
    inputs: Sequence[str] | None, path: str | None = None, errors: str = "strict",
    columns: Columns | None = None,
) -> Iterator[str]:
    """Texts one by one (see `read_text_chunks`)."""
    for chunk in read_text_chunks(inputs, path, 512, errors, columns):
        yield from chunk


def chunked(items: Iterable, size: int) -> Iterator[list]:
    """Group a stream into lists of `size` items without reading it all first."""
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def token_budget_batches(
    lengths: Sequence[int],
    max_tokens: int,
    rng: random.Random | None = None,
    pool_factor: int = 50,
    max_sentences: int = 512,
) -> list[list[int]]:
    """Indices of examples grouped into batches of about `max_tokens` padded tokens.

    Examples are shuffled (when `rng` is given), then sorted by length inside pools so that a
    batch holds sentences of similar length (little padding), and the batches are shuffled
    again. The cost of a batch is its size times its longest example.
    """
    order = list(range(len(lengths)))
    if rng is not None:
        rng.shuffle(order)
    approx_batch = max(1, max_tokens // max(1, int(sum(lengths) / max(1, len(lengths)))))
    pool = approx_batch * pool_factor
    batches: list[list[int]] = []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lambda i: lengths[i])
        batch: list[int] = []
        longest = 0
        for i in chunk:
            longest_if_added = max(longest, lengths[i])
            if batch and (
                longest_if_added * (len(batch) + 1) > max_tokens or len(batch) >= max_sentences
            ):
                batches.append(batch)
                batch, longest_if_added = [], lengths[i]
            batch.append(i)
            longest = longest_if_added
        if batch:
            batches.append(batch)
    if rng is not None:
        rng.shuffle(batches)
    return batches


def check_labels(records: Sequence[LabeledText], labels: Sequence[str], path: str) -> None:
    known = set(labels)
    for r in records:
        if r.label not in known:
            raise SeqtoolError(
                f"unknown label {r.label!r} (known: {', '.join(labels)})", path, r.line or None
            )
