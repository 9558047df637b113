"""The models shipped in checkpoints/, by task and name; light enough for `--help`."""

from __future__ import annotations

import os
from pathlib import Path

# `-m NAME` picks one of these; the first of each task is its default.
SHIPPED_MODELS = {
    "classify": {"sentiment": "sentiment-gru.seqtool", "brown-genre": "brown-genre-gru.seqtool"},
    "generate": {"sentiment": "sentiment-lstm-generator.seqtool",
                 "brown-genre": "brown-genre-lstm-generator.seqtool"},
    "translate": {"bible-fr-en": "bible-fr-en-gru-attention.seqtool"},
}
DEFAULT_MODELS = {task: next(iter(models.values())) for task, models in SHIPPED_MODELS.items()}


def checkpoints_folder() -> Path:
    """$SEQTOOL_CHECKPOINTS, or the repository's checkpoints/."""
    folder = os.environ.get("SEQTOOL_CHECKPOINTS")
    return Path(folder) if folder else Path(__file__).resolve().parent.parent / "checkpoints"

