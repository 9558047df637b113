"""Two trainings given the same --out: the second is refused in one line while the first runs,
and the lock goes with the first (however it ends)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from tests.conftest import ROOT, TINY_CLASSIFY, TOY, run_seqtool


def test_a_second_training_on_the_same_out_is_refused(tmp_path):
    data = TOY / "sentiment.tsv"
    out = tmp_path / "model.pt"
    args = ["train", "classify", "--train", data, "--dev", data, *TINY_CLASSIFY, "--out", out]
    first = subprocess.Popen([sys.executable, "-m", "seqtool.cli", *map(str, args),
                              "--epochs", "100000"], cwd=ROOT, stderr=subprocess.PIPE,
                             text=True)
    lock = tmp_path / ".model.pt.lock"
    try:
        deadline = time.monotonic() + 120
        while not lock.exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.1)
        assert lock.exists(), "the first training holds a lock on its --out"
        second = run_seqtool(*args, "--epochs", "1")
        assert second.returncode == 1
        assert "another training is writing this file now" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1 and str(out) in second.stderr
    finally:
        first.send_signal(signal.SIGINT)  # stops at the next step, saving its checkpoint
        first.communicate(timeout=120)
    assert first.returncode == 130
    assert not lock.exists()
    third = run_seqtool(*args, "--epochs", "1")  # the lock went with the first run
    assert third.returncode == 0, third.stderr
