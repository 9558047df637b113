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


def usage_error_line(stderr: str, option: str, rule: str) -> str:
    """The usage error names the option and the rule it broke (not any usage error, such as
    `No such option`, nor a traceback)."""
    assert "Traceback" not in stderr
    errors = [x for x in stderr.splitlines() if x.startswith("Error: ")]
    assert len(errors) == 1, stderr
    assert f"'{option}'" in errors[0] and rule in errors[0], errors[0]
    assert "No such option" not in errors[0]
    return errors[0]


@pytest.mark.parametrize("value", NON_FINITE)
@pytest.mark.parametrize("option", ["--temperature", "--guidance", "--top-p"])
def test_non_finite_sampling_options_are_usage_errors(toy_generator, option, value):
    result = run_seqtool("generate", "-m", toy_generator, "--label", "positive", option, value)
    assert result.returncode == 2, result.stderr
    usage_error_line(result.stderr, option, "is not a finite number")
    assert result.stdout == ""


@pytest.mark.parametrize("value", NON_FINITE)
def test_non_finite_length_penalty_is_a_usage_error(toy_translator, value):
    result = run_seqtool("translate", "-m", toy_translator, "--length-penalty", value, "hi")
    assert result.returncode == 2
    usage_error_line(result.stderr, "--length-penalty", "is not a finite number")


@pytest.mark.parametrize("option", ["--lr", "--ema", "--dropout", "--max-minutes"])
def test_non_finite_training_options_are_usage_errors(tmp_path, option):
    data = TOY / "sentiment.tsv"
    result = run_cli("train", "classify", "--train", data, "--dev", data, "--out",
                     tmp_path / "m.pt", option, "nan", ok=False)
    assert result.exit_code == 2
    usage_error_line(result.output, option, "is not a finite number")
    assert not (tmp_path / "m.pt").exists()


# Finite values where the maths breaks (overflow, division by ~0, a decay of 1 or more) and
# counts below their minimum: each a usage error naming the option and its range.
GENERATE_EXTREMES = [("--temperature", "1e300"), ("--temperature", "1e-300"),
                     ("--temperature", "-1"), ("--guidance", "1e300"), ("--top-k", "-1"),
                     ("--max-output-length", "0")]
TRAIN_EXTREMES = [("--ema", "2"), ("--ema", "1"), ("--ema", "-1"), ("--ensemble", "0"),
                  ("--max-tokens", "-5"), ("--patience", "-1"), ("--max-steps", "-1"),
                  ("--eval-every", "-1"), ("--max-minutes", "-1"), ("--seed", "-1"),
                  ("--seed", str(2**70)), ("--lr", "0"), ("--lr", "1e300"),
                  ("--pretrained-lr-scale", "1e300")]


@pytest.mark.parametrize("option,value", GENERATE_EXTREMES)
def test_extreme_sampling_values_are_usage_errors(option, value):
    result = run_cli("generate", "--label", "positive", option, value, ok=False)
    assert result.exit_code == 2
    usage_error_line(result.output, option, "is not in the range")


@pytest.mark.parametrize("option,value", [("--length-penalty", "1000"),
                                          ("--length-penalty", "-1"),
                                          ("--max-length-ratio", "1e300"), ("--beam", "0")])
def test_extreme_search_values_are_usage_errors(option, value):
    result = run_cli("translate", option, value, "hi", ok=False)
    assert result.exit_code == 2
    usage_error_line(result.output, option, "is not in the range")


@pytest.mark.parametrize("option,value", TRAIN_EXTREMES)
def test_extreme_training_values_are_usage_errors(tmp_path, option, value):
    data = TOY / "sentiment.tsv"
    result = run_cli("train", "classify", "--train", data, "--dev", data, "--out",
                     tmp_path / "m.pt", option, value, ok=False)
    assert result.exit_code == 2
    usage_error_line(result.output, option, "is not in the range")
    assert not (tmp_path / "m.pt").exists()


