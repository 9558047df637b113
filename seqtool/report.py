"""Results on stdout: records in the chosen --format, and rich tables for humans."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from typing import Any


def write_stdout(text: str) -> None:
    """Write `text` to stdout completely, or raise OSError.

    Python's buffered stdout can report a large write as done when the disk fills midway
    (the bytes after the first short write are silently dropped), so results are written to
    the file descriptor directly, each short write continued until all is out or the system
    says why not (ENOSPC, EPIPE, EIO)."""
    import io
    import os

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, io.UnsupportedOperation):  # captured (tests, IDEs)
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    sys.stdout.flush()  # anything printed before goes first
    data = memoryview(text.encode(sys.stdout.encoding or "utf-8",
                                  sys.stdout.errors or "strict"))
    while data:
        written = os.write(fd, data)
        data = data[written:]


def finite(value: Any) -> Any:
    """`value` with every NaN or infinite float replaced by None (JSON has no such numbers)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def json_line(record: Any) -> str:
    """One record as strict JSON: a non-finite number becomes null, never `NaN`."""
    try:
        return json.dumps(record, ensure_ascii=False, allow_nan=False)
    except ValueError:
        return json.dumps(finite(record), ensure_ascii=False, allow_nan=False)


class RecordWriter:
    """Writes result records (dicts) in a --format to stdout, or to `sink` (a binary file),
    each batch at once.

    `json` streams one array, an element per line, so even it never waits for the end of the
    input; `text` and `tsv` use the command's own line functions."""

    def __init__(self, fmt: str, text: Callable[[dict], str] | None = None,
                 tsv: Callable[[dict], str] | None = None, sink: Any = None):
        self.fmt, self.count, self.sink = fmt, 0, sink
        self.line = {"text": text, "tsv": tsv}.get(fmt)

    def to(self, sink: Any) -> RecordWriter:
        """The same writer, writing to `sink` from the start."""
        return RecordWriter(self.fmt, sink=sink, **{k: self.line for k in (self.fmt,)
                                                     if k in ("text", "tsv")})

    def write(self, records: list[dict[str, Any]]) -> None:
        if self.fmt in ("jsonl", "json"):
            lines = [json_line(r) for r in records]
            if self.fmt == "json":
                lines = [("[" if self.count + i == 0 else ",") + x for i, x in enumerate(lines)]
        else:
            lines = [self.line(r) for r in records]
        self.count += len(records)
        if lines:
            self._put("\n".join(lines) + "\n")

    def _put(self, text: str) -> None:
        if self.sink is None:
            write_stdout(text)
        else:
            self.sink.write(text.encode("utf-8"))

    def __enter__(self) -> RecordWriter:
        return self

    def __exit__(self, kind, *_: Any) -> None:
        if self.fmt == "json" and kind is None:  # a failed run leaves no valid-looking array
            self._put("]\n" if self.count else "[]\n")


def print_report(report: dict[str, Any], fmt: str, as_text: Callable[[dict], None]) -> None:
    """An evaluation or info report as tables (text), indented JSON or one JSON line."""
    if fmt == "json":
        write_stdout(json.dumps(finite(report), indent=2, ensure_ascii=False,
                                allow_nan=False) + "\n")
    elif fmt == "jsonl":
        write_stdout(json_line(report) + "\n")
    else:
        as_text(report)


def _console():
    """rich, imported only when a table is drawn (not for --format jsonl)."""
    from rich.console import Console

    return Console(highlight=False)


