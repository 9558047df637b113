"""Nothing lost, nothing silent: a short or failed write to stdout ends in a one-line error
and exit 1, and what was written before is intact (a prefix of the full output)."""

from __future__ import annotations

import os
import resource
import stat
import subprocess
import sys

import pytest

from tests.conftest import ROOT

LIMIT = 8192  # bytes a file may grow to: past it, write() fails with EFBIG after a short write
SEQTOOL = [sys.executable, "-m", "seqtool.cli"]


def limited_file_size():
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, LIMIT))


def run_into_file(args, path, limit=True, input=None):
    with open(path, "wb") as out:
        return subprocess.run([*SEQTOOL, *map(str, args)], stdout=out, stderr=subprocess.PIPE,
                              text=True, input=input, cwd=ROOT, timeout=300,
                              preexec_fn=limited_file_size if limit else None)


def commands(toy_classifier, toy_generator, toy_translator):
    lines = "".join(f"I love my cat number {i}.\n" for i in range(400))
    return {
        "classify": (["classify", "-m", toy_classifier, "--format", "jsonl"], lines),
        "embed": (["embed", "-m", toy_classifier], lines),
        "translate": (["translate", "-m", toy_translator, "--beam", "1", "--format", "jsonl"],
                      lines),
        "generate": (["generate", "-m", toy_generator, "--label", "positive", "-n", "300",
                      "--format", "jsonl"], None),
        "generate json": (["generate", "-m", toy_generator, "--label", "positive", "-n", "300",
                           "--format", "json"], None),
    }


@pytest.mark.parametrize("name", ["classify", "embed", "translate", "generate",
                                  "generate json"])
def test_a_full_disk_is_an_error_and_keeps_what_was_written(
        name, toy_classifier, toy_generator, toy_translator, tmp_path):
    args, lines = commands(toy_classifier, toy_generator, toy_translator)[name]
    full = run_into_file(args, tmp_path / "full.out", limit=False, input=lines)
    assert full.returncode == 0, full.stderr
    expected = (tmp_path / "full.out").read_bytes()
    assert len(expected) > 2 * LIMIT  # the output does not fit
    cut = run_into_file(args, tmp_path / "cut.out", input=lines)
    assert cut.returncode == 1, cut.stderr
    assert cut.stderr.strip().count("\n") == 0 and "Traceback" not in cut.stderr
    assert "<stdout>" in cut.stderr and "too large" in cut.stderr.lower()
    written = (tmp_path / "cut.out").read_bytes()
    assert len(written) == LIMIT and expected.startswith(written)


# ----------------------------------------------------------------------------- --out


def test_out_through_a_link_writes_the_file_behind_it(toy_classifier, tmp_path):
    """The link stays a link and its target gets the results (the link was replaced by a
    plain file), also when the link points at the process's own stdout."""
    from tests.conftest import run_cli

    real = tmp_path / "real.tsv"
    real.write_text("old\n")
    link = tmp_path / "link.tsv"
    link.symlink_to(real)
    run_cli("classify", "-m", toy_classifier, "I love my cat.", "--out", link)
    assert link.is_symlink() and real.read_text().endswith("I love my cat.\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.tsv", "real.tsv"]
    for to in ("/proc/self/fd/1", "/dev/stdout"):  # a link, so a failure harms only tmp_path
        so = tmp_path / "so"
        so.unlink(missing_ok=True)
        so.symlink_to(to)
        result = run_into_file(["classify", "-m", toy_classifier, "I love my cat.", "--out",
                                so], tmp_path / "f", limit=False)
        assert result.returncode == 0, result.stderr
        assert so.is_symlink() and os.readlink(so) == to
        assert (tmp_path / "f").read_text().endswith("I love my cat.\n")


