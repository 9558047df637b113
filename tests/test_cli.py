"""The command line as a user meets it: help, pipes, formats, errors, configs."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import ROOT, TINY_GENERATE, TOY, run_cli, run_seqtool


def test_help_does_not_import_torch():
    code = ("import sys; from seqtool.cli import cli\n"
            "try:\n    cli.main(['--help'], standalone_mode=False)\nexcept SystemExit:\n    pass\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["train", "classify", "--help"],
                                  ["generate", "--help"], ["evaluate", "--help"]])
def test_help_imports_no_torch_and_only_the_command_module_it_shows(args):
    """`seqtool --help` imports no command module; a command's help only its own (lazy)."""
    code = ("import sys, runpy\n"
            "sys.argv = ['seqtool', *sys.argv[1:]]\n"
            "try:\n    runpy.run_module('seqtool.cli', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "mods = sorted(m for m in sys.modules if m.startswith('seqtool.cli.'))\n"
            "print(' '.join(mods), 'torch' in sys.modules, file=sys.stderr)\n")
    p = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True,
                       text=True)
    loaded, torch_loaded = p.stderr.split()[:-1], p.stderr.split()[-1]
    assert torch_loaded == "False", p.stderr
    assert "Usage: seqtool" in p.stdout
    commands = {"seqtool.cli.train", "seqtool.cli.predict", "seqtool.cli.evaluate",
                "seqtool.cli.tools"}
    expected = {"--help": set(), "train": {"seqtool.cli.train"},
                "generate": {"seqtool.cli.predict"}, "evaluate": {"seqtool.cli.evaluate"}}
    assert commands & set(loaded) == expected[args[0]], loaded


def test_every_command_has_an_example():
    for path in (["classify"], ["generate"], ["translate"], ["embed"], ["info"], ["tokenize"],
                 ["tokenizer", "train"], ["train", "classify"], ["train", "generate"],
                 ["train", "translate"], ["evaluate", "classify"], ["evaluate", "generate"],
                 ["evaluate", "translate"]):
        out = run_cli(*path, "--help").output
        assert "Example" in out, path


def test_version():
    assert "seqtool, version" in run_cli("--version").output


def test_classify_arguments_stdin_and_formats(toy_classifier):
    out = run_cli("classify", "-m", toy_classifier, "--format", "tsv", "I love my cat.").output
    label, prob, text = out.strip().split("\t")
    assert label == "positive" and 0.5 < float(prob) <= 1 and text == "I love my cat."
    lines = ["Cats and dogs are not allowed.", "", "I love my cat."]
    out = run_cli("classify", "-m", toy_classifier, "--format", "jsonl",
                  input="\n".join(lines) + "\n").output.splitlines()
    records = [json.loads(x) for x in out]
    assert [r["text"] for r in records] == lines  # input order, empty line kept
    assert records[0]["label"] == "negative"
    assert abs(sum(records[0]["probabilities"].values()) - 1) < 1e-4


def test_closed_pipe_exits_quietly(toy_classifier):
    cmd = (f"yes 'I love my cat.' | head -n 3000 | {sys.executable} -m seqtool.cli classify "
           f"-m {toy_classifier} | head -n 1; echo \"status ${{PIPESTATUS[2]}}\"")
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True)
    first, status = p.stdout.splitlines()
    assert first.startswith("positive")
    assert status in ("status 0", "status 141")
    assert p.stderr == ""


def test_evaluate_classify_json_and_unknown_label(toy_classifier, tmp_path):
    report = json.loads(run_cli("evaluate", "classify", "-m", toy_classifier, "-i",
                                TOY / "sentiment.tsv", "--format", "json").output)
    assert report["accuracy"] == 1.0 and report["confusion"] == [[3, 0], [0, 2]]
    bad = tmp_path / "bad.tsv"
    bad.write_text("positive\tI love my cat.\nneutral\tA cat.\n")
    p = run_seqtool("evaluate", "classify", "-m", toy_classifier, "--input", bad)
    assert p.returncode != 0
    assert f"{bad}:2: unknown label 'neutral'" in p.stderr
    assert "Traceback" not in p.stderr