def print_classification(report: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    console.print(f"[bold]{escape(str(report['data']))}[/]: {report['examples']} examples, "
                  f"accuracy [bold]{report['accuracy']:.4f}[/], "
                  f"macro-F1 [bold]{report['macro_f1']:.4f}[/]")
    table = Table("class", "precision", "recall", "F1", "support")
    for label, m in report["per_class"].items():
        table.add_row(escape(label), f"{m['precision']:.4f}", f"{m['recall']:.4f}",
                      f"{m['f1']:.4f}", str(m["support"]))
    console.print(table)
    confusion = Table("gold \\ predicted", *map(escape, report["labels"]),
                      title="confusion matrix")
    for label, row in zip(report["labels"], report["confusion"]):
        confusion.add_row(escape(label), *map(str, row))
    console.print(confusion)


def print_generation(report: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    table = Table("class", "perplexity", "perplexity (wrong class)")
    table.add_row("[bold]all[/]", f"{report['perplexity']:.2f}",
                  f"{report['perplexity_wrong_class']:.2f}")
    for label, m in report["per_class"].items():
        table.add_row(escape(label), f"{m['perplexity']:.2f}", f"{m['perplexity_wrong_class']:.2f}")
    console.print(table)
    console.print(f"bits per character [bold]{report['bits_per_character']:.3f}[/] "
                  "(right class; comparable across tokenizers)")
    console.print("as a classifier by Bayes' rule, argmax p(text | class): accuracy "
                  f"[bold]{report['bayes_accuracy']:.3f}[/]")
    s = report["samples"]
    copied = (f"n/a ({s.get('copied_note', 'no training file')})"
              if s["copied_from_train"] is None else f"{s['copied_from_train']:.3f}")
    console.print(f"{s['per_class']} samples per class at temperature {s['temperature']}, "
                  f"top-p {s['top_p']}, guidance {s['guidance']}, lexicon "
                  f"{escape(s['lexicon'])}: "
                  f"class consistency [bold]{s['class_consistency']:.3f}[/], "
                  f"distinct-1 {s['distinct_1']:.3f}, distinct-2 {s['distinct_2']:.3f}, "
                  f"copied {copied}, {s['generated_tokens_per_s']:.0f} tokens/s")
    console.print(f"non-words {s['non_word_rate']:.2%} of words, in "
                  f"{s['sentences_with_non_word']:.1%} of samples "
                  f"(reference: {escape(s['reference_vocabulary'])})")
    for label, texts in s["examples"].items():
        for t in texts:
            console.print(f"  [dim]{escape(label)}[/]  {escape(t)}")


def print_translation(report: dict[str, Any]) -> None:
    console = _console()
    console.print(f"BLEU [bold]{report['bleu']:.2f}[/]  {report['bleu_signature']}")
    console.print(f"chrF [bold]{report['chrf']:.2f}[/]  {report['chrf_signature']}")
    console.print(f"{report['sentences']} sentences, beam {report['beam']}: "
                  f"{report['sentences_per_s']:.1f} sentences/s, "
                  f"{report['tokens_per_s']:.0f} tokens/s (model loading included)")


def checkpoint_summary(path: str | None) -> dict[str, Any]:
    from seqtool.checkpoint import Checkpoint
    from seqtool.errors import SeqtoolError
    from seqtool.inference.predict import resolve_path
    from seqtool.text.tokenizer import Tokenizer

    path = str(resolve_path(path, "classify"))
    ckpt = Checkpoint.load(path)
    params, seen = 0, []
    for weight in ckpt.numpy_weights().values():  # a tied weight counts once
        if weight.ndim < 2 or not any(w.shape == weight.shape and (w == weight).all()
                                      for w in seen):
            params += weight.size
            seen.append(weight)
    try:
        tokenizers = {k: Tokenizer(v).vocab_size for k, v in ckpt.tokenizers.items()}
    except SeqtoolError as e:
        raise SeqtoolError(f"damaged checkpoint: tokenizer is {e.message}", path) from None
    return {
        "path": path,
        "task": ckpt.task,
        "parameters": params,
        "model_config": ckpt.model_config,
        "labels": ckpt.labels,
        "tokenizers": tokenizers,
        "resumable": ckpt.train_state is not None,
        **ckpt.meta,
        # The words samples may use: thousands; their count says enough.
        **({"lexicon": f"{len(ckpt.meta['lexicon'])} words"}
           if isinstance(ckpt.meta.get("lexicon"), list) else {}),
    }


def print_info(summary: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = _console()
    table = Table(show_header=False, title=escape(summary["path"]))
    history = summary.pop("history", [])
    if not (isinstance(history, list) and all(isinstance(r, dict) for r in history)):
        summary["history"], history = history, []  # an edited file: show it as it is
    for key, value in summary.items():
        table.add_row(escape(str(key)), escape(str(value)))
    console.print(table)
    if history:
        columns = list(history[-1].keys())
        h = Table(*map(escape, map(str, columns)), title="training history")
        for record in history:
            h.add_row(*(escape(str(record.get(c, ""))) for c in columns))
        console.print(h)