def test_out_to_a_pipe_is_written_in_place(toy_classifier):
    """/dev/stdout as --out when stdout is a pipe: the records arrive through the pipe."""
    result = subprocess.run([*SEQTOOL, "classify", "-m", str(toy_classifier), "--out",
                             "/proc/self/fd/1", "I love my cat.", "It rains."],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert [x.split("  ")[-1] for x in result.stdout.splitlines()] == \
        ["I love my cat.", "It rains."]


def test_out_follows_the_umask_and_keeps_an_existing_files_mode(toy_classifier, tmp_path):
    from tests.conftest import run_cli

    def mode(path):
        return stat.S_IMODE(path.stat().st_mode)

    before = os.umask(0o027)
    try:
        run_cli("classify", "-m", toy_classifier, "hi", "--out", tmp_path / "new.tsv")
        run_cli("embed", "-m", toy_classifier, "hi", "--out", tmp_path / "new.npy")
        assert mode(tmp_path / "new.tsv") == mode(tmp_path / "new.npy") == 0o640
        kept = tmp_path / "kept.tsv"
        kept.write_text("old\n")
        kept.chmod(0o644)
        os.umask(0o077)
        run_cli("classify", "-m", toy_classifier, "hi", "--out", kept)
        assert mode(kept) == 0o644 and kept.read_text() != "old\n"
    finally:
        os.umask(before)


def test_out_in_a_missing_folder_is_an_error(toy_classifier, tmp_path):
    """A typo in the folder makes no folder: one line naming it, exit 1."""
    from tests.conftest import run_cli

    out = tmp_path / "typo" / "deeper" / "x.tsv"
    for command in (["classify", "hi"], ["embed", "hi"]):
        result = run_cli(command[0], "-m", toy_classifier, *command[1:], "--out", out, ok=False)
        assert result.exit_code == 1
        assert "no such folder" in result.output and str(out.parent) in result.output
    assert not (tmp_path / "typo").exists()


# ----------------------------------------------------------------------------- closed stdout


def close_stdout():
    os.close(1)


@pytest.mark.parametrize("args", [["classify", "I love my cat."], ["tokenize", "I love"],
                                  ["info"], ["--help"], ["classify", "--help"],
                                  ["embed", "I love my cat."]])
def test_a_closed_stdout_is_one_line(args, toy_classifier):
    """`seqtool ... >&-`: exit 1 with one line naming stdout (it was a traceback)."""
    model = [] if args[-1] == "--help" or args[0] == "--help" else ["-m", toy_classifier]
    if args == ["info"]:
        args, model = ["info", toy_classifier], []
    result = subprocess.run([*SEQTOOL, *map(str, args[:1] + model + args[1:])],
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=300,
                            preexec_fn=close_stdout)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith("Error: <stdout>: ") and \
        result.stderr.count("\n") == 1, result.stderr


def test_a_closed_stdout_does_not_stop_a_run_that_writes_a_file(toy_classifier, tmp_path):
    out = tmp_path / "out.tsv"
    result = subprocess.run([*SEQTOOL, "classify", "-m", str(toy_classifier), "--out",
                             str(out), "I love my cat."], stderr=subprocess.PIPE, text=True,
                            cwd=ROOT, timeout=300, preexec_fn=close_stdout)
    assert result.returncode == 0, result.stderr
    assert out.read_text().endswith("I love my cat.\n")


# ----------------------------------------------------------------------------- tokenize


def test_tokenize_cuts_a_huge_line(toy_classifier):
    """A 2 MB line is cut to --max-input-length pieces (one warning), like the models' input;
    it used to be tokenized whole (a 50 MB line took 3.1 GB)."""
    from tests.conftest import run_cli

    line = "I love my cat. " * 140_000
    result = run_cli("tokenize", "-m", toy_classifier, input=line + "\nIt rains.\n")
    out = result.stdout.splitlines()
    assert len(out) == 2 and len(out[0].split()) == 512
    assert out[1] == run_cli("tokenize", "-m", toy_classifier, "It rains.").stdout.strip()
    assert result.stderr.count("Warning:") == 1 and "--max-input-length" in result.stderr
    whole = run_cli("tokenize", "-m", toy_classifier, "--max-input-length", "0",
                    input="I love my cat. " * 100 + "\n").stdout
    assert len(whole.split()) > 512 and "Warning" not in whole
