"""Nothing lost, nothing silent: a short or failed write to stdout ends in a one-line error
and exit 1, and what was written before is intact (a prefix of the full output)."""

from __future__ import annotations

import resource
import subprocess
import sys

import pytest

from tests.conftest import ROOT

LIMIT = 8192  # bytes a file may grow to: past it, write() fails with EFBIG after a short write
SEQTOOL = [sys.executable, "-m", "seqtool.cli"]


def limited_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def run_into_file(args, path, limit=True, input=None):
    with open(path, "wb") as out:
        return subprocess.run([*SEQTOOL, *map(str, args)], stdout=out, stderr=subprocess.PIPE,
                              text=True, input=input, cwd=ROOT, timeout=300,
                              preexec_fn=limited_file_size if limit else None)


def commands(toy_classifier, toy_generator, toy_translator):
    lines = "".join(f"I love my cat number {i}.\n" for i in range(400))
    return {
        "classify": (["classify", "-m", toy_classifier, "--format", "jsonl"], lines),
        "embed": (["embed", "-m", toy_classifier], lines),
        "translate": (["translate", "-m", toy_translator, "--beam", "1", "--format", "jsonl"],
                      lines),
        "generate": (["generate", "-m", toy_generator, "--label", "positive", "-n", "300",
                      "--format", "jsonl"], None),
        "generate json": (["generate", "-m", toy_generator, "--label", "positive", "-n", "300",
                           "--format", "json"], None),
    }


@pytest.mark.parametrize("name", ["classify", "embed", "translate", "generate",
                                  "generate json"])
def test_a_full_disk_is_an_error_and_keeps_what_was_written(
        name, toy_classifier, toy_generator, toy_translator, tmp_path):
    args, lines = commands(toy_classifier, toy_generator, toy_translator)[name]
    full = run_into_file(args, tmp_path / "full.out", limit=False, input=lines)
    assert full.returncode == 0, full.stderr
    expected = (tmp_path / "full.out").read_bytes()
    assert len(expected) > 2 * LIMIT  # the output does not fit
    cut = run_into_file(args, tmp_path / "cut.out", input=lines)
    assert cut.returncode == 1, cut.stderr
    assert cut.stderr.strip().count("\n") == 0 and "Traceback" not in cut.stderr
    assert "<stdout>" in cut.stderr and "too large" in cut.stderr.lower()
    written = (tmp_path / "cut.out").read_bytes()
    assert len(written) == LIMIT and expected.startswith(written)
