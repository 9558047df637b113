"""Pictures: attention matrices (a PNG, and a terminal view) and training curves (a PNG).

matplotlib is optional (`pip install 'seqtool[plot]'`): commands that draw call
`require_matplotlib` before any work, so a missing package costs one line, not a run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqtool.errors import SeqtoolError

WORD_START = "▁"  # sentencepiece's mark of a piece that begins a word


def require_matplotlib(what: str) -> None:
    """Refuse at once, in one line, when matplotlib is missing."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise SeqtoolError(f"{what} needs matplotlib: pip install matplotlib (or pip install "
                           "'seqtool[plot]')")


def piece_labels(pieces: list[str]) -> list[str]:
    """Pieces as people read them: a word's first piece without sentencepiece's ▁, a piece
    inside a word after a · (so "chem", "·in" reads as one word), punctuation as it is."""
    labels = []
    for piece in pieces:
        if piece.startswith(WORD_START):
            labels.append(piece[len(WORD_START):] or "␣")
        elif piece[:1].isalnum():
            labels.append("·" + piece)
        else:
            labels.append(piece)
    return labels


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> None:
    """Render in memory, then write atomically (errors name the path)."""
    import io

    from seqtool.checkpoint import atomic_write_bytes

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    _pyplot().close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())


def attention_table(attention) -> None:
    """Print source pieces against target pieces, shading each weight, to stderr."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(show_lines=False, title="attention (rows: target, columns: source)")
    table.add_column("")
    for s in piece_labels(attention.source_pieces):
        table.add_column(escape(s), justify="center")
    for t, row in zip(piece_labels(attention.target_pieces), attention.weights):
        cells = []
        for w in row:
            level = int(round(w * 255))
            cells.append(f"[on rgb({level},{level},{level})]{w:.2f}[/]" if w >= 0.005 else "")
        table.add_row(escape(t), *cells)
    Console(stderr=True).print(table)


def save_attention_png(attention, path: str | Path) -> None:
    """The attention matrix: target pieces down, source pieces across, with a colour scale."""
    require_matplotlib("--attention-png")
    plt = _pyplot()
    sources = piece_labels(attention.source_pieces)
    targets = piece_labels(attention.target_pieces)
    fig, ax = plt.subplots(figsize=(max(4.5, 0.45 * len(sources) + 3),
                                    max(3, 0.4 * len(targets) + 1.5)))
    image = ax.imshow(attention.weights, cmap="Blues", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(sources)), sources, rotation=60, ha="right")
    ax.set_yticks(range(len(targets)), targets)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    fig.colorbar(image, ax=ax, label="attention weight")
    fig.tight_layout()
    _save(fig, path)


# ----------------------------------------------------------------------------- training curves


def run_curves(name: str, task: str, history: list[dict[str, Any]], metric: str | None
               ) -> dict[str, Any]:
    """One run's curves from its checkpoint's history: steps, train loss, dev metric, lr."""
    if not history:
        raise SeqtoolError("no training history to draw (a combined or converted model?)",
                           name)
    if metric is None or metric not in history[-1]:
        known = [k for k in history[-1] if k not in ("step", "epoch", "train_loss", "lr",
                                                     "tokens_per_s")]
        metric = known[0] if known else None
    return {"name": name, "task": task, "metric": metric,
            "step": [r.get("step") for r in history],
            "train_loss": [r.get("train_loss") for r in history],
            "dev": [r.get(metric) for r in history] if metric else [],
            "lr": [r.get("lr") for r in history]}


def save_training_curves(runs: list[dict[str, Any]], path: str | Path) -> None:
    """A column per run (a pretrain → finetune chain left to right): train loss, the dev
    metric (its best marked) and the learning rate over steps."""
    require_matplotlib("seqtool plot")
    plt = _pyplot()
    fig, axes = plt.subplots(3, len(runs), figsize=(4.2 * len(runs) + 0.6, 8), squeeze=False,
                             sharex="col")
    for column, run in enumerate(runs):
        loss, dev, lr = axes[0][column], axes[1][column], axes[2][column]
        loss.set_title(f"{run['name']}\n({run['task']})", fontsize=10)
        loss.plot(run["step"], run["train_loss"], marker=".", color="tab:blue")
        loss.set_ylabel("train loss")
        if run["dev"]:
            points = [(s, v) for s, v in zip(run["step"], run["dev"]) if v is not None]
            dev.plot(*zip(*points), marker=".", color="tab:green")
            higher = run["metric"] not in ("perplexity", "bits_per_character", "loss")
            best = (max if higher else min)(points, key=lambda p: p[1])
            dev.scatter([best[0]], [best[1]], color="tab:red", zorder=3,
                        label=f"best {best[1]:.4g} (step {best[0]})")
            dev.legend(fontsize=8)
        dev.set_ylabel(f"dev {run['metric'] or '(none)'}")
        lr.plot(run["step"], run["lr"], color="tab:orange")
        lr.set_ylabel("learning rate")
        lr.set_xlabel("step")
        lr.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    fig.tight_layout()
    _save(fig, path)
