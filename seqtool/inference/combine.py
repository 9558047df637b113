"""Several trained classifiers as one checkpoint (`seqtool ensemble`).

`--ensemble N` trains N GRUs together on one tokenizer. Classifiers trained apart, on
different tokenizers and from different starts (word vectors, a language model, scratch),
disagree more, and their average gains more. The combined checkpoint keeps each part's
configuration, weights and tokenizer; `models.ClassifierCombination` runs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seqtool.checkpoint import Checkpoint, check_writable, refuse_overwriting_input
from seqtool.errors import SeqtoolError

# What each part's own record keeps in the combined checkpoint's meta.
PART_META = ("command", "seed", "best_accuracy")


def combine_classifiers(paths: Sequence[str | Path], out: str | Path, command: str,
                        half: bool = False) -> Checkpoint:
    """Write the classifiers at `paths` (each may itself be a combination) to `out` as one
    classifier predicting their mean class distribution, each weighted by its GRUs."""
    from seqtool.config import CombinedClassifierConfig
    from seqtool.inference.predict import load, part_tokenizer_key
    from seqtool.nn.ensemble import ClassifierCombination

    if len(paths) < 2:
        raise SeqtoolError("give two or more classifier checkpoints to combine")
    refuse_overwriting_input(out, list(paths))
    check_writable(Path(out))
    configs: list[dict[str, Any]] = []
    states: list[dict[str, Any]] = []
    tokenizers: list[bytes] = []
    records: list[dict[str, Any]] = []
    labels: list[str] | None = None
    for path in paths:
        loaded = load(path, "classify", backend="torch")  # combined as torch modules
        ckpt = loaded.checkpoint
        if labels is None:
            labels = ckpt.labels
        elif ckpt.labels != labels:
            raise SeqtoolError(f"labels {ckpt.labels} differ from {labels} of {paths[0]}",
                               str(path))
        model = loaded.model
        parts = model.parts if isinstance(model, ClassifierCombination) else [model]
        for index, part in enumerate(parts):
            configs.append(part.config.to_dict())
            states.append(part.state_dict())
            tokenizers.append(ckpt.tokenizers[part_tokenizer_key(index)])
        own = ckpt.meta.get("parts") if isinstance(model, ClassifierCombination) else None
        records.extend(own if isinstance(own, list) and len(own) == len(parts) else
                       [{"from": str(path), "members": len(p.members),
                         **{k: ckpt.meta[k] for k in PART_META if k in ckpt.meta}}
                        for p in parts])
    assert labels is not None
    combined = ClassifierCombination(CombinedClassifierConfig(parts=configs))
    for part, state in zip(combined.parts, states, strict=True):
        part.load_state_dict(state)
    checkpoint = Checkpoint(
        task="classify",
        model_config=combined.config.to_dict(),
        weights=combined.state_dict(),
        tokenizers={part_tokenizer_key(i): t for i, t in enumerate(tokenizers)},
        labels=labels,
        meta={"command": command, "parts": records},
    )
    checkpoint.save(out, half=half)
    return checkpoint