def test_values_at_the_edges_of_their_ranges_are_taken():
    """The ranges refuse only what breaks: 0 (greedy) and the ends of each range pass."""
    from seqtool.config import SamplingConfig, SearchConfig, TrainConfig, field_range_problem

    for config, name, value in [(SamplingConfig, "temperature", 0.0),
                                (SamplingConfig, "temperature", 1e-3),
                                (SamplingConfig, "temperature", 1e3),
                                (SamplingConfig, "guidance", 100.0),
                                (SearchConfig, "length_penalty", 10.0),
                                (TrainConfig, "ema", 0.0), (TrainConfig, "ema", 0.9999),
                                (TrainConfig, "max_steps", 0), (TrainConfig, "patience", 1)]:
        assert field_range_problem(config, name, value) is None, (name, value)
    for config, name, value in [(SamplingConfig, "temperature", 1e-4),
                                (SamplingConfig, "temperature", float("inf")),
                                (TrainConfig, "ema", 1.0), (TrainConfig, "patience", 0)]:
        assert field_range_problem(config, name, value), (name, value)


def test_generation_at_the_edges_of_the_ranges_is_finite(toy_generator):
    """The smallest temperature with the largest guidance samples (no NaN scores)."""
    result = run_cli("generate", "-m", toy_generator, "--label", "positive", "-n", "3",
                     "--temperature", "1e-3", "--guidance", "100", "--format", "jsonl",
                     "--max-output-length", "8")
    records = [json.loads(x) for x in result.stdout.splitlines()]
    assert len(records) == 3 and all(r["logprob"] is not None for r in records)


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


@pytest.mark.parametrize("damage", ["drop optimizer", "drop step", "scheduler not a dict"])
def test_resuming_a_damaged_training_state_says_so(tmp_path, damage):
    """An edited OUT.last.pt: one line saying the training state is damaged and what to do
    (it said `cannot resume: 'optimizer'`)."""
    import torch

    data = TOY / "sentiment.tsv"
    out = tmp_path / "m.pt"
    args = ["train", "classify", "--train", data, "--dev", data, "--out", out, *TINY_CLASSIFY]
    run_cli(*args, "--epochs", "1")
    last = tmp_path / "m.last.pt"
    payload = torch.load(last, weights_only=True)
    state = payload["train_state"]
    if damage == "drop optimizer":
        del state["optimizer"]
    elif damage == "drop step":
        del state["step"]
    else:
        state["scheduler"] = "x"
    torch.save(payload, last)
    result = run_cli(*args, "--epochs", "2", "--resume", ok=False)
    assert result.exit_code == 1
    errors = [x for x in result.output.splitlines() if x.startswith("Error: ")]
    assert len(errors) == 1 and "damaged training state" in errors[0], result.output
    assert "start a new run" in errors[0] and str(last) in errors[0]


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


INVISIBLE = ["\x00", "\u200b", " \u200b\ufeff\t", "\x00\x00\u2060"]


def test_a_line_that_shows_nothing_is_an_empty_line(toy_classifier, toy_translator):
    """NUL-only or zero-width lines: no label from classify, an empty translation, as for
    a line with no characters (classify labelled them, translate left them empty)."""
    from seqtool.text.blank import is_blank

    assert all(is_blank(x) for x in INVISIBLE) and not is_blank("\u200bcat")
    text = "I love my cat.\n" + "\n".join(INVISIBLE) + "\nIt rains.\n"
    records = [json.loads(x) for x in run_cli("classify", "-m", toy_classifier, "--format",
                                              "jsonl", input=text).output.splitlines()]
    assert [r["label"] is None for r in records] == [False, True, True, True, True, False]
    import seqtool

    classifier = seqtool.load("classify", toy_classifier)
    assert [r.label for r in classifier.classify(INVISIBLE)] == [None] * len(INVISIBLE)
    lines = run_cli("translate", "-m", toy_translator, "--beam", "1",
                    input=text).output.split("\n")
    assert [bool(x) for x in lines[:6]] == [True, False, False, False, False, True]


def test_an_invisible_prompt_is_the_empty_prompt(toy_generator):
    args = ["generate", "-m", toy_generator, "--label", "positive", "-i", "-", "--seed", "3",
            "--max-output-length", "6"]
    empty = run_cli(*args, input="\n").output
    assert run_cli(*args, input="\u200b\n").output == empty
    assert run_cli(*args, input="\x00\n").output == empty


def test_texts_and_an_input_file_together_are_a_usage_error(toy_classifier):
    for command in ("classify", "embed", "translate", "tokenize"):
        result = run_cli(command, "-m", toy_classifier, "x", "-i", TOY / "sentiment.tsv",
                         ok=False)
        assert result.exit_code == 2, (command, result.output)
        assert "give one or the other" in result.output and "-i" in result.output
