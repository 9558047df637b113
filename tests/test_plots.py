"""Pictures: training curves (`seqtool plot`, a pretrain → finetune chain), TensorBoard events
(`--tensorboard`), the attention PNG with readable pieces; optional packages checked before
any work, and translations printed even when the picture cannot be made."""

from __future__ import annotations

import importlib.util
import json

import pytest
from conftest import TINY_CLASSIFY, TOY, run_cli

from seqtool.plot import piece_labels

PNG = b"\x89PNG\r\n\x1a\n"


def without(monkeypatch, package: str) -> None:
    """Make `package` look uninstalled to the checks (importlib.util.find_spec)."""
    real = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == package else real(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_piece_labels_read_as_words():
    assert piece_labels(["▁Je", "▁chem", "in", ".", "▁", "</s>"]) == \
        ["Je", "chem", "·in", ".", "␣", "</s>"]


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    """A tiny language model and a classifier finetuned from it (--init)."""
    folder = tmp_path_factory.mktemp("chain")
    text = folder / "text.txt"
    text.write_text("".join(line.split("\t")[1] for line in
                            (TOY / "sentiment.tsv").read_text().splitlines(True)))
    lm = folder / "lm.pt"
    run_cli("pretrain", "--train", text, "--dev", text, "--out", lm, "--vocab-size", "60",
            "--embed-dim", "16", "--hidden-dim", "16", "--max-tokens", "64", "--epochs", "3",
            "--quiet")
    model = folder / "model.pt"
    run_cli("train", "classify", "--train", TOY / "sentiment.tsv", "--dev",
            TOY / "sentiment.tsv", "--out", model, "--init", lm, "--epochs", "50",
            "--max-steps", "4", "--eval-every", "1", "--patience", "100", "--max-tokens", "64",
            "--quiet")
    return lm, model


def test_plot_draws_the_chain_from_the_recorded_init(chain, tmp_path):
    from seqtool.report import training_runs

    lm, model = chain
    runs = training_runs([str(model)])
    assert [r["task"] for r in runs] == ["pretrain", "classify"]
    assert [r["metric"] for r in runs] == ["perplexity", "accuracy"]
    assert runs[1]["step"] == sorted(runs[1]["step"]) and len(runs[1]["step"]) == 4
    assert len(training_runs([str(model)], chain=False)) == 1
    out = tmp_path / "curves.png"
    result = run_cli("plot", model, "--out", out)
    assert out.read_bytes()[:8] == PNG
    assert "2 run(s)" in result.output


def test_plot_without_matplotlib_says_so_before_any_work(monkeypatch, tmp_path):
    without(monkeypatch, "matplotlib")
    result = run_cli("plot", tmp_path / "no-such.pt", "--out", tmp_path / "c.png", ok=False)
    assert result.exit_code == 1
    assert "needs matplotlib: pip install" in result.output
    assert not (tmp_path / "c.png").exists()


def test_translate_checks_matplotlib_before_loading_the_model(monkeypatch, tmp_path):
    without(monkeypatch, "matplotlib")
    result = run_cli("translate", "-m", tmp_path / "no-such.pt", "--attention-png",
                     tmp_path / "a.png", "Dieu est amour.", ok=False)
    assert result.exit_code == 1 and "--attention-png needs matplotlib" in result.output


def test_translation_is_printed_when_the_picture_fails(toy_translator, tmp_path, monkeypatch):
    import seqtool.plot
    from seqtool.errors import SeqtoolError

    def fail(attention, path):
        raise SeqtoolError("cannot draw", str(path))

    monkeypatch.setattr(seqtool.plot, "save_attention_png", fail)
    result = run_cli("translate", "-m", toy_translator, "--attention-png", tmp_path / "a.png",
                     "--format", "jsonl", "i love my cat", ok=False)
    assert result.exit_code == 1
    assert json.loads(result.stdout.splitlines()[0])["translation"]
    assert "cannot draw" in result.stderr


def test_tensorboard_events_hold_each_evaluation(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = tmp_path / "tb"
    out = tmp_path / "m.pt"
    run_cli("train", "classify", "--train", TOY / "sentiment.tsv", "--dev",
            TOY / "sentiment.tsv", "--out", out, *TINY_CLASSIFY, "--max-steps", "6",
            "--eval-every", "2", "--tensorboard", events)
    history = json.loads(run_cli("info", out, "--format", "json").output)["history"]
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    dev = accumulator.Scalars("dev/accuracy")
    assert [e.step for e in dev] == [r["step"] for r in history] == [2, 4, 6]
    assert [round(e.value, 4) for e in dev] == [r["accuracy"] for r in history]
    assert [e.step for e in accumulator.Scalars("train/batch_loss")] == list(range(1, 7))
    assert "train/lr" in accumulator.Tags()["scalars"]


def test_tensorboard_missing_is_one_line_before_training(monkeypatch, tmp_path):
    without(monkeypatch, "tensorboard")
    result = run_cli("train", "classify", "--train", tmp_path / "none.tsv", "--dev",
                     tmp_path / "none.tsv", "--out", tmp_path / "m.pt", "--tensorboard",
                     tmp_path / "tb", ok=False)
    assert result.exit_code == 1
    assert "--tensorboard needs the tensorboard package: pip install tensorboard" in \
        result.output
