"""Reading the user's files (issue 30, item 3): --column NAME|N over TSV, CSV and JSONL,
headers detected or declared, one output per row; fastText's __label__ lines for training."""

from __future__ import annotations

import json

import pytest

from seqtool.errors import SeqtoolError
from seqtool.text.columns import Columns
from seqtool.text.data import read_labeled, read_text_chunks
from tests.conftest import run_cli, run_seqtool


def texts(path, column=None, header=None, size=512):
    return [t for chunk in read_text_chunks(None, str(path), size, "strict",
                                            Columns(column, header)) for t in chunk]


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_column_by_name_by_number_and_the_header(tmp_path):
    path = write(tmp_path, "reviews.csv",
                 'id,review,stars\n1,"A gorgeous, witty film.",5\n2,"Dull,\nlong.",1\n\n3,,2\n')
    want = ["A gorgeous, witty film.", "Dull, long.", "", ""]  # a row each, header left out
    assert texts(path, "review") == want
    assert texts(path, "2", header=True) == want
    assert texts(path, "2") == ["review", *want]  # a number: a header only when declared
    assert texts(path, "review", size=1) == want  # rows spanning chunks of lines


def test_the_text_column_is_found_by_its_header_or_is_the_only_one(tmp_path):
    assert texts(write(tmp_path, "a.tsv", "label\ttext\npos\tA fine film.\n")) == [
        "A fine film."]
    assert texts(write(tmp_path, "b.csv", '"A film, fine."\n')) == ["A film, fine."]
    assert texts(write(tmp_path, "c.csv", "text\nA film.\n")) == ["A film."]
    assert texts(write(tmp_path, "c.csv", "text\nA film.\n"), header=False) == [
        "text", "A film."]
    with pytest.raises(SeqtoolError, match=r"a.tsv:1: 2 tab-separated columns and none named "
                                           r"'text': name the text's with --column NAME\|N"):
        texts(write(tmp_path, "a.tsv", "pos\tA fine film.\n"))


def test_jsonl_reads_the_text_key_or_the_named_one(tmp_path):
    path = write(tmp_path, "x.jsonl", '{"text": "A fine film.", "review": "Bad."}\n\n'
                 '"Just a string."\n')
    assert texts(path) == ["A fine film.", "", "Just a string."]
    path = write(tmp_path, "y.jsonl", '{"review": "Bad.\\nVery."}\n{"review": null}\n')
    assert texts(path, "review") == ["Bad. Very.", ""]
    assert texts(write(tmp_path, "z.jsonl", '["a", "b"]\n'), "2") == ["b"]


def test_stdin_and_other_files_are_jsonl_or_tsv_when_a_column_is_named(tmp_path):
    assert texts(write(tmp_path, "x.txt", '{"review": "Fine."}\n'), "review") == ["Fine."]
    assert texts(write(tmp_path, "y.txt", "a\tb, c\n"), "2") == ["b, c"]
    assert texts(write(tmp_path, "z.txt", "a\tb, c\n")) == ["a\tb, c"]  # no column: lines


@pytest.mark.parametrize("name, text, column, problem", [
    ("a.csv", "x,y\n1\n", "2", r"a.csv:2: 1 field; the column is number 2"),
    ("b.csv", "x,y\n1,2\n", "review", r"b.csv:1: no column 'review' in the header"),
    ("c.csv", 'x,y\n1,"open\n2,3\n', "y", r"c.csv:2: a quoted field opened in this row never"),
    ("d.jsonl", '{"text": "a"}\n{oops\n', None, r"d.jsonl:2: invalid JSON"),
    ("e.jsonl", '{"review": "a"}\n', None, r"e.jsonl:1: no key 'text' in this object \(or "),
    ("f.jsonl", '{"text": 3}\n', None, r"f.jsonl:1: the text is int, not a string"),
    ("g.jsonl", '{"text": "a"}\n', "1", r"g.jsonl:1: a JSON object: name its key"),
])
def test_a_bad_row_names_its_file_and_line(tmp_path, name, text, column, problem):
    with pytest.raises(SeqtoolError, match=problem):
        texts(write(tmp_path, name, text), column)


