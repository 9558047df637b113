"""The public API (`seqtool.load`, `seqtool.evaluate`): the same answers as the command line,
and `import seqtool` stays light."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import seqtool
from seqtool.results import ClassifyResult, GenerateResult, TranslateResult
from tests.conftest import TOY, run_cli


def test_import_seqtool_does_not_import_torch():
    code = ("import sys, seqtool; assert callable(seqtool.load); "
            "assert seqtool.ClassifyResult.__name__ == 'ClassifyResult'; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def test_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError):
        seqtool.no_such_thing  # noqa: B018


def test_classify_answers_as_the_cli(toy_classifier):
    texts = ["I love my cat.", "It rains all day.", ""]
    results = seqtool.load("classify", toy_classifier, device="cpu").classify(texts)
    assert all(isinstance(r, ClassifyResult) for r in results)
    cli = run_cli("classify", "-m", toy_classifier, "--format", "jsonl", *texts).output
    assert [json.loads(line) for line in cli.splitlines()] == [r.to_record() for r in results]
    assert [r.text for r in results] == texts
    assert all(abs(sum(r.probabilities.values()) - 1) < 1e-4 for r in results[:2])
    assert results[2].label is None and results[2].probabilities == {}  # an empty line


def test_embed_answers_as_the_cli(toy_classifier):
    texts = ["I love my cat.", "It rains."]
    vectors = seqtool.load("classify", toy_classifier, device="cpu").embed(texts)
    cli = run_cli("embed", "-m", toy_classifier, *texts).output
    expected = [json.loads(line)["vector"] for line in cli.splitlines()]
    assert vectors.shape == (2, len(expected[0]))
    assert [[round(x, 5) for x in v.tolist()] for v in vectors] == expected
    assert seqtool.load("classify", toy_classifier).embed([]).shape == (0, len(expected[0]))


def test_generate_answers_as_the_cli_and_repeats_with_a_seed(toy_generator):
    generator = seqtool.load("generate", toy_generator, device="cpu")
    samples = generator.generate("positive", n=4, seed=3, temperature=1.0)
    assert all(isinstance(s, GenerateResult) for s in samples) and len(samples) == 4
    cli = run_cli("generate", "-m", toy_generator, "--label", "positive", "-n", "4",
                  "--seed", "3", "--temperature", "1.0", "--format", "jsonl").output
    assert [json.loads(line) for line in cli.splitlines()] == [s.to_record() for s in samples]
    assert generator.generate("positive", n=4, seed=3, temperature=1.0) == samples


def test_generate_refuses_an_unknown_label(toy_generator):
    with pytest.raises(seqtool.SeqtoolError, match="unknown label"):
        seqtool.load("generate", toy_generator).generate("no-such-class")


def test_translate_answers_as_the_cli(toy_translator):
    texts = ["I love my cat.", "", "the dog"]
    translator = seqtool.load("translate", toy_translator, device="cpu")
    results = translator.translate(texts, beam=3, n_best=2)
    assert all(isinstance(r, TranslateResult) for r in results)
    cli = run_cli("translate", "-m", toy_translator, "--beam", "3", "--n-best", "2",
                  "--format", "jsonl", *texts).output
    assert [json.loads(line) for line in cli.splitlines()] == [r.to_record() for r in results]
    assert results[1].translation == "" and results[0].attention is None


def test_translate_attention_rows_are_distributions_over_the_source(toy_translator):
    [result] = seqtool.load("translate", toy_translator).translate(["I love my cat."],
                                                                   attention=True)
    att = result.attention
    assert att is not None and len(att.weights) == len(att.target_pieces) > 0
    assert all(len(row) == len(att.source_pieces) for row in att.weights)
    # The end-of-sentence step attends too, so a row may sum a little under one once cut.
    assert all(0.5 < sum(row) <= 1.0 + 1e-5 for row in att.weights)
    assert "attention" in result.to_record(attention=True)
    assert "attention" not in result.to_record()


def test_n_best_beyond_beam_is_refused(toy_translator):
    with pytest.raises(ValueError, match="n_best"):
        seqtool.load("translate", toy_translator).translate(["a"], beam=2, n_best=3)


def test_a_model_of_another_task_is_refused(toy_classifier):
    with pytest.raises(seqtool.SeqtoolError, match="not a translate model"):
        seqtool.load("translate", toy_classifier)
    with pytest.raises(seqtool.SeqtoolError, match="unknown task"):
        seqtool.load("summarize")


def test_evaluate_reports_as_the_cli(toy_classifier):
    data = TOY / "sentiment.tsv"
    report = seqtool.evaluate("classify", data, toy_classifier, device="cpu")
    cli = json.loads(run_cli("evaluate", "classify", "-m", toy_classifier, "-i", data,
                             "--format", "json").output)
    for key in ("accuracy", "macro_f1", "confusion", "labels", "examples"):
        assert report[key] == cli[key]


@pytest.mark.parametrize("path", [("train", "classify"), ("train", "generate"),
                                  ("train", "translate"), ("pretrain",)])
def test_train_takes_every_option_of_the_command_with_its_default(path):
    """seqtool.train and `seqtool train TASK` have one set of options and one set of
    defaults: the API's come from the configurations, the CLI's were generated from them."""
    import click

    from seqtool.cli import cli
    from seqtool.training.run import options_for

    ctx, command = click.Context(cli), cli
    for name in path:
        command = command.get_command(ctx, name)
    params = {p.name: (None if p.default is None or "UNSET" in repr(p.default) else p.default)
              for p in command.params if p.expose_value}
    ours = options_for(path[-1])
    assert set(params) == set(ours)
    for name, default in params.items():
        assert default == ours[name] or (default is None and ours[name] in (None, False, ())), \
            name


def test_train_refuses_unknown_options_and_missing_files(tmp_path):
    with pytest.raises(seqtool.SeqtoolError, match="unknown option.*epoch"):
        seqtool.train("classify", train="a", dev="b", out=str(tmp_path / "m.pt"), epoch=3)
    with pytest.raises(seqtool.SeqtoolError, match="give dev=FILE"):
        seqtool.train("classify", train="a", out=str(tmp_path / "m.pt"))


def test_train_runs_what_the_cli_runs(tmp_path):
    """The same options through the API and the CLI train the same weights."""
    from seqtool.checkpoint import Checkpoint
    from tests.conftest import TINY_CLASSIFY

    data = TOY / "sentiment.tsv"
    run_cli("train", "classify", "--train", data, "--dev", data, "--out", tmp_path / "cli.pt",
            *TINY_CLASSIFY, "--epochs", "5", "--embed-dim", "8")
    trained = seqtool.train("classify", train=str(data), dev=str(data),
                            out=str(tmp_path / "api.pt"), epochs=5, vocab_size=60, embed_dim=8,
                            hidden_dim=16, max_tokens=64, lr=0.01, warmup_steps=0,
                            schedule="constant", patience=1000, quiet=True)
    assert trained.summary["steps"] > 0 and trained.path == str(tmp_path / "api.pt")
    a, b = Checkpoint.load(tmp_path / "cli.pt"), Checkpoint.load(tmp_path / "api.pt")
    assert a.model_config == b.model_config
    assert all(a.weights[k].equal(b.weights[k]) for k in a.weights)
    assert b.meta["command"].startswith("seqtool.train('classify'")
