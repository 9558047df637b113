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


def test_a_second_inference_run_on_the_same_out_is_refused(tmp_path, toy_classifier):
    """Two runs given the same --out shared `.OUT.part0` (both failed, or one wrote the
    other's answers): the second is refused in one line, also through a link, and the
    first ends with its own answers."""
    out = tmp_path / "out.tsv"
    link = tmp_path / "link.tsv"
    link.symlink_to(out)
    first = subprocess.Popen([sys.executable, "-m", "seqtool.cli", "classify", "-m",
                              str(toy_classifier), "--out", str(out)], cwd=ROOT,
                             stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lock = tmp_path / ".out.tsv.lock"
    try:
        first.stdin.write("I love my cat.\n")
        first.stdin.flush()  # the input stays open: the first run goes on
        deadline = time.monotonic() + 180
        while not lock.exists() and time.monotonic() < deadline and first.poll() is None:
            time.sleep(0.1)
        assert lock.exists(), "the first run holds a lock on its --out"
        for given in (out, link):
            second = run_seqtool("classify", "-m", toy_classifier, "It rains.", "--out", given)
            assert second.returncode == 1
            assert "another run is writing this file now" in second.stderr
            assert len(second.stderr.strip().splitlines()) == 1, second.stderr
        first.stdin.write("It rains.\n")
    finally:
        _, stderr = first.communicate(timeout=180)
    assert first.returncode == 0, stderr
    assert [x.split("  ")[-1] for x in out.read_text().splitlines()] == \
        ["I love my cat.", "It rains."]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.tsv", "out.tsv"]
