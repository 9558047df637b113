"""Readers and batching: good input parses, bad input names its file and line."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from seqtool.errors import SeqtoolError
from seqtool.text.data import read_labeled, read_parallel, token_budget_batches


def write(tmp_path, name, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


def test_tsv_with_crlf_and_bom(tmp_path):
    p = write(tmp_path, "a.tsv", "\ufeffpos\tI love my cat.\r\nneg\tIt rains.\r\n".encode())
    records = list(read_labeled(p))
    assert [(r.label, r.text, r.line) for r in records] == [
        ("pos", "I love my cat.", 1), ("neg", "It rains.", 2)]


def test_jsonl(tmp_path):
    p = write(tmp_path, "a.jsonl", b'{"label": "pos", "text": "ok"}\n')
    assert list(read_labeled(p))[0].label == "pos"


@pytest.mark.parametrize("data, line, problem", [
    (b"pos\tfine\nneg\xff\xfe broken\n", 2, "not valid UTF-8"),
    (b"pos\tfine\nno tab here\n", 2, "missing tab"),
    (b"pos\tfine\nneg\t   \n", 2, "empty text"),
    (b"", None, "file is empty"),
])
def test_bad_tsv_names_file_and_line(tmp_path, data, line, problem):
    p = write(tmp_path, "bad.tsv", data)
    with pytest.raises(SeqtoolError) as e:
        list(read_labeled(p))
    message = str(e.value)
    assert problem in message
    assert message.startswith(f"{p}:{line}:" if line else f"{p}:")


def test_bad_jsonl(tmp_path):
    p = write(tmp_path, "bad.jsonl", b'{"label": "pos", "text": "ok"}\n{oops\n')
    with pytest.raises(SeqtoolError, match=r"bad.jsonl:2: invalid JSON"):
        list(read_labeled(p))


def test_parallel_files_of_different_length(tmp_path):
    src = write(tmp_path, "a.fr", b"un\ndeux\ntrois\n")
    tgt = write(tmp_path, "a.en", b"one\ntwo\n")
    with pytest.raises(SeqtoolError, match=r"a.en:3: parallel files differ in length"):
        read_parallel(src, tgt)


def test_parallel_tsv(tmp_path):
    p = write(tmp_path, "p.tsv", b"un\tone\r\ndeux\ttwo\n")
    assert [(x.src, x.tgt) for x in read_parallel(p)] == [("un", "one"), ("deux", "two")]


@given(st.lists(st.integers(1, 60), min_size=1, max_size=300), st.integers(64, 2000))
def test_token_budget_batches_cover_every_example_once(lengths, budget):
    batches = token_budget_batches(lengths, budget, random.Random(0))
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for b in batches:  # over budget only when one example alone exceeds it
        assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= budget
