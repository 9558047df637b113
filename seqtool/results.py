"""What the public API answers: one dataclass per kind of result.

Each field is a key of the command line's `--format jsonl` record for the same input, in the
same order, so `to_record()` is exactly what `seqtool ... --format jsonl` prints. Light (no
torch): the server and the command line build their output from these alone."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class ClassifyResult:
    label: str | None  # None (and no probabilities) for an empty text
    probability: float | None
    text: str
    probabilities: dict[str, float]

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class GenerateResult:
    label: str
    text: str
    tokens: int  # generated pieces, the prompt not counted
    logprob: float

    def to_record(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Candidate:
    """One of a translation's n best hypotheses."""

    translation: str
    score: float


@dataclass
class AttentionMap:
    """The best hypothesis's attention: a row of source weights per target piece."""

    source_pieces: list[str]
    target_pieces: list[str]
    weights: list[list[float]]  # [target][source]

    def to_record(self) -> dict[str, Any]:
        return {"source": self.source_pieces, "target": self.target_pieces,
                "weights": [[round(w, 4) for w in row] for row in self.weights]}


@dataclass
class TranslateResult:
    source: str
    translation: str
    score: float  # log-probability divided by the length penalty
    n_best: list[Candidate]
    # Only when asked for (`attention=True`); not part of the jsonl record.
    attention: AttentionMap | None = field(default=None, repr=False, compare=False)

    def to_record(self, attention: bool = False) -> dict[str, Any]:
        record = {"source": self.source, "translation": self.translation, "score": self.score,
                  "n_best": [asdict(c) for c in self.n_best]}
        if attention:
            record["attention"] = self.attention.to_record() if self.attention else None
        return record
