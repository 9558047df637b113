"""Shared fixtures: tiny models trained once per test session on the toy corpus."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from seqtool.cli import cli

# One thread per test process and per `seqtool` process a test starts, set before torch is
# imported (the imports above do not import it). The test models are tiny, so threads gain
# nothing, and on a loaded machine OpenMP threads wait for each other: on 2 cores under load
# 9, 24 small-model tests took 265 s with torch's default of 2 threads, 18 s with one.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

ROOT = Path(__file__).resolve().parent.parent
TOY = ROOT / "corpora" / "toy"

TINY_CLASSIFY = ["--epochs", "60", "--vocab-size", "60", "--embed-dim", "16", "--hidden-dim",
                 "16", "--max-tokens", "64", "--lr", "0.01", "--warmup-steps", "0",
                 "--schedule", "constant", "--patience", "1000", "--quiet"]
TINY_GENERATE = ["--epochs", "150", "--vocab-size", "60", "--embed-dim", "32", "--hidden-dim",
                 "64", "--max-tokens", "400", "--lr", "0.01", "--warmup-steps", "0",
                 "--schedule", "constant", "--patience", "1000", "--dropout", "0", "--quiet"]
TINY_TRANSLATE = ["--epochs", "250", "--vocab-size", "90", "--embed-dim", "48",
                  "--hidden-dim", "48", "--attention-dim", "48", "--max-tokens", "400",
                  "--lr", "0.01", "--warmup-steps", "0", "--schedule", "constant",
                  "--patience", "1000", "--eval-every", "50", "--dropout", "0",
                  "--label-smoothing", "0", "--quiet"]


def small_generator(seed: int = 0, num_classes: int = 3, vocab_size: int = 23, **options):
    """A small random S2 generator in float64 (no dropout) for unit tests."""
    import torch

    from seqtool.config import GeneratorConfig
    from seqtool.nn.generator import Generator

    torch.manual_seed(seed)
    options.setdefault("class_bias", False)  # as before GeneratorConfig's default became True
    config = GeneratorConfig(vocab_size=vocab_size, num_classes=num_classes, embed_dim=6,
                             hidden_dim=7, class_dim=3, dropout=0.0, **options)
    model = Generator(config).double().eval()
    if model.class_bias is not None:  # zero at initialisation; make it matter in the tests
        torch.nn.init.normal_(model.class_bias.weight)
    return model


def run_cli(*args: str, input: str | None = None, ok: bool = True):
    """Invoke the CLI in-process; by default assert success and return the result."""
    result = CliRunner().invoke(cli, [str(a) for a in args], input=input, catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def run_seqtool(*args: str, input: str | None = None) -> subprocess.CompletedProcess:
    """Run the real `seqtool` process (for exit codes, stderr and pipes)."""
    return subprocess.run([sys.executable, "-m", "seqtool.cli", *map(str, args)], input=input,
                          capture_output=True, text=True, timeout=300)


def train_toy(tmp_path_factory, task: str, corpus: str, options: list[str]) -> Path:
    """Train a tiny `task` model on a toy corpus (train = dev) once per session."""
    out = tmp_path_factory.mktemp(task) / "toy.pt"
    data = TOY / corpus
    run_cli("train", task, "--train", data, "--dev", data, "--out", out, *options)
    return out


@pytest.fixture(scope="session")
def toy_classifier(tmp_path_factory) -> Path:
    return train_toy(tmp_path_factory, "classify", "sentiment.tsv", TINY_CLASSIFY)


@pytest.fixture(scope="session")
def toy_generator(tmp_path_factory) -> Path:
    return train_toy(tmp_path_factory, "generate", "sentiment.tsv", TINY_GENERATE)


@pytest.fixture(scope="session")
def toy_translator(tmp_path_factory) -> Path:
    return train_toy(tmp_path_factory, "translate", "en-de.tsv", TINY_TRANSLATE)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run faster on one thread than split over several (modules that use it:
    `pytestmark = pytest.mark.usefixtures("one_thread")`)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
