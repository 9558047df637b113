"""No input or output can hurt the user: bad bytes, edited checkpoints, unwritable paths.

In-process (CliRunner) so that the fuzzing stays fast; test_pipes.py runs real processes.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import TOY, run_cli
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from seqtool.checkpoint import (
    Checkpoint,
    atomic_write_bytes,
    check_writable,
    refuse_overwriting_input,
    remove_stale_temp_files,
)
from seqtool.cli import cli
from seqtool.errors import SeqtoolError

FUZZ = settings(max_examples=12, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def invoke(*args, input: bytes | str | None = None):
    """Run the CLI in-process without letting exceptions through the runner unnoticed."""
    return CliRunner().invoke(cli, [str(a) for a in args], input=input)


def assert_clean_failure(result, *names: object) -> str:
    """Exit 1 with one `Error:` line (naming `names`), never an exception."""
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    assert result.exit_code == 1, result.output
    errors = [x for x in result.output.splitlines() if x.startswith("Error: ")]
    assert len(errors) == 1, result.output
    for name in names:
        assert str(name) in errors[0]
    return errors[0]


# ----------------------------------------------------------------------------- dirty input


def test_errors_skip_and_replace(toy_classifier):
    data = b"I love my cat.\nIt \xff rains.\nCats and dogs are not allowed.\n"
    skip = run_cli("classify", "-m", toy_classifier, "--errors", "skip", input=data)
    assert len(skip.stdout.splitlines()) == 2
    assert skip.stderr.count("Warning:") == 1 and ":2:" in skip.stderr
    rows = run_cli("classify", "-m", toy_classifier, "--errors", "replace", "--format", "tsv",
                   input=data).stdout.splitlines()
    assert len(rows) == 3 and rows[1].split("\t")[2] == "It \ufffd rains."


@FUZZ
@given(st.lists(st.binary(max_size=40), min_size=1, max_size=4),
       st.sampled_from(["classify", "translate", "tokenize", "embed"]),
       st.sampled_from(["strict", "skip", "replace"]))
@example([b"I love my cat.", b"It \xff rains."], "classify", "strict")  # both outcomes,
@example([b"I love my cat.", b"It \xff rains."], "embed", "skip")  # on every run
@example([b"I love my cat.", b"It \xff rains."], "translate", "replace")
def test_random_bytes_never_crash(toy_classifier, toy_translator, lines, command, errors):
    """--errors skip and replace read any bytes; strict refuses exactly the input that is not
    UTF-8, in one line. Never a traceback."""
    model = toy_translator if command == "translate" else toy_classifier
    data = b"\n".join(lines) + b"\n"
    result = invoke(command, "-m", model, "--errors", errors, input=data)
    try:
        data.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    if valid or errors != "strict":
        assert result.exit_code == 0 and result.exception is None, result.output
    else:
        assert_clean_failure(result, "not valid UTF-8")


def test_long_input_is_cut_with_one_warning(toy_classifier, toy_translator):
    from seqtool.inference.predict import load
    from seqtool.text.tokenizer import cap_characters

    tok = load(toy_classifier, "classify").tokenizer
    text = "I love my cat. " * 200
    ids = tok.encode_batch([text, "It rains.", text], max_length=20)
    assert [len(x) for x in ids] == [20, len(tok.encode("It rains.")), 20]
    assert ids[0] == tok.encode(text)[:20]  # cutting characters first changes no kept piece
    assert len(cap_characters("x" * 1_000_000, 512)) < 10_000
    result = run_cli("translate", "-m", toy_translator, "--max-input-length", "5", text, text)
    assert result.stderr.count("Warning:") == 1 and "5 pieces" in result.stderr
    assert len(result.stdout.splitlines()) == 2


# ----------------------------------------------------------------------------- checkpoints


def payload_of(path: Path) -> dict:
    return torch.load(path, weights_only=True)


def damage(payload: dict, how: str, junk: str) -> dict:
    p = dict(payload)
    if how == "drop":
        p.pop(junk if junk in p else "model_config")
    elif how == "bad json":
        p[junk if junk in ("model_config", "labels", "meta") else "meta"] = "{" + junk
    elif how == "wrong json type":
        p["model_config"] = json.dumps([junk])
    elif how == "config value":
        config = json.loads(p["model_config"])
        key = sorted(config)[len(junk) % len(config)]
        config[key] = junk if len(junk) % 2 else -len(junk)
        p["model_config"] = json.dumps(config)
    elif how == "tokenizer bytes":
        p["tokenizers"] = {"src": torch.frombuffer(bytearray(junk.encode() + b"\x00x"),
                                                   dtype=torch.uint8)}
    elif how == "wrong size":
        weights = dict(p["weights"])
        name = sorted(weights)[len(junk) % len(weights)]
        weights[name] = torch.zeros(3, 1 + len(junk))
        p["weights"] = weights
    elif how == "drop weight":
        weights = dict(p["weights"])
        weights.pop(sorted(weights)[len(junk) % len(weights)])
        p["weights"] = weights
    elif how == "weights not tensors":
        p["weights"] = {"x": junk}
    elif how == "task":
        p["task"] = junk
    return p


DAMAGES = ["drop", "bad json", "wrong json type", "config value", "tokenizer bytes",
           "wrong size", "drop weight", "weights not tensors", "task"]


def breaks_the_model(how: str, junk: str, payload: dict) -> bool:
    """Whether the edit leaves no model that `classify` (which loads the weights) may answer
    with. Other edits may be harmless: a dropped 'digest' or 'meta', a value set to what it
    was, or a command (`info`, `tokenize`) that reads no weights."""
    return how in ("wrong json type", "tokenizer bytes", "wrong size", "drop weight",
                   "weights not tensors") or (how == "task" and junk != "classify") or \
        (how == "drop" and junk not in payload)  # drops model_config


@FUZZ
@given(st.sampled_from(DAMAGES), st.text(max_size=12))
@example("drop", "")  # every kind of edit, on every run
@example("bad json", "")
@example("wrong json type", "")
@example("config value", "x")
@example("tokenizer bytes", "")
@example("wrong size", "")
@example("drop weight", "")
@example("weights not tensors", "")
@example("task", "")
def test_edited_checkpoints_fail_in_one_line(toy_classifier, how, junk):
    with tempfile.TemporaryDirectory() as folder:
        edited = Path(folder) / "edited.pt"
        payload = payload_of(toy_classifier)
        torch.save(damage(payload, how, junk), edited)
        for args in (["classify", "-m", edited, "I love my cat."], ["info", edited],
                     ["tokenize", "-m", edited, "I love my cat."]):
            result = invoke(*args)
            if result.exit_code != 0 or (args[0] == "classify" and
                                         breaks_the_model(how, junk, payload)):
                assert_clean_failure(result, edited)


def stored_tensor_bytes(path: Path) -> list[tuple[int, int]]:
    """(start, length) in the file of each tensor's stored bytes (weights and tokenizers):
    torch.save writes one uncompressed zip record per storage, `archive/data/N`."""
    import zipfile

    spans = []
    with zipfile.ZipFile(path) as archive, open(path, "rb") as f:
        for info in archive.infolist():
            if "/data/" in info.filename and info.file_size:
                f.seek(info.header_offset + 26)
                name_length, extra_length = (int.from_bytes(f.read(2), "little")
                                             for _ in range(2))
                spans.append((info.header_offset + 30 + name_length + extra_length,
                              info.file_size))
    return spans


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1,
                max_size=8))
def test_corrupted_checkpoint_bytes_fail_in_one_line(toy_classifier, flips):
    """Changed bytes of any stored tensor (a weight or the tokenizer) make loading fail, in
    one line: a damaged model must not answer."""
    data = bytearray(toy_classifier.read_bytes())
    spans = stored_tensor_bytes(toy_classifier)
    changes: dict[int, int] = {}
    for at, change in flips:
        start, length = spans[at % len(spans)]
        changes.setdefault(start + at % length, change)  # each byte changed once
    for position, change in changes.items():
        data[position] ^= change  # change != 0: the byte differs
    with tempfile.TemporaryDirectory() as folder:
        broken = Path(folder) / "broken.pt"
        broken.write_bytes(bytes(data))
        assert_clean_failure(invoke("classify", "-m", broken, "I love my cat."), broken)


def test_info_on_a_config_file_is_one_line(tmp_path):
    toml = tmp_path / "run.toml"
    toml.write_text("epochs = 2\n")
    assert "not a seqtool checkpoint" in assert_clean_failure(invoke("info", toml), toml)


def test_checkpoint_validation_names_the_problem(toy_classifier, tmp_path):
    edited = tmp_path / "edited.pt"
    torch.save(damage(payload_of(toy_classifier), "drop", "labels"), edited)
    with pytest.raises(SeqtoolError, match="damaged checkpoint: missing 'labels'"):
        Checkpoint.load(edited)
    torch.save(damage(payload_of(toy_classifier), "wrong size", ""), edited)
    line = assert_clean_failure(invoke("classify", "-m", edited, "hi"), edited)
    assert "digest differs" in line  # an edit is found before anything is built
    signed = Checkpoint.load(toy_classifier)  # the same damage, written with its digest
    name = next(k for k, v in signed.weights.items() if v.dim() == 2)
    signed.weights[name] = signed.weights[name][:-1]
    for backend in ("torch", "numpy"):
        for out in (tmp_path / "signed.pt", tmp_path / "signed.seqtool"):
            signed.save(out)
            line = assert_clean_failure(
                invoke("classify", "-m", out, "--backend", backend, "hi"), out)
            assert "weights do not fit its model configuration" in line


# ----------------------------------------------------------------------------- outputs


def unwritable_paths(tmp: Path) -> dict[str, Path]:
    blocker = tmp / "file"
    blocker.write_text("x")
    folder = tmp / "folder"
    folder.mkdir(exist_ok=True)
    return {"below a file": blocker / "out", "deep below a file": blocker / "a" / "out",
            "a folder": folder, "a device": Path("/dev/null")}


@FUZZ
@given(st.sampled_from(["below a file", "deep below a file", "a folder", "a device"]),
       st.sampled_from(["embed", "evaluate translate", "tokenizer train", "translate",
                        "train classify"]))
def test_unwritable_outputs_fail_in_one_line(toy_classifier, toy_translator, where, command):
    with tempfile.TemporaryDirectory() as folder:
        out = unwritable_paths(Path(folder))[where]
        pair = Path(folder) / "s.en"
        pair.write_text("I love my cat.\n")
        args = {
            "embed": ["embed", "-m", toy_classifier, "--out", out, "hi"],
            "evaluate translate": ["evaluate", "translate", "-m", toy_translator, "--src", pair,
                                   "--ref", pair, "--out", out],
            "tokenizer train": ["tokenizer", "train", TOY / "sentiment.tsv", "--out", out],
            "translate": ["translate", "-m", toy_translator, "--attention-png", out, "hi"],
            "train classify": ["train", "classify", "--train", TOY / "sentiment.tsv", "--dev",
                               TOY / "sentiment.tsv", "--out", out, "--epochs", "1"],
        }[command]
        result = invoke(*args)
        if where == "a folder" and result.exit_code == 2:
            return  # click refuses a folder for a file option before we run: also one line
        if where == "a device" and command in ("embed", "evaluate translate", "translate"):
            assert result.exit_code == 0, result.output  # results are written to a device
            return  # in place (test_outputs.py); a checkpoint is not (it has siblings)
        assert_clean_failure(result, out)


def test_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    target = tmp_path / "m.pt"
    target.write_bytes(b"old")

    def full(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(SeqtoolError, match="No space left on device") as e:
        atomic_write_bytes(target, b"new")
    assert str(target) in str(e.value)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["m.pt"]  # no temp file left behind


def test_check_writable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    for bad in (blocker / "x.pt", blocker / "a" / "x.pt", tmp_path, Path("/dev/null")):
        with pytest.raises(SeqtoolError) as e:
            check_writable(bad)
        assert str(bad) in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(SeqtoolError, match="no such folder") as e:  # a typo makes no folder
        check_writable(tmp_path / "new" / "folder" / "x.pt")
    assert str(tmp_path / "new" / "folder") in str(e.value)
    assert not (tmp_path / "new").exists()
    check_writable(Path("/dev/null"), special_ok=True)  # results may go to a device
    check_writable(tmp_path / "x.pt")
    assert os.listdir(tmp_path) == ["file"]


def test_remove_stale_temp_files(tmp_path):
    out = tmp_path / "m.pt"
    stale = [tmp_path / ".m.pt.abc123.tmp", tmp_path / ".m.last.pt.x9.tmp"]
    keep = [tmp_path / ".other.pt.abc.tmp", tmp_path / "m.pt", tmp_path / "m.last.pt"]
    for p in stale + keep:
        p.write_bytes(b"")
    remove_stale_temp_files(out)
    assert sorted(os.listdir(tmp_path)) == sorted(p.name for p in keep)
    remove_stale_temp_files(tmp_path / "missing" / "m.pt")  # no folder: nothing to do


def test_stale_temp_files_are_removed_where_the_writes_put_them_behind_a_link(tmp_path):
    """`--out link.pt` writes beside the real file, so a killed write's leftover is there."""
    real, links = tmp_path / "real", tmp_path / "links"
    real.mkdir()
    links.mkdir()
    (real / "model.pt").write_bytes(b"x")
    (links / "m.pt").symlink_to(real / "model.pt")
    stale = real / ".model.pt.abc123.tmp"
    kept = [real / ".m.pt.abc.tmp", links / ".model.pt.abc.tmp"]  # other files' names
    for p in (stale, *kept):
        p.write_bytes(b"")
    remove_stale_temp_files(links / "m.pt")
    assert not stale.exists() and all(p.exists() for p in kept)
    atomic_write_bytes(links / "m.pt", b"new")  # and the write itself still lands there
    assert (real / "model.pt").read_bytes() == b"new" and (links / "m.pt").is_symlink()


def test_refuse_overwriting_input(tmp_path):
    data = tmp_path / "d.tsv"
    data.write_text("x")
    (tmp_path / "sub").mkdir()
    for same in (data, tmp_path / "sub" / ".." / "d.tsv"):
        with pytest.raises(SeqtoolError, match="refusing to overwrite an input file"):
            refuse_overwriting_input(same, [None, "-", data])
    refuse_overwriting_input(tmp_path / "other.tsv", [data, None])


def test_embed_and_tokenizer_train_refuse_their_input(toy_classifier, tmp_path):
    data = tmp_path / "lines.txt"
    data.write_text("I love my cat.\nIt rains.\n")
    assert_clean_failure(invoke("embed", "-m", toy_classifier, "-i", data, "--out", data), data)
    assert_clean_failure(invoke("tokenizer", "train", data, "--out", data), data)
    assert data.read_text() == "I love my cat.\nIt rains.\n"
