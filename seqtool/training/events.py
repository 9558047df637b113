"""TensorBoard event files of a training run (`--tensorboard DIR`), as Joey NMT, OpenNMT-py
and fairseq write them: the loss of every step, and at each dev evaluation the record the
checkpoint's history keeps (train loss, learning rate, speed, dev metrics).

The `tensorboard` package is optional: a run asked to write events checks for it before any
work (`require_tensorboard`), so a missing package costs one line, not a training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seqtool.errors import SeqtoolError

INSTALL = "pip install tensorboard (or pip install 'seqtool[tensorboard]')"


def require_tensorboard(directory: str | Path) -> None:
    """Refuse at once, in one line, when events cannot be written to `directory`."""
    import importlib.util

    if importlib.util.find_spec("tensorboard") is None:
        raise SeqtoolError(f"--tensorboard needs the tensorboard package: {INSTALL}")
    if Path(directory).exists() and not Path(directory).is_dir():
        raise SeqtoolError("--tensorboard: not a folder", str(directory))


class EventWriter:
    """Writes a run's scalars under `directory` (one events file per run)."""

    def __init__(self, directory: str | Path):
        from torch.utils.tensorboard import SummaryWriter

        try:
            self.writer = SummaryWriter(log_dir=str(directory))
        except OSError as e:
            raise SeqtoolError(f"--tensorboard: {e.strerror or e}", str(directory)) from None

    def batch(self, step: int, loss: float) -> None:
        self.writer.add_scalar("train/batch_loss", loss, step)

    def evaluation(self, record: dict[str, Any]) -> None:
        """One history record: train_loss, lr and tokens_per_s under train/, the rest dev/."""
        step = int(record["step"])
        for key, value in record.items():
            if key in ("step", "epoch") or not isinstance(value, (int, float)):
                continue
            group = "train" if key in ("train_loss", "lr", "tokens_per_s") else "dev"
            self.writer.add_scalar(f"{group}/{key}", value, step)
        self.writer.add_scalar("train/epoch", record.get("epoch", 0), step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
