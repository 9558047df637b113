"""Self-contained checkpoints: weights, JSON metadata and tokenizer bytes in one file.

Two forms, told apart by their first bytes:
- the model file (`modelfile.py`, safetensors layout, `.seqtool`): what a trained model is
  shipped and used as; it loads without torch and without unpickling;
- a `torch.save` dictionary (`.pt`) holding only tensors, strings and plain containers, loaded
  with `weights_only=True` (no arbitrary unpickling): training's resumable state, and models
  written by earlier versions.
Both carry a digest over every byte that defines the model, weights included, checked on load.
Files are written to a temporary file in the same folder and renamed into place, so a crash
never leaves half a file.
"""

from __future__ import annotations

import contextlib
import glob
import json
import math
import os
import platform
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seqtool.errors import SeqtoolError, os_error, warn_once

FORMAT = "seqtool-checkpoint"
FORMAT_VERSION = 2  # 2: the digest covers the weights too


def output_target(path: str | Path) -> tuple[Path, bool]:
    """Where writing `path` lands, and whether that is a special file.

    A symbolic link is followed to the real file, so that replacing the output replaces the
    file behind the link, never the link itself; a special file (a device such as /dev/stdout,
    a pipe, a terminal) is written in place, since a rename would put a plain file where it
    was."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode  # follows links, /proc/self/fd/N included
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        return path, True
    return Path(os.path.realpath(path)), False


def _temp_beside(target: Path) -> tuple[int, Path]:
    """A new hidden temp file in `target`'s folder, opened for writing, with the mode the
    output should have: that of the file it replaces, else 0666 less the umask (as `>` gives),
    never mkstemp's 0600."""
    import secrets

    while True:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies
            break
        except FileExistsError:
            continue
    try:
        old = os.stat(target)
    except OSError:
        return fd, tmp
    with contextlib.suppress(OSError):  # keep the replaced file's mode (and owner, for root)
        if (old.st_uid, old.st_gid) != (os.geteuid(), os.getegid()):
            os.fchown(fd, old.st_uid, old.st_gid)
        os.fchmod(fd, stat.S_IMODE(old.st_mode))
    return fd, tmp


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
    """Yield the path to write the new content of output `path` to: a temp file beside the
    real file (through links), renamed over it when the block ends without error and removed
    when it fails, so the old file stays intact; a special file (/dev/stdout) itself."""
    target, special = output_target(path)
    if special:
        yield Path(path)
        return
    try:
        fd, tmp = _temp_beside(target)
    except OSError as e:
        raise os_error(e, path) from None
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, target)
    finally:
        if os.path.lexists(tmp):
            os.unlink(tmp)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temp file and a rename (`replacing`)."""
    path = Path(path)
    check_writable(path, special_ok=True)
    try:
        with replacing(path) as tmp, open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            if not output_target(path)[1]:
                os.fsync(f.fileno())
    except OSError as e:  # disk full, quota, I/O error: the old file stays intact
        raise os_error(e, path) from None


def remove_stale_temp_files(path: Path) -> None:
    """Remove `.{name}.*.tmp` leftovers of atomic writes of `path` and of its sibling
    `{stem}.last{suffix}` (the resumable checkpoint), beside the real files behind any links,
    where the writes put them.

    A kill (SIGKILL, power loss) during `atomic_write_bytes` leaves its temp file behind; the
    next run that writes the same path cleans up after it.
    """
    path = Path(path)
    last = path.with_name(path.stem + ".last" + path.suffix)  # = training.last_path(path)
    for written in (path, last):
        target, special = output_target(written)
        if special or not target.parent.is_dir():
            continue
        for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
            try:
                leftover.unlink()
            except FileNotFoundError:
                pass
            except OSError as e:
                raise os_error(e, leftover, "cannot remove stale temp file") from None


def check_writable(path: Path, special_ok: bool = False) -> None:
    """Raise SeqtoolError naming `path` unless a file can be written there.

    Writes and removes a temp file in the real file's folder (through links), so a read-only
    folder or a parent that is a file is found before hours of training, not after. A missing
    folder is an error (a typo must not make /nonexist/x.tsv). A special file (/dev/stdout, a
    pipe) is refused unless `special_ok`: results may go there, checkpoints may not."""
    path = Path(path)
    if path.is_dir():
        raise SeqtoolError("is a directory, not a file", str(path))
    target, special = output_target(path)
    if special:
        if not special_ok:  # a checkpoint's siblings (OUT.last.pt, the lock) need a folder
            raise SeqtoolError("not a regular file; give a file path", str(path))
        if not os.access(path, os.W_OK):
            raise SeqtoolError("file is not writable", str(path))
        return
    folder = target.parent
    if not folder.is_dir():
        above = folder
        while not above.exists() and above != above.parent:
            above = above.parent
        if not above.is_dir():
            raise SeqtoolError("cannot create file: a parent path is a file", str(path))
        raise SeqtoolError(f"no such folder: {folder} (create it first)", str(path))
    if target.exists() and not os.access(target, os.W_OK):
        raise SeqtoolError("file is not writable", str(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    except OSError as e:
        raise SeqtoolError(f"cannot write here ({e.strerror})", str(path)) from None
    os.close(fd)
    os.unlink(tmp)


@contextlib.contextmanager
def output_lock(path: Path, what: str = "training") -> Iterator[None]:
    """Hold an exclusive lock on `path` while a run writes it, so that a second run given the
    same output is refused in one line instead of overwriting the first's file in silence.

    The lock is `flock` on a hidden `.NAME.lock` beside the real file (through links, so two
    links to one file share it): the system releases it when the process dies, however it
    dies, so no stale lock ever blocks a later run."""
    import fcntl

    target, special = output_target(path)
    if special:  # /dev/stdout: nothing to replace, no folder to lock in
        yield
        return
    path, lock = Path(path), target.with_name(f".{target.name}.lock")
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise os_error(e, lock, "cannot create lock file") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SeqtoolError(f"another {what} is writing this file now; wait for it to end "
                               "or choose another --out", str(path)) from None
        try:  # the holder before us may have removed the file we locked: lock the new one
            if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        try:
            os.unlink(lock)
        except OSError:
            pass
        os.close(fd)


def refuse_overwriting_input(out: str | Path | None, inputs: list[str | Path | None]) -> None:
    """Raise SeqtoolError when the output file `out` is one of the `inputs` (same file, also
    through another path or a link): writing it would destroy the data being read."""
    if not out:
        return
    out_path = Path(out)
    for given in inputs:
        if not given or given == "-":
            continue
        same = Path(given).resolve() == out_path.resolve()
        if not same and out_path.exists() and Path(given).exists():
            same = os.path.samefile(out_path, given)
        if same:
            raise SeqtoolError(f"refusing to overwrite an input file ({given}); "
                               "choose another --out", str(out))


def content_digest(task: str, model_config: str, labels: str,
                   tokenizers: dict[str, bytes], weights: dict[str, Any] | None = None) -> str:
    """SHA-256 of what defines a trained model in a torch checkpoint: task, configuration (as
    stored, JSON), labels, tokenizers and (format 2) every weight's name, dtype, shape and
    bytes. Stored at save time; a file edited afterwards (a changed pooling, a relabelled
    class, one flipped byte of a weight) no longer matches, and loading it fails."""
    import hashlib

    digest = hashlib.sha256()
    for part in (task, model_config, labels):
        digest.update(part.encode("utf-8") + b"\0")
    for side in sorted(tokenizers):
        digest.update(side.encode("utf-8") + b"\0" + tokenizers[side])
    for name in sorted(weights or {}):
        array = _as_numpy(weights[name])
        digest.update(f"{name}\0{array.dtype.str}\0{list(array.shape)}\0".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _as_numpy(value: Any) -> Any:
    """A weight as a numpy array (torch tensors are converted, numpy arrays kept)."""
    if hasattr(value, "detach"):
        return value.detach().cpu().contiguous().numpy()
    return value


def versions() -> dict[str, str]:
    import sentencepiece
    import torch

    from seqtool.version import __version__

    return {
        "seqtool": __version__,
        "torch": torch.__version__,
        "sentencepiece": sentencepiece.__version__,
        "python": platform.python_version(),
    }


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run torch's operations in this thread on one thread: for passes too small to gain from
    more (each weight of a checkpoint, a handful of texts), where waking the other threads
    costs more than the work, and far more on a busy machine (loading the 12-GRU classifier
    took 3.0 s on 2 threads beside other jobs, 1.1 s on one)."""
    import torch

    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


