"""Self-contained checkpoints: weights, JSON metadata and tokenizer bytes in one file.

A checkpoint is a `torch.save` dictionary that holds only tensors, strings and plain
containers, so it loads with `weights_only=True` (no arbitrary unpickling). It is written to a
temporary file in the same folder and renamed into place, so a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqtool.errors import SeqtoolError

FORMAT = "seqtool-checkpoint"
FORMAT_VERSION = 1


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file normal permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def versions() -> dict[str, str]:
    import sentencepiece
    import torch

    from seqtool import __version__

    return {
        "seqtool": __version__,
        "torch": torch.__version__,
        "sentencepiece": sentencepiece.__version__,
        "python": platform.python_version(),
    }


@dataclass
class Checkpoint:
    """Everything needed to rebuild a trained model, and optionally to resume its training."""

    task: str  # "classify" | "generate" | "translate"
    model_config: dict[str, Any]
    weights: dict[str, Any]  # name -> tensor
    tokenizers: dict[str, bytes]  # "src" (and "tgt" for separate vocabularies)
    labels: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # history, metrics, seed, command...
    train_state: dict[str, Any] | None = None  # optimizer, scheduler, rng, position

    def save(self, path: str | Path, half: bool = False) -> None:
        import io

        import torch

        weights = {
            k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
            for k, v in self.weights.items()
        }
        meta = dict(self.meta)
        meta.setdefault("versions", versions())
        meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        payload = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "model_config": json.dumps(self.model_config),
            "labels": json.dumps(self.labels),
            "meta": json.dumps(meta),
            "weights": weights,
            "tokenizers": {
                k: torch.frombuffer(bytearray(v), dtype=torch.uint8)
                for k, v in self.tokenizers.items()
            },
        }
        if self.train_state is not None:
            payload["train_state"] = self.train_state
        buffer = io.BytesIO()
        torch.save(payload, buffer)
        atomic_write_bytes(Path(path), buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint:
        import pickle
        import zipfile

        import torch

        path = Path(path)
        if not path.is_file():
            raise SeqtoolError("no such checkpoint file", str(path))
        try:
            payload = torch.load(path, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError):
            raise SeqtoolError(
                "not a seqtool checkpoint (unreadable or unsafe)", str(path)
            ) from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise SeqtoolError("not a seqtool checkpoint", str(path))
        if payload.get("format_version", 0) > FORMAT_VERSION:
            raise SeqtoolError("checkpoint written by a newer seqtool; please upgrade", str(path))
        weights = {
            k: (v.float() if v.dtype == torch.float16 else v) for k, v in payload["weights"].items()
        }
        return cls(
            task=payload["task"],
            model_config=json.loads(payload["model_config"]),
            weights=weights,
            tokenizers={k: v.numpy().tobytes() for k, v in payload["tokenizers"].items()},
            labels=json.loads(payload["labels"]),
            meta=json.loads(payload["meta"]),
            train_state=payload.get("train_state"),
        )
