"""Benchmark scripts: results go to the folder the user names (benchmarks/out/ by default),
the tracked benchmarks/results/ only with --record; progress lines go to stderr."""

from __future__ import annotations

import argparse
import subprocess
import sys

import pytest
from conftest import ROOT

BENCHMARKS = ROOT / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("bench_*.py"))


@pytest.fixture
def common(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import common

    yield common
    common._output = common.OUT


def parsed(common, *args: str):
    parser = argparse.ArgumentParser()
    common.output_options(parser)
    args = parser.parse_args(list(args))
    common.use_output(args)
    return args


def test_results_go_to_the_named_folder_and_never_to_the_tracked_one(common, tmp_path,
                                                                     monkeypatch, capsys):
    monkeypatch.setattr(common, "machine", lambda: {"date": "d", "cpu": "c", "cores": 1,
                                                    "torch_threads": 1, "python": "3",
                                                    "torch": "t"})
    tracked = {p: p.stat().st_mtime_ns for p in common.RESULTS.iterdir()}
    parsed(common, "--results", str(tmp_path / "mine"))
    common.record("probe", {"x": 1}, "| a |")
    assert (tmp_path / "mine" / "probe.json").is_file()
    assert (tmp_path / "mine" / "probe.md").read_text().endswith("| a |\n")
    assert {p: p.stat().st_mtime_ns for p in common.RESULTS.iterdir()} == tracked
    captured = capsys.readouterr()
    assert "| a |" in captured.out and "wrote" in captured.err and "--record" in captured.err


def test_the_default_folder_is_untracked_and_record_means_the_tracked_one(common):
    assert parsed(common).results == common.OUT
    assert common.output_folder() == common.OUT
    ignored = subprocess.run(["git", "check-ignore", "-q", str(common.OUT / "x.json")],
                             cwd=ROOT)
    assert ignored.returncode == 0, "benchmarks/out/ must be in .gitignore"
    parsed(common, "--record")
    assert common.output_folder() == common.RESULTS


def test_progress_is_a_timed_line_on_stderr(common, capsys):
    common.progress("step 1 of 3")
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.rstrip().endswith("] step 1 of 3")


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_takes_results_and_record(script):
    done = subprocess.run([sys.executable, str(BENCHMARKS / script), "--help"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "--results DIR" in done.stdout and "--record" in done.stdout
