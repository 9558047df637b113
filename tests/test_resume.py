"""--resume continues the very run it resumes, for every task, or refuses with one line."""

from __future__ import annotations

import random
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from conftest import TINY_CLASSIFY, TINY_GENERATE, TINY_TRANSLATE, TOY, run_cli

from seqtool.checkpoint import Checkpoint
from seqtool.text.tokenizer import Tokenizer
from seqtool.training.loop import last_path

# Each task with dropout on, so the random draws after the resume point matter too.
RUNS = {
    "classify-ema-adversarial": ("classify", "sentiment.tsv",
                                 [*TINY_CLASSIFY, "--epochs", "8", "--dropout", "0.3", "--ema",
                                  "0.9", "--adversarial", "0.05"]),
    "generate": ("generate", "sentiment.tsv",
                 [*TINY_GENERATE, "--epochs", "8", "--dropout", "0.2"]),
    # bf16 autocast, and dev evaluation in the middle of an epoch.
    "translate-bf16": ("translate", "en-de.tsv",
                       [*TINY_TRANSLATE, "--epochs", "4", "--eval-every", "3", "--dropout",
                        "0.2", "--precision", "bf16", "--max-tokens", "120"]),
}


def train(task: str, data, out, options, *extra, ok: bool = True):
    return run_cli("train", task, "--train", data, "--dev", data, "--out", out, *options,
                   *extra, ok=ok)


def same_weights(a, b) -> bool:
    a, b = Checkpoint.load(a).weights, Checkpoint.load(b).weights
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", list(RUNS))
def test_resume_equals_an_uninterrupted_run(tmp_path, name):
    task, corpus, options = RUNS[name]
    data = TOY / corpus
    full = tmp_path / "full.pt"
    train(task, data, full, options)
    part = tmp_path / "part.pt"
    train(task, data, part, options, "--max-steps", "5")
    assert Checkpoint.load(last_path(part)).train_state["step"] == 5
    train(task, data, part, options, "--resume")
    full_state = Checkpoint.load(last_path(full)).train_state
    part_state = Checkpoint.load(last_path(part)).train_state
    assert part_state["step"] == full_state["step"] > 5
    assert same_weights(last_path(part), last_path(full))
    if name == "classify-ema-adversarial":
        assert all(torch.equal(a, b) for a, b in zip(part_state["ema"], full_state["ema"]))
        assert Checkpoint.load(full).model_config["adversarial"] == 0.05


def test_resume_takes_the_tokenizer_from_the_checkpoint(tmp_path, monkeypatch):
    data = TOY / "sentiment.tsv"
    out = tmp_path / "m.pt"
    train("classify", data, out, TINY_CLASSIFY, "--max-steps", "2")
    saved = Checkpoint.load(last_path(out)).tokenizers

    def no_training(*args, **kwargs):
        raise AssertionError("a resumed run must not retrain its tokenizer")

    monkeypatch.setattr(Tokenizer, "train", no_training)
    train("classify", data, out, TINY_CLASSIFY, "--resume", "--max-steps", "4")
    assert Checkpoint.load(last_path(out)).tokenizers == saved
    assert Checkpoint.load(last_path(out)).train_state["step"] == 4


def test_resume_refuses_other_data(tmp_path):
    data = tmp_path / "train.tsv"
    shutil.copy(TOY / "sentiment.tsv", data)
    out = tmp_path / "m.pt"
    train("classify", data, out, TINY_CLASSIFY, "--max-steps", "3")
    before = last_path(out).read_bytes()
    with data.open("a") as f:
        f.write("positive\tTwo more lines.\nnegative\tThat change the pieces.\n")
    result = run_cli("train", "classify", "--train", data, "--dev", TOY / "sentiment.tsv",
                     "--out", out, *TINY_CLASSIFY, "--resume", ok=False)
    assert result.exit_code == 1
    assert "cannot resume: the --train data differ" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert last_path(out).read_bytes() == before  # the saved run is left as it was


def test_resume_refuses_other_options_but_allows_a_longer_run(tmp_path):
    data = TOY / "sentiment.tsv"
    out = tmp_path / "m.pt"
    train("classify", data, out, TINY_CLASSIFY, "--max-steps", "3")
    result = train("classify", data, out, TINY_CLASSIFY, "--lr", "0.5", "--resume", ok=False)
    assert result.exit_code == 1 and "--lr was 0.01" in result.output
    result = train("classify", data, out, TINY_CLASSIFY, "--hidden-dim", "8", "--resume",
                   ok=False)
    assert result.exit_code == 1 and "--hidden-dim was 16" in result.output
    train("classify", data, out, TINY_CLASSIFY, "--resume", "--max-steps", "6", "--patience",
          "50", "--epochs", "70")
    assert Checkpoint.load(last_path(out)).train_state["step"] == 6


def test_a_run_that_stopped_early_stays_stopped_when_resumed_for_more_epochs(tmp_path):
    data = TOY / "sentiment.tsv"
    out = tmp_path / "m.pt"
    options = [*TINY_CLASSIFY, "--patience", "1", "--lr", "0.05"]
    train("classify", data, out, options, "--epochs", "40")
    stopped = Checkpoint.load(last_path(out))
    assert len(stopped.meta["history"]) < 40  # patience ended it
    shutil.copy(last_path(out), tmp_path / "stopped.pt")
    train("classify", data, out, options, "--epochs", "60", "--resume")
    assert Checkpoint.load(last_path(out)).train_state["step"] == stopped.train_state["step"]
    assert same_weights(last_path(out), tmp_path / "stopped.pt")
    # A larger patience lets the same run go on.
    train("classify", data, out, [*TINY_CLASSIFY, "--patience", "3", "--lr", "0.05"],
          "--epochs", "60", "--resume")
    assert Checkpoint.load(last_path(out)).train_state["step"] > stopped.train_state["step"]


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_at_a_random_moment_then_resume_is_exact(tmp_path, sig):
    """Ctrl-C (or SIGTERM) at any point stops at a step boundary, saves, and --resume then
    gives the same model as a run that was never stopped (dropout on)."""
    data = TOY / "sentiment.tsv"
    options = [*TINY_CLASSIFY[:-1], "--epochs", "100000", "--max-steps", "200",
               "--dropout", "0.3", "--eval-every", "30"]
    full = tmp_path / "full.pt"
    train("classify", data, full, [*options, "--quiet"])
    out = tmp_path / "m.pt"
    args = [sys.executable, "-m", "seqtool.cli", "train", "classify", "--train", str(data),
            "--dev", str(data), "--out", str(out), *map(str, options)]
    p = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:  # wait until training is under way
        if line.startswith("step "):
            break
    subprocess.run(["sleep", str(random.uniform(0.0, 0.3))])
    p.send_signal(sig)
    _, err = p.communicate(timeout=120)
    if p.returncode in (0, -sig) and Checkpoint.load(last_path(out)).train_state["step"] == 200:
        # Under load the run may end before the signal lands, then either exit or be stopped
        # by the signal's default action once training (and every save) is over.
        pytest.skip("training finished before the signal arrived")
    assert p.returncode == 128 + sig, err
    assert "interrupted at step" in err and "Traceback" not in err
    stopped = Checkpoint.load(last_path(out)).train_state
    assert 0 < stopped["step"] < 200 and not stopped["finished"]
    train("classify", data, out, [*options, "--quiet"], "--resume")
    resumed = Checkpoint.load(last_path(out)).train_state
    assert resumed["step"] == 200 and resumed["finished"]
    assert same_weights(last_path(out), last_path(full))
