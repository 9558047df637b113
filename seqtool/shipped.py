"""The models shipped in checkpoints/, by task and name; light enough for `--help`."""

from __future__ import annotations

import os
from pathlib import Path

# `-m NAME` picks one of these; the first of each task is its default.
SHIPPED_MODELS = {
    "classify": {"sentiment": "sentiment-gru.pt", "brown-genre": "brown-genre-gru.pt"},
    "generate": {"sentiment": "sentiment-lstm-generator.pt",
                 "brown-genre": "brown-genre-lstm-generator.pt"},
    "translate": {"bible-fr-en": "bible-fr-en-gru-attention.pt"},
}
DEFAULT_MODELS = {task: next(iter(models.values())) for task, models in SHIPPED_MODELS.items()}


# An installed package (a wheel, `pip install .`) carries the default models here, inside the
# package (setup.py copies them from checkpoints/ at build time); the repository holds no copy.
BUNDLED_FOLDER = "models"


def checkpoints_folder() -> Path:
    """$SEQTOOL_CHECKPOINTS; else the repository's checkpoints/ (a clone, an editable install);
    else the default models bundled with the installed package."""
    folder = os.environ.get("SEQTOOL_CHECKPOINTS")
    if folder:
        return Path(folder)
    package = Path(__file__).resolve().parent
    repository = package.parent / "checkpoints"
    bundled = package / BUNDLED_FOLDER
    return repository if repository.is_dir() or not bundled.is_dir() else bundled

