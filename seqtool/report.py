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
                  f"macro-F1 [bold]{report['macro_f1']:.4f}[/]"
                  + (f" (over {report['macro_f1_classes']} of {len(report['labels'])} "
                     "classes: those in the data or the predictions)"
                     if report.get("macro_f1_classes", len(report["labels"]))
                     < len(report["labels"]) else ""))

    def score(value: float | None) -> str:
        return "-" if value is None else f"{value:.4f}"

    table = Table("class", "precision", "recall", "F1", "support")
    for label, m in report["per_class"].items():
        table.add_row(escape(label), score(m["precision"]), score(m["recall"]), score(m["f1"]),
                      str(m["support"]))
    console.print(table)
    write_stdout("\n".join(confusion_lines(report["labels"], report["confusion"],
                                           console.width)) + "\n")


def confusion_lines(labels: list[str], confusion: list[list[int]], width: int = 80) -> list[str]:
    """The confusion matrix as text no wider than `width` (when the counts allow): rows gold,
    columns predicted. Counts are never cut; when the class names do not fit as column heads,
    the columns are numbered and the rows carry the numbers and the names (cut if need be),
    with a legend of the full names below."""
    cell = max([len(str(x)) for row in confusion for x in row] + [1])
    name = max(len(label) for label in labels)
    full_cell = max(cell, name)
    if name + len(labels) * (full_cell + 2) <= width:  # the names themselves head the columns
        lines = ["confusion matrix (rows: gold, columns: predicted)",
                 " " * name + "".join(f"  {label:>{full_cell}}" for label in labels)]
        lines += [f"{label:<{name}}" + "".join(f"  {x:>{full_cell}}" for x in row)
                  for label, row in zip(labels, confusion)]
        return lines
    number = len(str(len(labels)))
    cell = max(cell, number)
    room = width - len(labels) * (cell + 1) - number - 1  # what is left for the row names
    short = [label if len(label) <= room else label[:max(room - 1, 0)] + "…" if room > 1
             else "" for label in labels]
    head = number + 1 + max(len(x) for x in short)
    lines = ["confusion matrix (rows: gold, columns: predicted; classes by number)",
             " " * head + "".join(f" {i + 1:>{cell}}" for i in range(len(labels)))]
    lines += [f"{i + 1:>{number}} {short[i]:<{head - number - 1}}"
              + "".join(f" {x:>{cell}}" for x in row) for i, row in enumerate(confusion)]
    lines.append("classes:")
    entries = [f"{i + 1} = {label}" for i, label in enumerate(labels)]
    line = " "
    for entry in entries:
        if len(line) > 1 and len(line) + len(entry) + 2 > width:
            lines.append(line.rstrip(","))
            line = " "
        line += f" {entry},"
    lines.append(line.rstrip(","))
    return lines


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
        "inputs": recorded_inputs(path, ckpt.meta),
    }


