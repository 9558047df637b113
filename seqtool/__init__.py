"""seqtool: learn from text sequences with recurrent networks.

    import seqtool
    classifier = seqtool.load("classify")        # the shipped default, a shipped name or a path
    classifier.classify(["A gorgeous film."])     # [ClassifyResult(label='positive', ...)]
    seqtool.load("generate").generate("positive", n=3, seed=1)
    seqtool.load("translate").translate(["Dieu est amour."], beam=5)
    seqtool.train("classify", train="train.tsv", dev="dev.tsv", out="model.pt")

Importing seqtool is light: torch comes in when a model is loaded or trained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from seqtool.version import __version__ as __version__  # re-exported

__all__ = ["load", "train", "evaluate", "distill", "ClassifyResult", "GenerateResult",
           "TranslateResult", "Candidate", "AttentionMap", "SeqtoolError"]

if TYPE_CHECKING:
    from seqtool.api import evaluate, load, train
    from seqtool.api_distill import distill
    from seqtool.errors import SeqtoolError
    from seqtool.results import (
        AttentionMap,
        Candidate,
        ClassifyResult,
        GenerateResult,
        TranslateResult,
    )

_HOMES = {**{name: "seqtool.api" for name in ("load", "train", "evaluate")},
          "distill": "seqtool.api_distill", "SeqtoolError": "seqtool.errors",
          **{name: "seqtool.results" for name in __all__[4:9]}}


def __getattr__(name: str) -> Any:
    """The API's names, imported on first use (PEP 562), so `import seqtool` stays light."""
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'seqtool' has no attribute {name!r}")