def test_bad_training_file_is_one_line_error(tmp_path):
    bad = tmp_path / "train.tsv"
    bad.write_bytes(b"positive\tgood\nnegative bad\n")
    p = run_seqtool("train", "classify", "--train", bad, "--dev", bad, "--out", tmp_path / "m.pt")
    assert p.returncode == 1
    assert p.stderr.strip() == (f"Error: {bad}:2: missing tab: expected 'label<TAB>text' "
                                "(or fastText's '__label__LABEL text')")
    assert not (tmp_path / "m.pt").exists()


def test_not_a_checkpoint(tmp_path):
    fake = tmp_path / "fake.pt"
    fake.write_bytes(b"not a checkpoint")
    p = run_seqtool("classify", "-m", fake, "hello")
    assert p.returncode == 1 and "not a seqtool checkpoint" in p.stderr


def test_tokenizer_train_and_tokenize_roundtrip(tmp_path):
    model = tmp_path / "tok.model"
    run_cli("tokenizer", "train", "--column", "2", "--vocab-size", "50", "--out", model,
            TOY / "sentiment.tsv")
    pieces = run_cli("tokenize", "-m", model, "I love my cat.").output.strip()
    assert "▁" in pieces
    assert run_cli("tokenize", "-m", model, "--decode", input=pieces + "\n").output.strip() \
        == "I love my cat."
    ids = run_cli("tokenize", "-m", model, "--ids", "I love my cat.").output.strip()
    assert len(ids.split()) == len(pieces.split()) and all(i.isdigit() for i in ids.split())
    assert run_cli("tokenize", "-m", model, "--decode", "--ids", input=ids + "\n").output \
        .strip() == "I love my cat."


def test_a_lowercase_tokenizer_folds_case_of_every_text_it_reads(tmp_path):
    model = tmp_path / "tok.model"
    run_cli("tokenizer", "train", "--column", "2", "--vocab-size", "50", "--lowercase",
            "--out", model, TOY / "sentiment.tsv")
    upper, lower = (run_cli("tokenize", "-m", model, text).output
                    for text in ("I LOVE My Cat.", "i love my cat."))
    assert upper == lower and "▁" in lower


def test_config_file_supplies_options(tmp_path):
    config = tmp_path / "run.toml"
    config.write_text('epochs = 2\nhidden-dim = 8\nembed-dim = 8\nvocab-size = 40\n'
                      'max-tokens = 64\nquiet = true\n')
    out = tmp_path / "m.pt"
    data = TOY / "sentiment.tsv"
    run_cli("train", "classify", "--config", config, "--train", data, "--dev", data,
            "--out", out)
    summary = json.loads(run_cli("info", out, "--format", "json").output)
    assert summary["model_config"]["hidden_dim"] == 8
    assert summary["train_config"]["epochs"] == 2
    bad = tmp_path / "bad.toml"
    bad.write_text("epochz = 2\n")
    result = run_cli("train", "classify", "--config", bad, "--train", data, "--dev", data,
                     "--out", out, ok=False)
    assert result.exit_code != 0 and "unknown option(s): epochz" in result.output


def test_embed_jsonl_and_npy(toy_classifier, tmp_path):
    import numpy as np

    out = run_cli("embed", "-m", toy_classifier, "I love my cat.", "It rains.").output
    vectors = [json.loads(x)["vector"] for x in out.splitlines()]
    assert len(vectors) == 2 and len(vectors[0]) == 32
    npy = tmp_path / "v.npy"
    run_cli("embed", "-m", toy_classifier, "--out", npy, input="a\nb\nc\n")
    assert np.load(npy).shape == (3, 32)


def test_readme_has_exactly_two_fresh_machine_commands():
    readme = (ROOT / "README.md").read_text()
    assert readme.count("<!-- fresh-machine command -->") == 2


