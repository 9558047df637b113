"""Shipped models by name everywhere (issue 30, item 2): -m, --init, --teacher, info,
tokenize, the API; errors that name the task; `seqtool models`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

import seqtool
from seqtool.errors import SeqtoolError
from seqtool.shipped import SHIPPED, checkpoints_folder, find_shipped, resolve_model
from tests.conftest import ROOT, TINY_CLASSIFY, TOY, run_cli


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """$SEQTOOL_CHECKPOINTS pointing at a folder holding an (empty) file per shipped model."""
    for model in SHIPPED:
        (tmp_path / model.file).write_bytes(b"")
    monkeypatch.setenv("SEQTOOL_CHECKPOINTS", str(tmp_path))
    return tmp_path


def test_a_model_is_found_by_name_by_file_name_and_by_stem(folder):
    assert resolve_model("bible-fr-en", "translate") == folder / "bible-fr-en-gru-attention.seqtool"
    assert resolve_model("english-gru-lm.seqtool", "pretrain") == folder / "english-gru-lm.seqtool"
    assert resolve_model("english-gru-lm", ("pretrain", "classify")) == \
        folder / "english-gru-lm.seqtool"
    assert resolve_model("sentiment-gru", "classify") == folder / "sentiment-gru.seqtool"
    assert resolve_model(None, "generate") == folder / "sentiment-lstm-generator.seqtool"
    # a name shared by two tasks is the task's own model
    assert resolve_model("sentiment", "generate") == folder / "sentiment-lstm-generator.seqtool"
    assert resolve_model("sentiment", ("pretrain", "classify")) == folder / "sentiment-gru.seqtool"


def test_an_existing_file_wins_over_a_name(folder, tmp_path_factory, monkeypatch):
    here = tmp_path_factory.mktemp("cwd")
    (here / "bible-fr-en").write_bytes(b"")
    monkeypatch.chdir(here)
    assert resolve_model("bible-fr-en", "translate").resolve() == here / "bible-fr-en"
    assert find_shipped("dir/sentiment") == []  # a path is never a name


def test_a_model_of_another_task_names_the_task_and_its_models(folder):
    with pytest.raises(SeqtoolError) as e:
        resolve_model("sentiment", "translate")
    assert str(e.value) == "sentiment is a classify/generate model; translate models: bible-fr-en"
    with pytest.raises(SeqtoolError, match="bible-fr-en is a translate model; classify models: "
                                           "sentiment, brown-genre"):
        resolve_model("bible-fr-en", "classify")
    with pytest.raises(SeqtoolError, match="english-lstm-lm.seqtool is a pretrain model"):
        resolve_model("english-lstm-lm.seqtool", "generate")


def test_an_unknown_name_lists_the_names_and_a_missing_file_is_the_loaders(folder):
    with pytest.raises(SeqtoolError, match=r"^no-such: no such checkpoint file, nor a shipped "
                                           r"translate model \(those: bible-fr-en;"):
        resolve_model("no-such", "translate")
    assert str(resolve_model("no/such.pt", "translate")) == "no/such.pt"


def test_a_missing_shipped_file_says_where_to_look(folder):
    (folder / "brown-genre-gru.seqtool").unlink()
    with pytest.raises(SeqtoolError, match="set SEQTOOL_CHECKPOINTS"):
        resolve_model("brown-genre", "classify")


def test_the_api_and_the_commands_name_the_task(folder):
    with pytest.raises(SeqtoolError, match="sentiment is a classify/generate model; translate"):
        seqtool.load("translate", "sentiment")
    result = run_cli("classify", "-m", "bible-fr-en", "x", ok=False)
    assert result.exit_code == 1
    assert "bible-fr-en is a translate model; classify models: sentiment" in result.output
    result = run_cli("distill", "--teacher", "english-gru-lm", "--train", TOY / "sentiment.tsv",
                     "--dev", TOY / "sentiment.tsv", "--out", folder / "s.pt", ok=False)
    assert "english-gru-lm is a pretrain model; classify models" in result.output


def test_init_takes_a_shipped_file_name(tmp_path, toy_classifier, monkeypatch):
    """`--init english-gru-lm.seqtool` by name (here a warm start from a toy classifier filed as
    the shipped sentiment classifier)."""
    shutil.copy(toy_classifier, tmp_path / "sentiment-gru.seqtool")
    monkeypatch.setenv("SEQTOOL_CHECKPOINTS", str(tmp_path))
    data = TOY / "sentiment.tsv"
    options = [*TINY_CLASSIFY, "--epochs", "1"]
    run_cli("train", "classify", "--train", data, "--dev", data, "--out", tmp_path / "m.pt",
            "--init", "sentiment-gru.seqtool", *options)
    assert seqtool.load("classify", tmp_path / "m.pt").labels == ["negative", "positive"]
    result = run_cli("train", "classify", "--train", data, "--dev", data, "--out",
                     tmp_path / "n.pt", "--init", "bible-fr-en", *options, ok=False)
    assert "bible-fr-en is a translate model; pretrain/classify models: english-gru-lm" \
        in result.output


def test_models_lists_every_shipped_model_without_torch():
    code = ("import sys; from seqtool.cli import cli; "
            "cli.main(['models', '--format', 'jsonl'], standalone_mode=False); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout.splitlines()
    assert out[-1] == "False"
    rows = [json.loads(line) for line in out[:-1]]
    assert [(r["name"], r["task"]) for r in rows] == [(m.name, m.task) for m in SHIPPED]
    for row in rows:
        assert row["domain"] and row["score"]
        assert row["labels"] or row["languages"]
        path = checkpoints_folder() / row["file"]
        assert row["bytes"] == (path.stat().st_size if path.is_file() else None)
    text = run_cli("models").output
    assert all(m.name in text and m.score in text for m in SHIPPED)


def test_the_table_says_what_each_shipped_checkpoint_holds():
    from seqtool.checkpoint import Checkpoint

    present = [m for m in SHIPPED if (checkpoints_folder() / m.file).is_file()]
    if not present:
        pytest.skip("no shipped checkpoints here")
    for model in present:
        checkpoint = Checkpoint.load(checkpoints_folder() / model.file)
        assert checkpoint.task == model.task, model.name
        assert tuple(checkpoint.labels) == model.labels, model.name


def test_info_and_tokenize_take_names():
    if not (checkpoints_folder() / "bible-fr-en-gru-attention.seqtool").is_file():
        pytest.skip("no shipped translator here")
    report = json.loads(run_cli("info", "bible-fr-en", "--format", "json").output)
    assert report["task"] == "translate"
    pieces = run_cli("tokenize", "-m", "bible-fr-en", "Dieu est amour.").output.split()
    assert "".join(pieces).replace("▁", "") == "Dieuestamour."


def test_serve_names_the_task_of_a_model_given_for_another():
    from seqtool.serve.server import load_models

    with pytest.raises(SeqtoolError, match="^sentiment is a classify/generate model; "
                                           "translate models: bible-fr-en$"):
        load_models({"translate": "sentiment"}, "cpu")