def recorded_inputs(path: str, meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The files the run that made a checkpoint read (`meta["inputs"]`; for older files what
    the run fingerprint and command tell), each with `here`: whether the file of that name is
    now the same (by SHA-256), differs, is missing, or is this very checkpoint (a teacher since
    replaced by its student)."""
    import os
    import shlex

    from seqtool.training.resume import file_digest

    inputs = meta.get("inputs")
    if not isinstance(inputs, list):  # written before inputs were recorded
        run = meta.get("run") if isinstance(meta.get("run"), dict) else {}
        data, options = run.get("data") or {}, run.get("options") or {}
        try:
            words = shlex.split(str(meta.get("command", "")))
        except ValueError:
            words = []
        flags = {"--train": "train_path", "--dev": "dev_path", "--tokenizer": "tokenizer_path",
                 "--init": "init", "--embeddings": "embeddings"}
        given = {flags[w]: v for w, v in zip(words, words[1:]) if w in flags}  # last wins
        inputs = [{"option": next(f for f, k in flags.items() if k == key), "path": given[key],
                   "sha256": digest} for key, digest in data.items()
                  if key in given and isinstance(digest, str)]
        if options.get("teacher"):
            inputs.append({"option": "--teacher", "path": options["teacher"],
                           "sha256": options.get("teacher_digest")})
    found = []
    for entry in inputs:
        if not isinstance(entry, dict) or not entry.get("path"):
            continue
        where = str(entry["path"])
        if os.path.exists(where) and os.path.samefile(where, path):
            here = "this checkpoint now (then another file)"
        elif not os.path.isfile(where):
            here = "missing"
        else:
            try:
                here = "same" if file_digest(where) == entry.get("sha256") else "differs"
            except Exception:  # unreadable: say so, never fail `info`
                here = "unreadable"
        found.append({**entry, "here": here})
    return found


def toml_lines(name: str, value: dict[str, Any] | list[dict[str, Any]],
               width: int = 80) -> list[str]:
    """A dict as a TOML table `[name]` (a list of dicts as [[name]]; nested dicts as
    [name.key], lists of dicts as [[name.key]]); None, which TOML lacks, as a comment. Arrays
    longer than `width` take a line per element."""
    import json
    import re

    def key(k: Any) -> str:
        return str(k) if re.fullmatch(r"[A-Za-z0-9_-]+", str(k)) else json.dumps(str(k))

    def scalar(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return "nan" if v != v else ("inf" if v == math.inf else "-inf" if v == -math.inf
                                         else repr(v))
        if isinstance(v, int):
            return str(v)
        if isinstance(v, (list, tuple)):
            items = [scalar(x) for x in v if x is not None]
            one = "[" + ", ".join(items) + "]"
            return one if len(one) <= width - 30 else (
                "[\n" + "".join(f"  {x},\n" for x in items) + "]")
        return json.dumps(str(v), ensure_ascii=False)

    def table(path: str, d: dict[str, Any], array: bool = False) -> list[str]:
        lines = [f"[[{path}]]" if array else f"[{path}]"]
        nested = []
        for k, v in d.items():
            if isinstance(v, dict):
                nested += table(f"{path}.{key(k)}", v)
            elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
                for x in v:
                    nested += table(f"{path}.{key(k)}", x, array=True)
            elif v is None:
                lines.append(f"# {key(k)}: none")
            else:
                lines.append(f"{key(k)} = {scalar(v)}")
        return lines + nested

    if isinstance(value, list):
        return [line for item in value for line in table(key(name), item, array=True)]
    return table(key(name), value)


HISTORY_HEADS = {"train_loss": "loss", "tokens_per_s": "tok/s"}


def history_lines(history: list[dict[str, Any]], width: int = 80) -> list[str]:
    """The training history as aligned columns, never cut: short heads, compact numbers, and
    when the columns are too many for `width`, more blocks, each led by the step."""
    columns = list(dict.fromkeys(k for record in history for k in record))

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.2e}" if v and abs(v) < 1e-2 else f"{v:.4g}" if abs(v) < 1e5 else \
                f"{v:.0f}"
        return "" if v is None else str(v)

    cells = {c: [cell(r.get(c)) for r in history] for c in columns}
    widths = {c: max([len(HISTORY_HEADS.get(c, c))] + [len(x) for x in cells[c]]) for c in columns}
    lead = [c for c in ("step",) if c in columns]
    rest = [c for c in columns if c not in lead]
    blocks, block = [], list(lead)
    for c in rest:
        if len(block) > len(lead) and sum(widths[x] + 2 for x in block + [c]) > width:
            blocks.append(block)
            block = list(lead)
        block.append(c)
    blocks.append(block)
    lines = ["training history"]
    for number, block in enumerate(blocks):
        if number:
            lines.append("")
        lines.append("  ".join(f"{HISTORY_HEADS.get(c, c):>{widths[c]}}" for c in block))
        lines += ["  ".join(f"{cells[c][i]:>{widths[c]}}" for c in block)
                  for i in range(len(history))]
    return lines


def command_lines(command: str, width: int = 80) -> list[str]:
    """A shell command wrapped at `width` with backslashes, each option beside its value."""
    import shlex

    try:
        words = shlex.split(command)
    except ValueError:
        return [command]
    parts: list[str] = []
    for w in words:  # "--flag value" stays together
        if parts and parts[-1].startswith("-") and " " not in parts[-1] and \
                not w.startswith("-") and len(parts) > 1:
            parts[-1] += " " + shlex.quote(w)
        else:
            parts.append(shlex.quote(w))
    lines, line = [], ""
    for part in parts:
        if line and len(line) + len(part) + 3 > width:
            lines.append(line + " \\")
            line = "    " + part
        else:
            line = f"{line} {part}" if line else part
    return lines + [line]


def print_info(summary: dict[str, Any]) -> None:
    """A checkpoint's summary for people: its facts, the command and inputs that made it, its
    configurations as TOML (what `--config` reads) and its training history, within the
    terminal's width."""
    width = _console().width
    summary = dict(summary)
    history = summary.pop("history", [])
    if not (isinstance(history, list) and all(isinstance(r, dict) for r in history)):
        summary["history"], history = history, []  # an edited file: show it as it is
    command = summary.pop("command", None)
    inputs = summary.pop("inputs", None)
    tables = {k: v for k, v in summary.items() if isinstance(v, dict)
              or (isinstance(v, list) and v and all(isinstance(x, dict) for x in v))}
    facts = {k: v for k, v in summary.items() if k not in tables}
    lines = [str(facts.pop("path"))]
    name = max(len(str(k)) for k in facts) if facts else 0
    import textwrap

    for k, v in facts.items():
        text = ", ".join(map(str, v)) if isinstance(v, list) else str(v)
        lines += textwrap.wrap(text, width=max(width - name - 4, 20),
                               initial_indent=f"  {k:<{name}}  ",
                               subsequent_indent=" " * (name + 4)) or [f"  {k}"]
    if command:
        lines += ["", "command (as recorded):"]
        lines += ["  " + x for x in command_lines(str(command), width - 2)]
    if inputs:
        lines += ["", "inputs (sha256; here = the file of that name now):"]
        for entry in inputs:
            digest = str(entry.get("sha256") or "-")[:16]
            lines.append(f"  {entry['option']} {entry['path']}")
            lines.append(f"      sha256 {digest}…  here: {entry['here']}")
    for key, value in tables.items():
        lines.append("")
        lines += toml_lines(key, value, width)
    if history:
        lines.append("")
        lines += history_lines(history, width)
    write_stdout("\n".join(lines) + "\n")


def training_runs(paths: list[str], chain: bool = True) -> list[dict[str, Any]]:
    """The training record of each checkpoint as curves (`seqtool.plot.run_curves`), each
    preceded, with `chain`, by the runs it started from (--init) when their files are at hand
    and unchanged since: a pretrain → finetune chain in order."""
    import os

    from seqtool.checkpoint import Checkpoint
    from seqtool.inference.predict import resolve_path
    from seqtool.plot import run_curves

    runs: list[dict[str, Any]] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        path = str(resolve_path(name, "classify"))
        if os.path.realpath(path) in seen:
            return
        seen.add(os.path.realpath(path))
        ckpt = Checkpoint.load(path)
        if chain:
            for entry in recorded_inputs(path, ckpt.meta):
                if entry["option"] == "--init" and entry["here"] == "same":
                    visit(entry["path"])
        metric = next((k[len("best_"):] for k in ckpt.meta if k.startswith("best_")), None)
        history = ckpt.meta.get("history")
        if not (isinstance(history, list) and all(isinstance(r, dict) for r in history)):
            history = []
        runs.append(run_curves(path, ckpt.task, history, metric))

    for name in paths:
        visit(name)
    return runs