UNSIGNED = ("loaded without checking its weights: it predates weight digests, so a changed "
            "byte would go unnoticed; `seqtool convert {path}` writes a signed model file")


@dataclass
class Checkpoint:
    """Everything needed to rebuild a trained model, and optionally to resume its training.

    `weights` are torch tensors when read from a torch checkpoint and numpy arrays when read
    from a model file (no torch needed); `torch_weights()` and `numpy_weights()` give either."""

    task: str  # "pretrain" | "classify" | "generate" | "translate"
    model_config: dict[str, Any]
    weights: dict[str, Any]  # name -> tensor or numpy array
    tokenizers: dict[str, bytes]  # "src" (and "tgt" for separate vocabularies)
    labels: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # history, metrics, seed, command...
    train_state: dict[str, Any] | None = None  # optimizer, scheduler, rng, position

    def numpy_weights(self) -> dict[str, Any]:
        return {k: _as_numpy(v) for k, v in self.weights.items()}

    def torch_weights(self) -> dict[str, Any]:
        import torch

        def tensor(v: Any) -> Any:
            if isinstance(v, torch.Tensor):
                return v
            return torch.from_numpy(v if v.flags.writeable else v.copy())  # not the mmap

        return {k: tensor(v) for k, v in self.weights.items()}

    def save(self, path: str | Path, half: bool = False) -> None:
        """Write a model file when `path` ends in `.seqtool`, else a torch checkpoint (the
        only form that holds a training state)."""
        from seqtool import modelfile

        meta = dict(self.meta)
        meta.setdefault("versions", versions())
        meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        if Path(path).suffix == modelfile.SUFFIX and self.train_state is None:
            import numpy as np

            weights = {}
            for k, v in self.numpy_weights().items():
                if half and np.issubdtype(v.dtype, np.floating):
                    v = v.astype(np.float16)
                weights[k] = v
            modelfile.write(path, self.task, self.model_config, self.labels, meta, weights,
                            self.tokenizers, atomic_write_bytes)
            return
        self._save_torch(Path(path), half, meta)

    def _save_torch(self, path: Path, half: bool, meta: dict[str, Any]) -> None:
        import io

        import torch

        weights = {
            k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
            for k, v in self.torch_weights().items()
        }
        config, labels = json.dumps(self.model_config), json.dumps(self.labels)
        payload = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "task": self.task,
            "model_config": config,
            "labels": labels,
            "digest": content_digest(self.task, config, labels, self.tokenizers, weights),
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
        atomic_write_bytes(path, buffer.getvalue())

    @classmethod
    def load(cls, path: str | Path) -> Checkpoint:
        """Read a model file (no torch needed) or a torch checkpoint, checking every byte that
        defines the model; any damage ends in one SeqtoolError naming the file."""
        from seqtool import modelfile

        path = Path(path)
        if not path.is_file():
            raise SeqtoolError("no such checkpoint file", str(path))
        if modelfile.is_model_file(path):
            return cls._from_model_file(modelfile.read(path), str(path))
        try:
            import torch
        except ImportError:
            raise SeqtoolError("a torch checkpoint needs PyTorch to load: pip install "
                               "'seqtool[torch]', or use its model file (seqtool convert)",
                               str(path)) from None
        import pickle
        import zipfile

        try:
            with one_thread():
                payload = torch.load(path, map_location="cpu", weights_only=True)
        except OSError as e:
            raise os_error(e, path, "cannot read") from None
        except (pickle.UnpicklingError, RuntimeError, zipfile.BadZipFile, EOFError, ValueError,
                KeyError, TypeError, AttributeError, IndexError, UnicodeDecodeError):
            raise SeqtoolError(
                "not a seqtool checkpoint (unreadable or unsafe)", str(path)
            ) from None
        if not isinstance(payload, dict) or payload.get("format") != FORMAT:
            raise SeqtoolError("not a seqtool checkpoint", str(path))
        version = payload.get("format_version", 0)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise SeqtoolError("checkpoint written by a newer seqtool; please upgrade", str(path))
        with one_thread():
            return cls._from_payload(payload, str(path))

    @classmethod
    def _from_model_file(cls, found: Any, name: str) -> Checkpoint:
        import numpy as np

        weights = {k: v.astype(np.float32) if v.dtype == np.float16 else v
                   for k, v in found.weights.items()}
        return cls._checked(found.task, found.model_config, found.labels, found.meta,
                            weights, found.tokenizers, None, name)

    @classmethod
    def _from_payload(cls, payload: dict[str, Any], name: str) -> Checkpoint:
        """Check every field's type, so an edited file fails here with one clear line."""
        import torch

        def damaged(what: str) -> SeqtoolError:
            return SeqtoolError(f"damaged checkpoint: {what}", name)

        def json_field(key: str, kind: type) -> Any:
            if key not in payload:
                raise damaged(f"missing {key!r}")
            try:
                value = json.loads(payload[key])
            except (TypeError, ValueError):
                raise damaged(f"{key!r} is not valid JSON") from None
            if not isinstance(value, kind):
                raise damaged(f"{key!r} is not a JSON {kind.__name__}")
            return value

        def tensors(key: str) -> dict[str, Any]:
            value = payload.get(key)
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()):
                raise damaged(f"{key!r} is missing or not a set of named tensors")
            return value

        config = json_field("model_config", dict)
        labels = json_field("labels", list)
        meta = json_field("meta", dict)
        stored_weights = tensors("weights")
        tokenizers = tensors("tokenizers")
        if "src" not in tokenizers or any(
                v.dtype != torch.uint8 or v.dim() != 1 for v in tokenizers.values()):
            raise damaged("'tokenizers' must hold a 'src' byte tensor")
        train_state = payload.get("train_state")
        if train_state is not None and not isinstance(train_state, dict):
            raise damaged("'train_state' is not a dictionary")
        tokenizer_bytes = {k: v.numpy().tobytes() for k, v in tokenizers.items()}
        task = payload.get("task")
        signed = payload.get("format_version") == FORMAT_VERSION
        if "digest" in payload and isinstance(task, str):
            stored = content_digest(task, payload["model_config"], payload["labels"],
                                    tokenizer_bytes, stored_weights if signed else None)
            if payload["digest"] != stored:
                raise damaged("its configuration, labels, tokenizer or weights were edited "
                              "after it was written (digest differs)")
        else:
            signed = False
        if not signed and train_state is None:
            warn_once(f"unsigned:{name}", f"{name}: " + UNSIGNED.format(path=name))
        weights = {k: (v.float() if v.dtype == torch.float16 else v)
                   for k, v in stored_weights.items()}
        return cls._checked(task, config, labels, meta, weights, tokenizer_bytes, train_state,
                            name)

    @classmethod
    def _checked(cls, task: Any, config: dict[str, Any], labels: list[Any],
                 meta: dict[str, Any], weights: dict[str, Any], tokenizers: dict[str, bytes],
                 train_state: dict[str, Any] | None, name: str) -> Checkpoint:
        """The checks both forms share: task, tokenizer, labels, finite weights."""

        def damaged(what: str) -> SeqtoolError:
            return SeqtoolError(f"damaged checkpoint: {what}", name)

        if task not in ("pretrain", "classify", "generate", "translate"):
            raise damaged(f"unknown task {task!r}")
        if "src" not in tokenizers:
            raise damaged("no 'src' tokenizer")
        repeated = sorted({str(x) for x in labels if labels.count(x) > 1})
        if repeated:
            raise damaged(f"label {repeated[0]!r} appears more than once")
        for key, value in weights.items():  # a sum is NaN or infinite iff a value is (and fast)
            array = _as_numpy(value)
            if array.dtype.kind == "f" and not math.isfinite(float(array.sum())):
                raise damaged(f"weight {key!r} holds NaN or infinite values")
        return cls(task=task, model_config=config, weights=weights, tokenizers=tokenizers,
                   labels=[str(x) for x in labels], meta=meta, train_state=train_state)

