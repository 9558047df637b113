"""Answers written to a file, by one process or by every process of a torchrun launch.

Under torchrun the input's chunks (whole batches, as one process reads them) are dealt out
round-robin: rank r answers chunks r, r + W, r + 2W, ... into a part file of its own. When all
ranks are done, rank 0 interleaves the parts back into input order and writes OUT through a
temp file and a rename, so OUT is byte for byte what one process writes, and a run in which
any rank failed leaves no OUT at all (nor part files): every rank ends with the same one-line
error. One process takes the same path with a single part.

Rank 0 holds a lock on OUT from before any part is written until OUT is in place, so a second
run given the same OUT is refused in one line instead of sharing the first's part files. A
rank that dies (kill -9, out of memory) cannot clean up after itself: the ranks that live on
remove every part of the run, and a later run removes what a killed launch left.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from seqtool.errors import SeqtoolError

Answer = Callable[[Sequence[str]], list[Any]]  # a chunk of input lines -> its records


class Stopped(Exception):
    """SIGTERM (torchrun stops the other ranks when one dies) while answering."""


@contextlib.contextmanager
def _stopped_by_sigterm() -> Iterator[None]:
    """SIGTERM raises `Stopped` here, so the parts are removed and the run ends in one line;
    Python's default would end the process at once, leaving them."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(_signum: int, _frame: Any) -> None:
        raise Stopped()

    before = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


def answer_to_file(chunks: Iterable[Sequence[str]], answer: Answer, out: str | Path,
                   write: Callable[[Iterator[Any], Path], None]) -> int:
    """Answer this rank's share of `chunks` and, on rank 0, `write` every record in input
    order to `out` (given an iterator of records and the temp path to write). Returns the
    number of records this rank answered."""
    from seqtool.device import distributed

    rank, world = distributed()
    with contextlib.ExitStack() as held, _stopped_by_sigterm():
        try:
            failure, parts = None, None
            try:
                if rank == 0:
                    parts = _begin(Path(out), world, held)
            except SeqtoolError as e:
                failure = str(e)
            failure, parts = _shared_start(failure, parts, rank, world)
            if failure is not None:
                raise SeqtoolError(failure)
            return _answer_and_merge(chunks, answer, Path(out), Path(parts), rank, world,
                                     write)
        except Stopped:
            raise SeqtoolError("stopped by SIGTERM (under torchrun: another process failed); "
                               "nothing written", str(out)) from None
        finally:
            if world > 1:  # left to exit, gloo's threads may abort the process
                import torch.distributed as dist

                with contextlib.suppress(Exception):
                    dist.destroy_process_group()


def _begin(out: Path, world: int, held: contextlib.ExitStack) -> str:
    """Rank 0, before any part is written: check OUT, lock it for this run, remove parts a
    killed run left. Returns the prefix of this run's part files."""
    from seqtool.checkpoint import (
        check_writable,
        output_lock,
        output_target,
        remove_stale_temp_files,
    )

    check_writable(out, special_ok=True)
    target, special = output_target(out)
    if special:  # /dev/stdout: no folder to lock in; parts of their own in the temp folder
        import secrets

        return str(Path(tempfile.gettempdir()) / f".seqtool-{secrets.token_hex(6)}")
    held.enter_context(output_lock(out, "run"))
    remove_stale_temp_files(target)
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.part*"):
        with contextlib.suppress(OSError):
            if leftover.is_file():
                leftover.unlink()
    return str(target.with_name(f".{target.name}"))


def _shared_start(failure: str | None, parts: str | None, rank: int, world: int
                  ) -> tuple[str | None, str | None]:
    """Every rank learns rank 0's start: a failure, or where the parts go."""
    if world == 1:
        return failure, parts
    import torch.distributed as dist

    shared: list[Any] = [(failure, parts)]
    try:
        dist.broadcast_object_list(shared, src=0)
    except RuntimeError:
        return _lost_peer(), None
    return shared[0]


def _lost_peer() -> str:
    return "another process of this torchrun launch ended without answering; nothing written"


def _answer_and_merge(chunks: Iterable[Sequence[str]], answer: Answer, out: Path, parts: Path,
                      rank: int, world: int, write: Callable[[Iterator[Any], Path], None]
                      ) -> int:
    def part(r: int) -> Path:
        return Path(f"{parts}.part{r}")

    failure, count, done = None, 0, False
    try:
        try:
            with open(part(rank), "w", encoding="utf-8") as f:
                for index, chunk in enumerate(chunks):
                    if index % world == rank:
                        records = answer(chunk)
                        count += len(records)
                        f.write(json.dumps(records, ensure_ascii=False) + "\n")
        except SeqtoolError as e:
            failure = str(e)
        except OSError as e:
            failure = f"{e.filename or part(rank)}: {e.strerror or e}"
        failure = _first_failure(failure, rank, world)
        if failure is None:
            merge_failure = None
            try:
                if rank == 0:
                    _merge(out, [part(r) for r in range(world)], write)
            except SeqtoolError as e:
                merge_failure = str(e)
            except OSError as e:
                merge_failure = f"{out}: {e.strerror or e}"
            failure = _first_failure(merge_failure, rank, world)  # also waits for the merge
        done = failure is None
    finally:
        # Each rank's own part; after a failure (or SIGTERM), every part of the run, since a
        # rank that was killed left its own.
        for r in [rank] if done and rank else range(world):
            with contextlib.suppress(OSError):
                part(r).unlink(missing_ok=True)
        if not done and rank:
            _remove_orphaned_lock(Path(f"{parts}.lock"))
    if failure is not None:
        raise SeqtoolError(failure)
    return count


def _remove_orphaned_lock(lock: Path) -> None:
    """The lock file of rank 0 (`output_lock`) when rank 0 was killed: the system released the
    lock, its file stays. Removed only while nobody holds it."""
    import fcntl

    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.unlink(lock)
    except OSError:
        pass
    finally:
        os.close(fd)


def _first_failure(failure: str | None, rank: int, world: int) -> str | None:
    """Every rank learns whether any failed, and the first failed rank's message."""
    if world == 1:
        return failure
    import torch.distributed as dist

    messages: list[str | None] = [None] * world
    try:
        dist.all_gather_object(messages, failure)
    except RuntimeError:  # a peer died (its connection closed) while we waited for it
        return failure or _lost_peer()
    for other, message in enumerate(messages):
        if message is not None:
            return message if other == rank else f"rank {other} failed: {message}"
    return None


def _merge(out: Path, parts: list[Path], write: Callable[[Iterator[Any], Path], None]) -> None:
    """Chunk i is the next line of part i % world: read them round-robin (memory stays one
    chunk per rank), write to a temp file beside OUT's real file (with OUT's mode), rename
    it over OUT; a special OUT (/dev/stdout) is written directly."""
    from seqtool.checkpoint import replacing

    def records() -> Iterator[Any]:
        files = [open(p, encoding="utf-8") for p in parts]
        try:
            index = 0
            while True:
                line = files[index % len(files)].readline()
                if not line:
                    return
                yield from json.loads(line)
                index += 1
        finally:
            for f in files:
                f.close()

    with replacing(out) as tmp:
        write(records(), tmp)