def all_commands(group=None, path=()):
    """Every command, lazily loaded ones included (list_commands, then get_command)."""
    import click

    from seqtool.cli import cli

    group = group or cli
    ctx = click.Context(group)
    names = group.list_commands(ctx)
    assert names, path
    for name in names:
        command = group.get_command(ctx, name)
        assert command is not None, (*path, name)
        if isinstance(command, click.Group):
            yield from all_commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_all_commands_are_reached():
    paths = {path for path, _ in all_commands()}
    assert paths == {("classify",), ("convert",), ("distill",), ("embed",), ("ensemble",),
                     ("generate",), ("info",), ("models",), ("plot",),
                     ("pretrain",), ("serve",), ("tokenize",), ("translate",),
                     ("tokenizer", "train"),
                     ("train", "classify"), ("train", "generate"), ("train", "translate"),
                     ("evaluate", "classify"), ("evaluate", "generate"),
                     ("evaluate", "translate")}


def test_every_option_is_described_and_old_spellings_are_hidden():
    import click

    for path, command in all_commands():
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, (path, param.opts)
    helps = {path: run_cli(*path, "--help").output for path, _ in all_commands()}
    assert "--attention-png" in helps[("translate",)]
    assert "--attention " not in helps[("translate",)] and "--json" not in helps[("info",)]
    assert "--max-tokens" not in helps[("generate",)] and "--data" not in helps[
        ("evaluate", "classify")]
    for path, help in helps.items():  # one meaning per name: input, training or output length
        assert "--max-length " not in help, path
    for path in [("classify",), ("embed",), ("translate",), ("evaluate", "classify"),
                 ("evaluate", "translate")]:
        assert "--max-input-length" in helps[path], path
    for path in [("train", "classify"), ("train", "generate"), ("train", "translate"),
                 ("pretrain",)]:
        assert "--max-train-length" in helps[path], path
    assert "--max-output-length" in helps[("generate",)]
    for path in [("classify",), ("embed",), ("generate",), ("translate",),
                 ("evaluate", "classify"), ("evaluate", "generate"), ("evaluate", "translate")]:
        assert "--device" in helps[path] and "-i, --" in helps[path], path
        assert "--format" in helps[path], path
    assert "SEQTOOL_CHECKPOINTS" in helps[("classify",)]


def test_old_spellings_still_work(toy_classifier, toy_generator):
    result = run_cli("evaluate", "classify", "-m", toy_classifier, "--data",
                     TOY / "sentiment.tsv", "--json")
    assert json.loads(result.stdout)["accuracy"] == 1.0
    assert result.stderr.splitlines() == ["seqtool: --data is now --input",
                                          "seqtool: --json is now --format json"]
    for old in ("--max-tokens", "--max-length"):
        result = run_cli("generate", "-m", toy_generator, "-l", "positive", old, "2",
                         "--format", "jsonl", "--temperature", "0")
        assert json.loads(result.stdout)["tokens"] <= 2
        assert result.stderr == f"seqtool: {old} is now --max-output-length\n"
    new = run_cli("classify", "-m", toy_classifier, "--max-input-length", "2", "I love my cat.")
    old = run_cli("classify", "-m", toy_classifier, "--max-length", "2", "I love my cat.")
    assert old.stdout == new.stdout
    assert old.stderr.startswith("seqtool: --max-length is now --max-input-length\n")
    assert "is now" not in new.stderr


@pytest.mark.parametrize("args", [
    ["generate", "-l", "positive", "--temperature", "-1"],
    ["generate", "-l", "positive", "--top-p", "0"],
    ["generate", "-l", "positive", "-n", "0"],
    ["generate", "-l", "positive", "--guidance", "-0.5"],
    ["generate", "-l", "positive", "--max-output-length", "0"],
    ["translate", "--beam", "0", "x"],
    ["translate", "--n-best", "0", "x"],
    ["translate", "--max-length-ratio", "0", "x"],
    ["classify", "--max-input-length", "-1", "x"],
    ["evaluate", "generate", "-i", "x.tsv", "--samples", "0"],
    ["evaluate", "generate", "-i", "x.tsv", "--temperature", "-1"],
])
def test_out_of_range_numbers_are_refused(args):
    result = run_cli(*args, ok=False)
    assert result.exit_code == 2 and "Invalid value" in result.output


