"""Attention matrices: a PNG (matplotlib) and a terminal view (rich)."""

from __future__ import annotations

from pathlib import Path

from seqtool.errors import SeqtoolError


def _matrix(attention) -> tuple[list[list[float]], list[str], list[str]]:
    """An `AttentionMap`'s weights, source pieces and target pieces."""
    return attention.weights, attention.source_pieces, attention.target_pieces


def attention_table(attention) -> None:
    """Print source pieces against target pieces, shading each weight, to stderr."""
    from rich.console import Console
    from rich.table import Table

    matrix, sources, targets = _matrix(attention)
    table = Table(show_lines=False, title="attention (rows: target, columns: source)")
    table.add_column("")
    for s in sources:
        table.add_column(s, justify="center")
    for t, row in zip(targets, matrix):
        cells = []
        for w in row:
            level = int(round(w * 255))
            cells.append(f"[on rgb({level},{level},{level})]{w:.2f}[/]" if w >= 0.005 else "")
        table.add_row(t, *cells)
    Console(stderr=True).print(table)


def save_attention_png(attention, path: str | Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SeqtoolError("--attention PNG needs matplotlib: pip install 'seqtool[plot]'") \
            from None
    matrix, sources, targets = _matrix(attention)
    fig, ax = plt.subplots(figsize=(max(4, 0.4 * len(sources) + 2),
                                    max(3, 0.4 * len(targets) + 1.5)))
    ax.imshow(matrix, cmap="Greys", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(sources)), sources, rotation=90)
    ax.set_yticks(range(len(targets)), targets)
    ax.set_xlabel("source")
    ax.set_ylabel("target")
    fig.tight_layout()
    import io

    from seqtool.checkpoint import atomic_write_bytes

    buffer = io.BytesIO()  # rendered in memory, then written atomically (errors name the path)
    fig.savefig(buffer, format="png", dpi=120)
    plt.close(fig)
    atomic_write_bytes(Path(path), buffer.getvalue())
