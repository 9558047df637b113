"""seqtool: learn from text sequences with recurrent networks.

    import seqtool
    classifier = seqtool.load("classify")        # the shipped default, a shipped name or a path
    classifier.classify("A gorgeous film.")       # ClassifyResult(label='positive', ...)
    classifier.classify(["A gorgeous film."])     # a list in, a list out
    seqtool.load("generate").generate("positive", n=3, seed=1)
    seqtool.load("translate").translate("Dieu est amour.", beam=5).translation
    seqtool.train("classify", train="train.tsv", dev="dev.tsv", out="model.pt")  # loaded
    seqtool.models()                               # the shipped models, by name

Importing seqtool is light: torch comes in when a model is loaded or trained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from seqtool.version import __version__ as __version__  # re-exported

__all__ = ["load", "train", "evaluate", "distill", "models", "convert", "LoadedModel",
           "ClassifyResult", "GenerateResult", "TranslateResult", "Candidate", "AttentionMap",
           "SeqtoolError"]

if TYPE_CHECKING:
    from seqtool.api import LoadedModel, convert, evaluate, load, models, train
    from seqtool.api_distill import distill
    from seqtool.errors import SeqtoolError
    from seqtool.results import (
        AttentionMap,
        Candidate,
        ClassifyResult,
        GenerateResult,
        TranslateResult,
    )

_HOMES = {**dict.fromkeys(("load", "train", "evaluate", "models", "convert", "LoadedModel"),
                          "seqtool.api"),
          "distill": "seqtool.api_distill", "SeqtoolError": "seqtool.errors",
          **dict.fromkeys(("ClassifyResult", "GenerateResult", "TranslateResult", "Candidate",
                           "AttentionMap"), "seqtool.results")}


def __getattr__(name: str) -> Any:
    """The API's names, imported on first use (PEP 562), so `import seqtool` stays light."""
    if name in _HOMES:
        import importlib

        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'seqtool' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The API's names too (they are imported on first use), for dir() and tab completion."""
    return sorted({*__all__, *(name for name in globals() if name.startswith("__"))})
