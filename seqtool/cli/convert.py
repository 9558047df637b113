"""`seqtool convert`: write the model file (`.seqtool`) of a torch checkpoint (`.pt`)."""

from __future__ import annotations

import sys

import click

from seqtool.cli.options import out_option


@click.command()
@click.argument("checkpoint", type=click.Path(dir_okay=False))
@out_option("Where to write the model file (default: CHECKPOINT with .seqtool).")
@click.option("--half/--no-half", default=None,
              help="Store the weights in float16 (default: as the checkpoint stores them).")
def convert(checkpoint: str, out: str | None, half: bool | None) -> None:
    """Write the model file of a torch checkpoint: it loads without torch, is checked byte
    for byte (a digest over the weights too) and serves every backend.

    \b
    Example:
      seqtool train classify --train corpora/toy/sentiment.tsv \\
        --dev corpora/toy/sentiment.tsv --out toy.pt
      seqtool convert toy.pt          # writes toy.seqtool
    """
    import seqtool

    target = seqtool.convert(checkpoint, out, half)
    print(f"wrote {target}", file=sys.stderr)

