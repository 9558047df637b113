"""Inference across processes: under torchrun, `--out FILE` is byte for byte what one process
writes, in input order; a failed rank fails the run in one line and leaves no output file."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import ROOT, run_seqtool


def torchrun(*args, nproc: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc_per_node={nproc}", "--module", "seqtool.cli", *map(str, args)],
        capture_output=True, text=True, timeout=600, env=env, cwd=ROOT)


def lines_file(tmp_path, count: int):
    """Lines of varied length, more than one chunk (512 lines) per process."""
    words = "I love my cat and the dog sees it rain".split()
    path = tmp_path / "input.txt"
    path.write_text("".join(" ".join(words[: 1 + i % len(words)]) + ("\n" if i % 97 else "\n\n")
                            for i in range(count)))
    return path


COMMANDS = {
    "classify": lambda m: ["classify", "-m", m["classify"], "--format", "jsonl"],
    "classify json": lambda m: ["classify", "-m", m["classify"], "--format", "json"],
    "translate": lambda m: ["translate", "-m", m["translate"], "--beam", "2", "--format", "tsv"],
    "generate": lambda m: ["generate", "-m", m["generate"], "--label", "positive", "-n", "2"],
    "embed": lambda m: ["embed", "-m", m["classify"]],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_two_processes_write_what_one_process_writes(name, tmp_path, toy_classifier,
                                                     toy_translator, toy_generator):
    models = {"classify": toy_classifier, "translate": toy_translator,
              "generate": toy_generator}
    count = 150 if name == "generate" else 1300  # generate reads 64 prompts a chunk
    data = lines_file(tmp_path, count)
    suffix = ".npy" if name == "embed" else ".txt"
    single, double = tmp_path / f"single{suffix}", tmp_path / f"double{suffix}"
    args = [*COMMANDS[name](models), "-i", data]
    one = run_seqtool(*args, "--out", single)
    assert one.returncode == 0, one.stderr
    two = torchrun(*args, "--out", double)
    assert two.returncode == 0, two.stderr[-3000:]
    assert double.read_bytes() == single.read_bytes()
    if name == "embed":
        assert np.load(double).shape[0] == len(data.read_text().splitlines())
    else:
        stdout = run_seqtool(*args).stdout  # --out holds what stdout would
        assert single.read_text() == stdout
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_a_failed_rank_fails_the_run_and_leaves_no_output(tmp_path, toy_classifier):
    data = lines_file(tmp_path, 1300)
    out = tmp_path / "out.txt"
    (tmp_path / ".out.txt.part1").mkdir()  # rank 1 cannot write its part
    result = torchrun("classify", "-m", toy_classifier, "-i", data, "--out", out)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert errors and all("rank 1 failed" in line or ".out.txt.part1" in line
                          for line in errors), result.stderr[-3000:]
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.txt.part1", "input.txt"]


def test_one_process_writes_out_atomically(tmp_path, toy_classifier):
    """A run that stops midway (bad UTF-8 on a later line) leaves an existing OUT as it was."""
    out = tmp_path / "out.txt"
    out.write_text("earlier results\n")
    data = tmp_path / "input.txt"
    data.write_bytes(b"I love my cat.\n" * 600 + b"\xff bad\n")
    result = run_seqtool("classify", "-m", toy_classifier, "-i", data, "--out", out)
    assert result.returncode == 1 and "not valid UTF-8" in result.stderr
    assert out.read_text() == "earlier results\n"


def test_stdin_is_refused_under_torchrun(tmp_path, toy_classifier):
    result = torchrun("classify", "-m", toy_classifier, "--out", tmp_path / "out.txt")
    assert result.returncode != 0 and "-i FILE" in result.stderr
