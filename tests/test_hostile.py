"""A careless or hostile user: non-finite option values, empty lines, streamed samples kept on
Ctrl-C, options that contradict each other, a resume of another task's run."""

from __future__ import annotations

import contextlib
import fcntl
import json
import signal
import subprocess
import sys

import pytest

from seqtool.report import json_line
from tests.conftest import ROOT, TINY_CLASSIFY, TINY_GENERATE, TOY, run_cli, run_seqtool

NON_FINITE = ["nan", "inf", "-inf", "NaN", "Infinity"]


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("option", ["--temperature", "--guidance", "--top-p"])
def test_non_finite_sampling_options_are_usage_errors(toy_generator, option, value):
    result = run_seqtool("generate", "-m", toy_generator, "--label", "positive", option, value)
    assert result.returncode == 2, result.stderr
    assert "not a finite number" in result.stderr or "not in the range" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("value", NON_FINITE)
def test_non_finite_length_penalty_is_a_usage_error(toy_translator, value):
    result = run_seqtool("translate", "-m", toy_translator, "--length-penalty", value, "hi")
    assert result.returncode == 2 and "Traceback" not in result.stderr


@pytest.mark.parametrize("option", ["--lr", "--ema", "--dropout", "--max-minutes"])
def test_non_finite_training_options_are_usage_errors(tmp_path, option):
    data = TOY / "sentiment.tsv"
    result = run_cli("train", "classify", "--train", data, "--dev", data, "--out",
                     tmp_path / "m.pt", option, "nan", ok=False)
    assert result.exit_code == 2
    assert not (tmp_path / "m.pt").exists()


def test_json_output_is_strict():
    line = json_line({"score": float("nan"), "n_best": [{"score": float("-inf")}]})
    assert json.loads(line, parse_constant=lambda c: pytest.fail(f"{c} in JSON")) == \
        {"score": None, "n_best": [{"score": None}]}


def test_an_empty_line_gets_no_label(toy_classifier):
    text = run_cli("classify", "-m", toy_classifier, input="I love my cat.\n\nIt rains.\n")
    lines = text.output.split("\n")
    assert lines[1] == "" and lines[0] and lines[2]
    records = [json.loads(x) for x in run_cli("classify", "-m", toy_classifier, "--format",
                                              "jsonl", input="a\n \n").output.splitlines()]
    assert records[1] == {"label": None, "probability": None, "text": "", "probabilities": {}}
    tsv = run_cli("classify", "-m", toy_classifier, "--format", "tsv", input="\n").output
    assert tsv == "\t\t\n"


def test_n_best_over_beam_is_a_usage_error(toy_translator):
    result = run_seqtool("translate", "-m", toy_translator, "--beam", "2", "--n-best", "3",
                         "hi")
    assert result.returncode == 2 and "--n-best cannot exceed --beam" in result.stderr


def test_resuming_another_tasks_run_names_the_task(tmp_path):
    data = TOY / "sentiment.tsv"
    out = tmp_path / "m.pt"
    run_cli("train", "classify", "--train", data, "--dev", data, "--out", out,
            *TINY_CLASSIFY, "--epochs", "1")
    result = run_seqtool("train", "generate", "--train", data, "--dev", data, "--out", out,
                         *TINY_GENERATE, "--resume")
    assert result.returncode == 1
    assert "this is a classify run, not a generate run" in result.stderr
    assert "data differ" not in result.stderr


def test_samples_stream_and_ctrl_c_keeps_those_written(toy_generator):
    """The first sample arrives while the others are still being drawn; Ctrl-C then exits
    130, and every line written is a whole sample of the uninterrupted run, in order."""
    args = ["generate", "-m", str(toy_generator), "--label", "positive", "-n", "3000",
            "--seed", "4", "--format", "jsonl"]
    # A test run in the background (`pytest &`) inherits an ignored SIGINT: the process gets
    # Python's own Ctrl-C handling back, as at a terminal.
    process = subprocess.Popen([sys.executable, "-m", "seqtool.cli", *args], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    # A one-page pipe (Linux): the run then blocks on its output until this test reads, so it
    # is surely still running when the signal comes (with 64 KB of pipe a fast machine could
    # draw and write all samples between the first line and the signal).
    with contextlib.suppress(AttributeError, OSError):
        fcntl.fcntl(process.stdout.fileno(), fcntl.F_SETPIPE_SZ, 4096)
    try:
        first = process.stdout.readline()
        assert first and process.poll() is None  # streaming: the run is not over yet
        process.send_signal(signal.SIGINT)
        rest = process.stdout.read()  # the same buffered reader: nothing read ahead is lost
        process.wait(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130
    written = [first, *rest.splitlines(keepends=True)]
    whole = run_seqtool(*args).stdout.splitlines(keepends=True)
    assert len(whole) == 3000 and 1 <= len(written) < 3000
    assert written == whole[: len(written)]
