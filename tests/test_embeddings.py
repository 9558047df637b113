"""Word vectors (`--embeddings FILE`): pieces that spell a word start from its vector."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import TOY, run_cli, run_seqtool

from seqtool.checkpoint import Checkpoint
from seqtool.config import ClassifierConfig, GeneratorConfig
from seqtool.errors import SeqtoolError
from seqtool.nn.classifier import Classifier
from seqtool.nn.generator import Generator
from seqtool.text.tokenizer import Tokenizer
from seqtool.training.pretrained import init_word_vectors, read_word_vectors

PIECES = ["<pad>", "<unk>", "<start>", "<end>", "\u2581cat", "s", "\u2581Dog", "\u2581zzz"]


def write_vectors(path, rows: dict[str, list[float]], header: bool = True):
    lines = [f"{len(rows)} {len(next(iter(rows.values())))}"] if header else []
    lines += [" ".join([word, *map(str, values)]) for word, values in rows.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("header", [True, False])
def test_reads_only_the_wanted_words_with_or_without_a_header(tmp_path, header):
    path = write_vectors(tmp_path / "v.vec", {"cat": [1.0, 2.0], "dog": [3.0, -4.5],
                                              "bird": [0.0, 0.0]}, header)
    vectors = read_word_vectors(path, {"cat", "dog", "fish"})
    assert set(vectors) == {"cat", "dog"}
    assert vectors["dog"].tolist() == [3.0, -4.5]


@pytest.mark.parametrize("body, line, message", [
    ("cat 1 2\ndog 1 x\n", 2, "numbers"),
    ("cat 1 2\ndog 1 2 3\n", 2, "3 numbers where the file's first vector has 2"),
    ("cat 1 2\nd\xf6g 1 2\n", 2, "not UTF-8"),
])
def test_a_bad_line_is_named(tmp_path, body, line, message):
    path = tmp_path / "v.vec"
    path.write_bytes(body.encode("latin-1"))
    with pytest.raises(SeqtoolError, match=message) as error:
        read_word_vectors(path, {"cat", "dog"})
    assert error.value.line == line and error.value.path == str(path)


def test_pieces_take_the_vector_of_the_word_they_spell_in_every_member(tmp_path):
    rows = {"cat": [1.0, 2.0, 3.0], "s": [0.5, 0.5, 0.5], "dog": [-1.0, 0.0, 9.0]}
    path = write_vectors(tmp_path / "v.vec", rows)
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(len(PIECES), 2, embed_dim=3, hidden_dim=4, ensemble=2))
    names, found = init_word_vectors(model, PIECES, path)
    assert names == {"members.0.embedding.weight", "members.1.embedding.weight"}
    assert found == 3  # "▁cat", "s" and "▁Dog" (by its lowercase form); "▁zzz" is no word
    for member in model.members:
        table = member.embedding.weight
        assert table[4].tolist() == rows["cat"] and table[5].tolist() == rows["s"]
        assert table[6].tolist() == rows["dog"]
        assert (table[0] == 0).all()  # padding stays zero
        assert table[7].abs().max() < 10  # a random row on the vectors' scale, not N(0, 1) * 10
    # The members still differ where no vector fixed them.
    assert not torch.equal(model.members[0].embedding.weight[7],
                           model.members[1].embedding.weight[7])


def test_a_tied_generator_predicts_through_the_same_vectors(tmp_path):
    path = write_vectors(tmp_path / "v.vec", {"cat": [1.0, 2.0], "dog": [3.0, 4.0]})
    model = Generator(GeneratorConfig(len(PIECES), 2, embed_dim=2, hidden_dim=2))
    names, found = init_word_vectors(model, PIECES, path)
    assert names == {"embedding.weight"} and found == 2
    assert model.output.weight[4].tolist() == [1.0, 2.0]


@pytest.mark.parametrize("rows, message", [
    ({"cat": [1.0, 2.0]}, "the vectors have 2 dimensions, the model's embeddings 3 "
                          r"\(pass --embed-dim 2\)"),
    ({"horse": [1.0, 2.0, 3.0]}, "no piece of the tokenizer is a word of this file"),
])
def test_vectors_that_do_not_fit_are_one_error(tmp_path, rows, message):
    path = write_vectors(tmp_path / "v.vec", rows)
    model = Classifier(ClassifierConfig(len(PIECES), 2, embed_dim=3, hidden_dim=4))
    with pytest.raises(SeqtoolError, match=message):
        init_word_vectors(model, PIECES, path)


def toy_vectors(tmp_path, dim: int = 16):
    """A vector for every word of the toy corpus, lowercased, as GloVe's are."""
    words = sorted({w.strip(".").lower() for line in (TOY / "sentiment.tsv").read_text()
                    .splitlines() for w in line.split("\t")[1].split()})
    generator = torch.Generator().manual_seed(1)
    return write_vectors(tmp_path / "toy.vec", {
        w: torch.randn(dim, generator=generator).tolist() for w in words})