def test_options_that_contradict_each_other_fail_at_once(tmp_path):
    with pytest.raises(SeqtoolError, match="--no-header says there is none"):
        texts(write(tmp_path, "a.csv", "x\n"), "review", header=False)
    with pytest.raises(SeqtoolError, match="texts given as arguments are read whole"):
        list(read_text_chunks(["a text"], None, 512, "strict", Columns("2")))


def test_training_reads_fasttext_lines(tmp_path):
    path = write(tmp_path, "ft.txt", "__label__positive A fine film.\n"
                 "__label__negative\tDull.\nnegative\tBad.\n")
    assert [(r.label, r.text) for r in read_labeled(path)] == [
        ("positive", "A fine film."), ("negative", "Dull."), ("negative", "Bad.")]
    with pytest.raises(SeqtoolError, match=r"ft.txt:1: two labels \(__label__a, __label__b\)"):
        list(read_labeled(write(tmp_path, "ft.txt", "__label__a __label__b text\n")))


def test_commands_answer_one_output_per_row(tmp_path, toy_classifier, toy_translator,
                                            toy_generator):
    csv_file = write(tmp_path, "reviews.csv",
                     'id,review\n1,"I love my cat, truly."\n2,"It rains\nall day."\n\n')
    rows = [json.loads(line) for line in run_cli(
        "classify", "-m", toy_classifier, "-i", csv_file, "--column", "review",
        "--format", "jsonl").output.splitlines()]
    assert [r["text"] for r in rows] == ["I love my cat, truly.", "It rains all day.", ""]
    assert rows[0]["label"] is not None and rows[2]["label"] is None
    assert run_cli("classify", "-m", toy_classifier, "-i", csv_file, "--column", "2",
                   "--header", "--format", "jsonl").output.splitlines() == [
        json.dumps(r, ensure_ascii=False) for r in rows]
    embedded = run_cli("embed", "-m", toy_classifier, "-i", csv_file, "--column", "review")
    assert [json.loads(line)["text"] for line in embedded.output.splitlines()] == [
        r["text"] for r in rows]
    jsonl = write(tmp_path, "x.jsonl", '{"text": "the house", "id": 1}\n{"text": "a cat"}\n')
    translated = run_cli("translate", "-m", toy_translator, "-i", jsonl, "--format", "jsonl")
    assert [json.loads(line)["source"] for line in translated.output.splitlines()] == [
        "the house", "a cat"]
    prompts = write(tmp_path, "p.tsv", "id\tprompt\n1\tI love\n")
    samples = run_cli("generate", "-m", toy_generator, "--label", "positive", "-n", "2",
                      "-i", prompts, "--column", "prompt", "--format", "jsonl")
    assert all(json.loads(line)["text"].lower().startswith("i love")
               for line in samples.output.splitlines())


def test_a_bad_row_stops_after_the_rows_before_it(tmp_path, toy_classifier):
    path = write(tmp_path, "x.jsonl", '{"text": "I love my cat."}\n{"text": "Rain."}\n{oops\n')
    result = run_seqtool("classify", "-m", toy_classifier, "-i", path, "--format", "tsv")
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: {path}:3: invalid JSON: Expecting property name " \
                                    "enclosed in double quotes (JSONL: one JSON value per line)"
    assert [line.split("\t")[2] for line in result.stdout.splitlines()] == [
        "I love my cat.", "Rain."]


def test_column_beside_texts_is_a_usage_error(toy_classifier):
    result = run_cli("classify", "-m", toy_classifier, "--column", "2", "a text", ok=False)
    assert result.exit_code == 2 and "not TEXTS" in result.output


def test_a_text_that_names_a_file_is_read_as_text_with_a_warning(tmp_path, toy_classifier):
    path = write(tmp_path, "reviews.csv", "text\nI love my cat.\n")
    result = run_cli("classify", "-m", toy_classifier, "--format", "tsv", str(path))
    assert f"'{path}' is read as a text; to read the file, give -i {path}" in result.output
    assert result.output.rstrip().endswith(f"\t{path}")
