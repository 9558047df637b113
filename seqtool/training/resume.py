"""What makes a training run resumable: where its last checkpoint lives, what identifies the
run (options and data digests), stopping cleanly on Ctrl-C or SIGTERM, and the per-step seed.

Randomness: before every step the generators are reseeded from (seed, step, rank). Dropout masks
are then a function of the position in the run alone, so a resumed run, whether it stopped at a
step limit, Ctrl-C, SIGTERM or a crash, continues with exactly the draws the uninterrupted run
makes, on CPU and CUDA alike, with no generator state to save.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from typing import Any

from seqtool.errors import SeqtoolError


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of one training step's random draws (dropout): a function of the run's
    position only, so resuming needs no saved generator state."""
    return (seed * 1_000_003 + step) * 1_009 + rank


def last_path(out: Path) -> Path:
    """Where the resumable last checkpoint of `out` lives: model.pt -> model.last.pt."""
    return out.with_name(out.stem + ".last" + out.suffix)


# Options that may change when a run is resumed: how long it runs, where, how loudly.
RESUMABLE_CHANGES = frozenset({"epochs", "max_steps", "max_minutes", "patience", "device",
                               "quiet", "resume", "out", "tensorboard"})
# Options naming files whose content, not name, belongs to the run.
DATA_FILES = frozenset({"train_path", "dev_path", "train_src", "train_tgt", "dev_src",
                        "dev_tgt", "tokenizer_path", "init", "embeddings"})


def file_digest(path: str | None) -> str | None:
    """SHA-256 of a file's bytes (None for no file or stdin)."""
    import hashlib

    if not path or path == "-":
        return None
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        raise SeqtoolError(f"cannot read: {e.strerror}", path) from None
    return digest.hexdigest()


def run_fingerprint(options: dict[str, Any]) -> dict[str, Any]:
    """What identifies a training run: its options and a hash of each data file."""
    return {
        "options": {k: v for k, v in sorted(options.items())
                    if k not in RESUMABLE_CHANGES and k not in DATA_FILES},
        "data": {k: [file_digest(f) for f in v] if isinstance(v, (list, tuple))
                 else file_digest(v) for k, v in sorted(options.items()) if k in DATA_FILES},
    }


def check_same_run(saved: dict[str, Any] | None, now: dict[str, Any], path: Path) -> None:
    """Refuse to resume a run with other data or options than the run that was saved."""
    if not saved:
        raise SeqtoolError("cannot resume: this checkpoint does not record its run's data "
                           "and options (written by an older seqtool)", str(path))
    for key in sorted(set(saved["data"]) | set(now["data"])):
        if saved["data"].get(key) != now["data"].get(key):
            option = "--" + key.removesuffix("_path").replace("_", "-")
            raise SeqtoolError(f"cannot resume: the {option} data differ from the run being "
                               f"resumed (start a new run, or restore the file)", str(path))
    for key in sorted(set(saved["options"]) | set(now["options"])):
        was, now_value = saved["options"].get(key), now["options"].get(key)
        if was != now_value:
            option = {"max_length": "max_train_length"}.get(key, key)  # its older name
            raise SeqtoolError(f"cannot resume: --{option.replace('_', '-')} was {was!r} in the "
                               f"run being resumed, now {now_value!r}", str(path))


def damaged_state(error: Exception, path: Path) -> SeqtoolError:
    """The one line for a training state that does not load (an edited or damaged OUT.last.pt):
    what is wrong with it, and what to do."""
    if isinstance(error, KeyError):
        what = f"its {error.args[0]!r} is missing" if error.args else "a part is missing"
    else:
        what = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return SeqtoolError(f"cannot resume: damaged training state ({what}); start a new run "
                        "without --resume, or resume from an intact copy", str(path))


class StopRequest:
    """Ctrl-C and SIGTERM ask training to stop at the next step boundary, where the state is
    whole, so the saved last checkpoint resumes exactly. A second Ctrl-C aborts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading_main():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def handle(self, sig: int, _frame: object) -> None:
        if self.signal is not None and sig == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now, the last saved state stays
        self.signal = sig
        print(f"{signal.Signals(sig).name}: stopping after this step "
              f"(Ctrl-C again to abort at once)", file=sys.stderr, flush=True)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()



class TrainingInterrupted(SeqtoolError):
    """Training stopped on Ctrl-C or SIGTERM after saving a resumable checkpoint; the exit
    status is the shell's for that signal (130, 143)."""

    def __init__(self, message: str, sig: int):
        super().__init__(message)
        self.exit_code = 128 + sig
