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


@pytest.fixture
def small_data(common):
    import small_data

    return small_data


def test_small_data_selection_never_reads_test_and_checks_on_lines_the_run_never_saw(
        small_data, tmp_path, monkeypatch):
    """The selection sets: training lines from Brown's train split only, the run's dev and
    the scoring `check` lines from its dev split, disjoint, balanced; the same lines on every
    call, and a learning-curve copy changes the training lines only."""
    dev_split = {text for _, text in small_data.read(small_data.BROWN, "dev")}
    train_split = {text for _, text in small_data.read(small_data.BROWN, "train")}
    opened = []
    read = small_data.read
    monkeypatch.setattr(small_data, "read",
                        lambda data, split: opened.append(split) or read(data, split))
    chosen = small_data.selection_sets()[4]
    folder = chosen.write(tmp_path / "a")
    again = chosen.write(tmp_path / "b")
    more = chosen.write(tmp_path / "c", 150)
    assert opened and "test" not in opened
    split = {name: small_data.read(folder, name) for name in ("train", "dev", "check")}
    for name, pairs in split.items():
        assert (again / f"{name}.tsv").read_text() == (folder / f"{name}.tsv").read_text()
        labels = [label for label, _ in pairs]
        assert sorted(set(labels)) == sorted(chosen.genres)
        assert len(set(labels.count(g) for g in chosen.genres)) == 1  # balanced
        texts = {text for _, text in pairs}
        assert texts <= (train_split if name == "train" else dev_split)
    assert len(split["train"]) == 3 * chosen.train and len(split["check"]) == 3 * chosen.check
    dev_check = split["dev"] + split["check"]  # 90 distinct lines per genre (no repeats here)
    assert len(set(dev_check)) == len(dev_check)
    for name in ("dev", "check"):
        assert (more / f"{name}.tsv").read_text() == (folder / f"{name}.tsv").read_text()
    assert len(small_data.read(more, "train")) == 3 * 150


def test_small_data_sets_are_the_issue_example_for_ten_distinct_genre_triples(small_data):
    triples = small_data.TRIPLES
    assert len(set(triples)) == len(triples) == 10
    assert all(len(set(t)) == 3 and set(t) <= set(small_data.BROWN_GENRES) for t in triples)
    example = [s for s in small_data.SETS if s.corpus == small_data.BROWN and s.train == 100]
    assert sorted(s.labels for s in example) == sorted(triples)
    assert len({s.name for s in small_data.SETS}) == len(small_data.SETS)


def test_every_benchmark_script_is_in_the_docs_index():
    """docs/benchmarks.md lists what each script measures (the helpers aside)."""
    index = (ROOT / "docs" / "benchmarks.md").read_text()
    helpers = {"common.py", "snippets.py"}
    missing = [p.name for p in BENCHMARKS.glob("*.py")
               if p.name not in helpers and f"{p.name}`" not in index]
    assert not missing