def test_train_classify_with_frozen_vectors_keeps_them(tmp_path):
    """End to end: with --pretrained-lr-scale 0 the rows from the file survive training
    unchanged, and the classifier still learns its own layers."""
    vectors = toy_vectors(tmp_path)
    out = tmp_path / "c.pt"
    result = run_cli("train", "classify", "--train", TOY / "sentiment.tsv", "--dev",
                     TOY / "sentiment.tsv", "--out", out, "--embeddings", vectors,
                     "--embed-dim", "16", "--hidden-dim", "8", "--vocab-size", "60",
                     "--lowercase", "--epochs", "3", "--max-tokens", "64", "--warmup-steps",
                     "0", "--pretrained-lr-scale", "0")
    model = Checkpoint.load(out)
    tokenizer = Tokenizer(model.tokenizers["src"])
    pieces = tokenizer.id_to_piece(range(tokenizer.vocab_size))
    table = model.weights["members.0.embedding.weight"]
    expected = read_word_vectors(vectors, {p.lstrip("\u2581") for p in pieces})
    matched = [i for i, p in enumerate(pieces) if p.lstrip("\u2581") in expected]
    assert len(matched) >= 3
    assert f"{len(matched)} of {len(pieces)} pieces are words" in result.output
    for i in matched:
        assert torch.equal(table[i], expected[pieces[i].lstrip("\u2581")]), pieces[i]


def test_embeddings_with_init_or_a_bad_file_is_one_line(tmp_path, toy_generator):
    common = ["--train", TOY / "sentiment.tsv", "--dev", TOY / "sentiment.tsv", "--quiet",
              "--vocab-size", "60"]
    both = run_seqtool("train", "generate", *common, "--out", tmp_path / "g.pt", "--init",
                       toy_generator, "--embeddings", toy_vectors(tmp_path))
    bad = tmp_path / "bad.vec"
    bad.write_text("a 1 2\ne 1 two\n")  # every character is a piece
    broken = run_seqtool("train", "classify", *common, "--out", tmp_path / "c.pt",
                         "--embed-dim", "2", "--embeddings", bad)
    for result, message in ((both, "--embeddings and --init"), (broken, f"{bad}:2: ")):
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert result.stderr.strip().count("\n") == 0
    assert not (tmp_path / "c.pt").exists()


def test_pretrain_starts_its_embeddings_from_vectors(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("".join(line.split("\t")[1].lower() + "\n" for line in
                            (TOY / "sentiment.tsv").read_text().splitlines()))
    out = tmp_path / "lm.pt"
    result = run_cli("pretrain", "--train", text, "--dev", text, "--out", out, "--embeddings",
                     toy_vectors(tmp_path), "--embed-dim", "16", "--hidden-dim", "8",
                     "--vocab-size", "60", "--lowercase", "--epochs", "2", "--max-tokens",
                     "200")
    found = re.search(r"(\d+) of \d+ pieces are words with a vector", result.output)
    assert found and int(found.group(1)) >= 3
    assert Checkpoint.load(out).task == "pretrain"


@pytest.mark.parametrize("task", ["classify", "pretrain"])
def test_a_run_from_vectors_resumes_exactly(tmp_path, task):
    """The vectors' tables keep their own rate (a second optimizer group) after --resume, so
    the resumed run ends on the very weights of an uninterrupted one."""
    from seqtool.training.resume import last_path

    data = TOY / "sentiment.tsv"
    if task == "pretrain":
        data = tmp_path / "text.txt"
        data.write_text("".join(line.split("\t")[1].lower() + "\n" for line in
                                (TOY / "sentiment.tsv").read_text().splitlines()))
    command = ["train", "classify", "--pretrained-lr-scale", "0.5"] if task == "classify" \
        else ["pretrain"]
    options = [*command, "--train", data, "--dev", data, "--embeddings", toy_vectors(tmp_path),
               "--embed-dim", "16", "--hidden-dim", "8", "--vocab-size", "60", "--lowercase",
               "--epochs", "2", "--max-tokens", "64", "--warmup-steps", "0", "--quiet"]
    run_cli(*options, "--out", tmp_path / "whole.pt")
    run_cli(*options, "--out", tmp_path / "part.pt", "--max-steps", "3")
    run_cli(*options, "--out", tmp_path / "part.pt", "--resume")
    whole = Checkpoint.load(last_path(tmp_path / "whole.pt")).weights
    resumed = Checkpoint.load(last_path(tmp_path / "part.pt")).weights
    assert all(torch.equal(resumed[k], whole[k]) for k in whole)