def test_json_and_tsv_formats(toy_classifier, toy_generator):
    out = run_cli("classify", "-m", toy_classifier, "--format", "json",
                  input="I love my cat.\n\nIt rains.\n").output
    assert [r["text"] for r in json.loads(out)] == ["I love my cat.", "", "It rains."]
    assert json.loads(run_cli("classify", "-m", toy_classifier, "--format", "json",
                              input="").output) == []
    rows = run_cli("generate", "-m", toy_generator, "-l", "negative", "-n", "2",
                   "--format", "tsv").output.splitlines()
    assert len(rows) == 2 and all(r.split("\t")[0] == "negative" for r in rows)


def test_evaluate_generate_finds_the_training_file_of_its_command(toy_generator,
                                                                 toy_classifier, tmp_path):
    from seqtool.checkpoint import Checkpoint

    ckpt = Checkpoint.load(toy_generator)
    ckpt.meta["command"] = f"seqtool train generate --train {TOY / 'sentiment.tsv'} --dev x"
    model = tmp_path / "gen.pt"
    ckpt.save(model)
    args = ["evaluate", "generate", "-m", model, "-i", TOY / "sentiment.tsv", "--judge",
            toy_classifier, "--samples", "2"]
    report = json.loads(run_cli(*args, "--format", "json").output)
    assert report["samples"]["copied_from_train"] is not None
    ckpt.meta["command"] = "seqtool train generate --train gone.tsv --dev x"
    ckpt.save(model)
    text = run_cli(*args).output
    assert "copied n/a (training file gone.tsv" in " ".join(text.split())

    from seqtool.inference.evaluation import recorded_train_file

    meta = {"command": f"seqtool train generate --train {TOY / 'sentiment.tsv'} --dev x"}
    assert recorded_train_file(meta, toy_generator) == (TOY / "sentiment.tsv", "")
    relative = {"command": "seqtool train generate --train toy/sentiment.tsv --dev x"}
    found, _ = recorded_train_file(relative, TOY.parent / "checkpoints-like" / "m.pt")
    assert found == TOY.parent / "toy" / "sentiment.tsv"  # next to the folder above
    missing, why = recorded_train_file({"command": "seqtool train generate --train gone.tsv"},
                                       toy_generator)
    assert missing is None and "gone.tsv" in why and "--train" in why
    assert recorded_train_file({}, toy_generator)[0] is None


def test_shipped_models_by_name_and_by_label(tmp_path, toy_generator, toy_classifier,
                                             monkeypatch):
    """`-m NAME` finds a shipped model; `generate --label L` without -m takes the first
    shipped generator that knows L."""
    import shutil

    genres = tmp_path / "genres.tsv"
    genres.write_text("news\tThe jury said it.\nlore\tThe old tale goes on.\n")
    shipped = tmp_path / "checkpoints"
    shipped.mkdir()
    run_cli("train", "generate", "--train", genres, "--dev", genres, "--out",
            shipped / "brown-genre-lstm-generator.seqtool", *TINY_GENERATE[:1], "3",
            *TINY_GENERATE[2:])
    shutil.copy(toy_generator, shipped / "sentiment-lstm-generator.seqtool")
    shutil.copy(toy_classifier, shipped / "brown-genre-gru.seqtool")
    monkeypatch.setenv("SEQTOOL_CHECKPOINTS", str(shipped))
    news = json.loads(run_cli("generate", "--label", "news", "--format", "jsonl").output)
    assert news["label"] == "news"
    assert json.loads(run_cli("generate", "--label", "positive", "--format", "jsonl")
                      .output)["label"] == "positive"
    unknown = run_cli("generate", "--label", "poetry", ok=False)
    assert unknown.exit_code == 1 and "unknown label 'poetry'" in unknown.output
    named = run_cli("classify", "-m", "brown-genre", "--format", "jsonl", "I love my cat.")
    assert json.loads(named.output)["label"] in ("negative", "positive")
    missing = run_cli("translate", "-m", "bible-fr-en", "Dieu", ok=False)
    assert missing.exit_code == 1 and "SEQTOOL_CHECKPOINTS" in missing.output


def test_info_counts_a_tied_weight_once(toy_generator):
    from seqtool.checkpoint import Checkpoint
    from seqtool.nn.registry import build_model

    ckpt = Checkpoint.load(toy_generator)
    model = build_model("generate", ckpt.model_config)
    assert model.config.tie_embeddings
    info = json.loads(run_cli("info", toy_generator, "--format", "json").output)
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
