"""Answers written to a file, by one process or by every process of a torchrun launch.

Under torchrun the input's chunks (whole batches, as one process reads them) are dealt out
round-robin: rank r answers chunks r, r + W, r + 2W, ... into a part file of its own. When all
ranks are done, rank 0 interleaves the parts back into input order and writes OUT through a
temp file and a rename, so OUT is byte for byte what one process writes, and a run in which
any rank failed leaves no OUT at all (nor part files): every rank ends with the same one-line
error. One process takes the same path with a single part.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from seqtool.errors import SeqtoolError

Answer = Callable[[Sequence[str]], list[Any]]  # a chunk of input lines -> its records


def part_path(out: Path, rank: int) -> Path:
    return out.with_name(f".{out.name}.part{rank}")


def answer_to_file(chunks: Iterable[Sequence[str]], answer: Answer, out: str | Path,
                   write: Callable[[Iterator[Any], Path], None]) -> int:
    """Answer this rank's share of `chunks` and, on rank 0, `write` every record in input
    order to `out` (given an iterator of records and the temp path to write). Returns the
    number of records this rank answered."""
    from seqtool.checkpoint import check_writable

    out = Path(out)
    from seqtool.device import distributed

    rank, world = distributed()
    if rank == 0:
        check_writable(out)
    part, failure, count, opened = part_path(out, rank), None, 0, False
    try:
        with open(part, "w", encoding="utf-8") as f:
            opened = True
            for index, chunk in enumerate(chunks):
                if index % world == rank:
                    records = answer(chunk)
                    count += len(records)
                    f.write(json.dumps(records, ensure_ascii=False) + "\n")
    except SeqtoolError as e:
        failure = str(e)
    except OSError as e:
        failure = f"{e.filename or part}: {e.strerror or e}"
    failure = _first_failure(failure, rank, world)
    if failure is None:
        merge_failure = None
        try:
            if rank == 0:
                _merge(out, world, write)
        except SeqtoolError as e:
            merge_failure = str(e)
        except OSError as e:
            merge_failure = f"{out}: {e.strerror or e}"
        failure = _first_failure(merge_failure, rank, world)  # also waits for the merge
    if opened:
        part.unlink(missing_ok=True)
    if world > 1:  # left to exit, gloo's threads may abort the process ("terminate called")
        import torch.distributed as dist

        dist.destroy_process_group()
    if failure is not None:
        raise SeqtoolError(failure)
    return count


def _first_failure(failure: str | None, rank: int, world: int) -> str | None:
    """Every rank learns whether any failed, and the first failed rank's message."""
    if world == 1:
        return failure
    import torch.distributed as dist

    messages: list[str | None] = [None] * world
    dist.all_gather_object(messages, failure)
    for other, message in enumerate(messages):
        if message is not None:
            return message if other == rank else f"rank {other} failed: {message}"
    return None


def _merge(out: Path, world: int, write: Callable[[Iterator[Any], Path], None]) -> None:
    """Chunk i is the next line of rank i % world's part: read them round-robin (memory
    stays one chunk per rank), write to a temp file, rename it to OUT."""
    import tempfile

    def records() -> Iterator[Any]:
        parts = [open(part_path(out, r), encoding="utf-8") for r in range(world)]
        try:
            index = 0
            while True:
                line = parts[index % world].readline()
                if not line:
                    return
                yield from json.loads(line)
                index += 1
        finally:
            for f in parts:
                f.close()

    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    os.close(fd)
    try:
        write(records(), Path(tmp))
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
