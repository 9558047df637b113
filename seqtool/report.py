"""Rich tables for humans (stdout); the commands print JSON instead with --json."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def _console() -> Console:
    return Console(highlight=False)


def print_classification(report: dict[str, Any]) -> None:
    console = _console()
    console.print(f"[bold]{report['data']}[/]: {report['examples']} examples, "
                  f"accuracy [bold]{report['accuracy']:.4f}[/], "
                  f"macro-F1 [bold]{report['macro_f1']:.4f}[/]")
    table = Table("class", "precision", "recall", "F1", "support")
    for label, m in report["per_class"].items():
        table.add_row(label, f"{m['precision']:.4f}", f"{m['recall']:.4f}", f"{m['f1']:.4f}",
                      str(m["support"]))
    console.print(table)
    confusion = Table("gold \\ predicted", *report["labels"], title="confusion matrix")
    for label, row in zip(report["labels"], report["confusion"]):
        confusion.add_row(label, *map(str, row))
    console.print(confusion)


def print_generation(report: dict[str, Any]) -> None:
    console = _console()
    table = Table("class", "perplexity", "perplexity (wrong class)")
    table.add_row("[bold]all[/]", f"{report['perplexity']:.2f}",
                  f"{report['perplexity_wrong_class']:.2f}")
    for label, m in report["per_class"].items():
        table.add_row(label, f"{m['perplexity']:.2f}", f"{m['perplexity_wrong_class']:.2f}")
    console.print(table)
    s = report["samples"]
    copied = "n/a" if s["copied_from_train"] is None else f"{s['copied_from_train']:.3f}"
    console.print(f"{s['per_class']} samples per class at temperature {s['temperature']}: "
                  f"class consistency [bold]{s['class_consistency']:.3f}[/], "
                  f"distinct-1 {s['distinct_1']:.3f}, distinct-2 {s['distinct_2']:.3f}, "
                  f"copied {copied}, {s['generated_tokens_per_s']:.0f} tokens/s")
    for label, texts in s["examples"].items():
        for t in texts:
            console.print(f"  [dim]{label}[/]  {t}")


def print_translation(report: dict[str, Any]) -> None:
    console = _console()
    console.print(f"BLEU [bold]{report['bleu']:.2f}[/]  {report['bleu_signature']}")
    console.print(f"chrF [bold]{report['chrf']:.2f}[/]  {report['chrf_signature']}")
    console.print(f"{report['sentences']} sentences, beam {report['beam']}: "
                  f"{report['sentences_per_s']:.1f} sentences/s, "
                  f"{report['tokens_per_s']:.0f} tokens/s (model loading included)")


def checkpoint_summary(path: str | None) -> dict[str, Any]:
    from seqtool.checkpoint import Checkpoint
    from seqtool.predict import default_checkpoint
    from seqtool.tokenizer import Tokenizer

    path = path or str(default_checkpoint("classify"))
    ckpt = Checkpoint.load(path)
    params = sum(v.numel() for k, v in ckpt.weights.items())
    return {
        "path": path,
        "task": ckpt.task,
        "parameters": params,
        "model_config": ckpt.model_config,
        "labels": ckpt.labels,
        "tokenizers": {k: Tokenizer(v).vocab_size for k, v in ckpt.tokenizers.items()},
        "resumable": ckpt.train_state is not None,
        **ckpt.meta,
    }


def print_info(summary: dict[str, Any]) -> None:
    console = _console()
    table = Table(show_header=False, title=summary["path"])
    history = summary.pop("history", [])
    for key, value in summary.items():
        table.add_row(key, str(value))
    console.print(table)
    if history:
        columns = list(history[-1].keys())
        h = Table(*columns, title="training history")
        for record in history:
            h.add_row(*(str(record.get(c, "")) for c in columns))
        console.print(h)
