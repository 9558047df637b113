"""Reports that fit 80 columns and say true things: the confusion matrix of many classes,
macro-F1 of a one-class file, `info` (history never cut, configuration as TOML, command and
inputs that reproduce the model)."""

from __future__ import annotations

import json
import random
import shlex

import pytest
from conftest import ROOT, TINY_CLASSIFY, TOY, run_cli

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

from seqtool.metrics import classification_report
from seqtool.report import command_lines, confusion_lines, history_lines, toml_lines

GENRES = ["adventure", "belles_lettres", "editorial", "fiction", "government", "hobbies",
          "humor", "learned", "lore", "mystery", "news", "religion", "reviews", "romance",
          "science_fiction"]


@pytest.mark.parametrize("largest", [9, 999, 9999])
@pytest.mark.parametrize("labels", [GENRES, ["negative", "positive"], ["a", "b", "c"]])
def test_confusion_matrix_fits_80_columns_and_keeps_every_count_and_name(labels, largest):
    rng = random.Random(largest)
    confusion = [[rng.randint(0, largest) for _ in labels] for _ in labels]
    confusion[0][0] = largest
    lines = confusion_lines(labels, confusion, 80)
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    text = "\n".join(lines)
    for label in labels:  # in full: a column head, a row or the legend
        assert label in text
    rows = lines[2:2 + len(labels)]
    for row, counts in zip(rows, confusion):
        assert [int(x) for x in row.split()[-len(labels):]] == counts


def test_one_class_file_macro_f1_averages_only_classes_that_occur():
    report = classification_report(["pos", "pos", "pos"], ["pos", "pos", "neg"], ["neg", "pos"])
    assert report["per_class"]["neg"]["f1"] == 0.0  # predicted, never gold: it counts
    assert report["macro_f1"] == pytest.approx((0.0 + 0.8) / 2)
    perfect = classification_report(["pos", "pos"], ["pos", "pos"], ["neg", "pos"])
    assert perfect["per_class"]["neg"] == {"precision": None, "recall": None, "f1": None,
                                           "support": 0}
    assert perfect["macro_f1"] == 1.0 and perfect["macro_f1_classes"] == 1


def test_evaluate_text_of_a_one_class_file_says_over_which_classes(toy_classifier, tmp_path):
    data = tmp_path / "one.tsv"
    data.write_text("positive\tI love my cat.\npositive\tWhat a great day.\n")
    out = run_cli("evaluate", "classify", "-m", toy_classifier, "-i", data).output
    if "macro-F1 1.0000" in out:
        assert "over 1 of 2 classes" in out
    assert "0.0000    │ 0       │" not in out  # no class with no data shown at F1 0


def test_history_lines_never_cut_and_fit():
    history = [{"step": 300 * i, "epoch": 0.48 * i, "train_loss": 1.3335 / i,
                "lr": 0.0019999999 / i, "tokens_per_s": 8186.6 + i, "accuracy": 0.7885,
                "agreement": 0.8895, "teacher_kl": 0.1152, "bits_per_character": 1.77,
                "perplexity_of_the_wrong_class": 123.456}
               for i in range(1, 6)]
    lines = history_lines(history, 80)
    assert all(len(line) <= 80 for line in lines)
    text = "\n".join(lines)
    for head in ("step", "loss", "lr", "tok/s", "accuracy", "teacher_kl",
                 "perplexity_of_the_wrong_class"):
        assert head in text
    assert "…" not in text and "2.00e-03" in text and "1200" in text


def test_toml_of_a_configuration_reads_back():
    config = {"embed_dim": 100, "bidirectional": True, "dropout": 0.2, "pooling": "max",
              "parts": [{"members": 3}], "run": {"options": {"unlabelled": ["a", "b"]},
                                                  "data": {"init": None, "x": "ab" * 32}}}
    lines = toml_lines("model_config", config)
    back = tomllib.loads("\n".join(lines))["model_config"]
    assert back == {**config, "run": {"options": {"unlabelled": ["a", "b"]},
                                      "data": {"x": "ab" * 32}}}
    parts = [{"members": 3, "config": {"hidden_dim": 8}}, {"members": 1, "config": {}}]
    assert tomllib.loads("\n".join(toml_lines("parts", parts)))["parts"] == parts


