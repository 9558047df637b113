"""A torchrun launch that loses a process (kill -9, out of memory): the processes that live on
remove every part file and say so in one seqtool line (they left `.OUT.part0/1` behind, and
only torchrun's traceback). Each case runs one 2-process launch: about 20 s on an idle
2-core machine, bounded by its timeouts."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT


def holders(path: Path) -> list[int]:
    """The processes that have `path` open."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if any(os.readlink(fd) == str(path) for fd in (entry / "fd").iterdir()):
                found.append(int(entry.name))
        except OSError:  # gone, or not ours to read
            continue
    return found


@pytest.mark.parametrize("killed", [0, 1])
def test_a_killed_rank_leaves_no_part_files_and_one_line(killed, tmp_path, toy_classifier):
    data = tmp_path / "input.txt"
    data.write_text("I love my cat and the dog sees it rain.\n" * 150_000)
    out = tmp_path / "out.tsv"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launch = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "--module", "seqtool.cli", "classify", "-m", str(toy_classifier), "-i", str(data),
         "--out", str(out)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    part = tmp_path / f".out.tsv.part{killed}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and launch.poll() is None and not (
                part.exists() and part.stat().st_size > 0):
            time.sleep(0.05)
        pids = holders(part)
        assert len(pids) == 1, f"rank {killed} is writing its part when it is killed"
        os.kill(pids[0], signal.SIGKILL)
        _, stderr = launch.communicate(timeout=120)
    finally:
        if launch.poll() is None:
            launch.kill()
            launch.communicate()
    assert launch.returncode != 0
    errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1 and str(out) in errors[0], stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["input.txt"]  # no OUT, part, lock