def test_command_lines_wrap_to_the_same_command():
    command = ("seqtool train classify --train 'my data/train.tsv' --dev corpora/x/dev.tsv "
               "--out model.pt --epochs 4 --unidirectional --embed-dim 100 --lr 0.002 "
               "--adversarial 0.05 --max-minutes 40")
    lines = command_lines(command, 60)
    assert len(lines) > 1 and all(len(line) <= 60 for line in lines)
    assert shlex.split(" ".join(line.rstrip("\\") for line in lines)) == shlex.split(command)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    """A toy classifier trained with an old spelling, flags and a --config file."""
    folder = tmp_path_factory.mktemp("recorded")
    config = folder / "run.toml"
    config.write_text("lr = 0.01\n")
    out = folder / "model.pt"
    run_cli("train", "classify", "--train", TOY / "sentiment.tsv", "--dev",
            TOY / "sentiment.tsv", "--out", out, "--config", config, "--max-length", "100",
            "--unidirectional", *TINY_CLASSIFY[:2], "--max-steps", "2", *TINY_CLASSIFY[2:])
    return out


def test_recorded_command_is_canonical_and_runs_again(recorded, tmp_path):
    info = json.loads(run_cli("info", recorded, "--format", "json").output)
    words = shlex.split(info["command"])
    assert words[:3] == ["seqtool", "train", "classify"]
    assert "--max-length" not in words and "--config" not in words
    assert words[words.index("--max-train-length") + 1] == "100"
    assert words[words.index("--lr") + 1] == "0.01"  # from the --config file
    assert "--unidirectional" in words
    again = tmp_path / "again.pt"
    words[words.index("--out") + 1] = str(again)
    run_cli(*words[1:])
    import torch

    first = torch.load(recorded, weights_only=True)
    second = torch.load(again, weights_only=True)
    assert first["model_config"] == second["model_config"]
    assert all(torch.equal(first["weights"][k], second["weights"][k])
               for k in first["weights"])


def test_info_names_inputs_by_digest_and_says_when_they_changed(recorded, tmp_path):
    info = json.loads(run_cli("info", recorded, "--format", "json").output)
    assert {e["option"] for e in info["inputs"]} == {"--train", "--dev"}
    assert all(len(e["sha256"]) == 64 for e in info["inputs"])
    assert {e["here"] for e in info["inputs"]} == {"same"}
    data = tmp_path / "data.tsv"
    data.write_bytes((TOY / "sentiment.tsv").read_bytes())
    out = tmp_path / "m.pt"
    run_cli("train", "classify", "--train", data, "--dev", TOY / "sentiment.tsv", "--out", out,
            *TINY_CLASSIFY, "--max-steps", "1")
    data.write_text(data.read_text() + "positive\tone more\n")
    here = {e["option"]: e["here"] for e in
            json.loads(run_cli("info", out, "--format", "json").output)["inputs"]}
    assert here == {"--train": "differs", "--dev": "same"}
    data.unlink()
    assert "here: missing" in run_cli("info", out).output


def test_info_text_fits_80_columns_and_flags_the_shipped_teacher(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.chdir(ROOT)
    out = run_cli("info", "checkpoints/sentiment-gru.seqtool").output
    assert all(len(line) <= 80 for line in out.splitlines() if "sha256 = " not in line
               and "_digest = " not in line and "_path = " not in line)
    assert "--teacher checkpoints/sentiment-gru.pt" in out
    # the teacher was the twelve-GRU file of that name, since replaced (and renamed): gone
    teacher = "--teacher checkpoints/sentiment-gru.pt\n      sha256 9cc2fbb44811ff57…"
    assert f"{teacher}  here: missing" in out
    assert "train_l…" not in out and "{'" not in out  # no cut heads, no Python dicts
    assert "[model_config]" in out and "hidden_dim = 192" in out
