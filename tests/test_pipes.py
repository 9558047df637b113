"""seqtool in real pipelines: streaming, closed pipes, Ctrl-C, dirty or huge input, bad outputs.

Everything here runs the real `seqtool` process (python -m seqtool.cli), because exit codes,
signals, pipes and stdout buffering only show there.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import TOY, run_seqtool

SEQTOOL = [sys.executable, "-m", "seqtool.cli"]
STARTUP = 180  # seconds a process may take to start and load its model on a busy machine


def run_bytes(*args, input: bytes) -> subprocess.CompletedProcess:
    return subprocess.run([*SEQTOOL, *map(str, args)], input=input, capture_output=True,
                          timeout=300)


def one_error_line(stderr: str) -> str:
    """The error a user sees: exactly one line, starting with 'Error: ', no traceback."""
    assert "Traceback" not in stderr
    errors = [x for x in stderr.splitlines() if x.startswith("Error: ")]
    assert len(errors) == 1, stderr
    return errors[0]


class Running:
    """A seqtool process fed one line at a time; its output lines arrive in a queue."""

    def __init__(self, *args, stdin=subprocess.PIPE):
        # A test run in the background (`pytest &`) inherits an ignored SIGINT; the process
        # gets Python's own Ctrl-C handling back, as at a terminal.
        self.proc = subprocess.Popen([*SEQTOOL, *map(str, args)], stdin=stdin,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     preexec_fn=lambda: signal.signal(signal.SIGINT,
                                                                      signal.SIG_DFL))
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.decode())
        self.lines.put(None)

    def send(self, text: str) -> None:
        self.proc.stdin.write(text.encode() + b"\n")
        self.proc.stdin.flush()

    def answer(self, timeout: float) -> str:
        line = self.lines.get(timeout=timeout)
        assert line is not None, self.proc.stderr.read().decode()
        return line

    def finish(self) -> tuple[int, str]:
        if self.proc.stdin:
            self.proc.stdin.close()
        code = self.proc.wait(timeout=120)
        return code, self.proc.stderr.read().decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


STREAMING = {
    "classify": ("toy_classifier", [], "I love my cat.", "It rains."),
    "embed": ("toy_classifier", [], "I love my cat.", "It rains."),
    "tokenize": ("toy_classifier", [], "I love my cat.", "It rains."),
    "translate": ("toy_translator", ["--beam", "2"], "I love my cat.", "The dog sleeps."),
    "generate": ("toy_generator", ["--label", "positive", "-i", "-", "--max-output-length", "8"],
                 "I", "The"),
}


@pytest.mark.parametrize("command", sorted(STREAMING))
def test_each_line_is_answered_as_soon_as_it_arrives(command, request):
    """A slow pipe: each line is answered while the input is still open (so not at end of
    input), answers come in input order, and nothing is answered before its line is sent.
    No clock: a busy machine may be slow, never wrong."""
    fixture, extra, first, second = STREAMING[command]
    model = request.getfixturevalue(fixture)
    alone = {}
    for line in (first, second):  # what each line gets when it is the whole input
        whole = subprocess.run([*SEQTOOL, command, "-m", str(model), *extra], input=line + "\n",
                               capture_output=True, text=True, timeout=300)
        assert whole.returncode == 0, whole.stderr
        alone[line] = whole.stdout
    p = Running(command, "-m", model, *extra)
    try:
        p.send(first)
        # Start-up and model loading happen before the first answer; the input stays open.
        answers = [p.answer(STARTUP) for _ in alone[first].splitlines()]
        assert "".join(answers) == alone[first]
        assert p.lines.empty()  # nothing more before the next line is sent
        p.send(second)
        answers = [p.answer(STARTUP) for _ in alone[second].splitlines()]
        assert "".join(answers) == alone[second]
        assert p.proc.poll() is None  # answered while the input is still open
        code, stderr = p.finish()
        assert code == 0, stderr
        assert p.lines.get(timeout=STARTUP) is None  # and nothing else came
    finally:
        p.kill()


def test_a_terminal_gets_an_answer_per_line(toy_classifier):
    import pty

    main, terminal = pty.openpty()
    p = Running("classify", "-m", toy_classifier, stdin=terminal)
    os.close(terminal)
    try:
        os.write(main, b"I love my cat.\n")
        assert p.answer(STARTUP).startswith("positive")
        os.write(main, b"Cats and dogs are not allowed.\n")  # answered before Ctrl-D
        assert p.answer(STARTUP).startswith("negative") and p.proc.poll() is None
        os.write(main, b"\x04")  # Ctrl-D: end of input
        code, stderr = p.finish()
        assert code == 0, stderr
    finally:
        p.kill()
        os.close(main)


def test_ctrl_c_exits_130_quietly(toy_classifier):
    p = Running("classify", "-m", toy_classifier)
    try:
        p.send("I love my cat.")
        p.answer(STARTUP)  # now it is waiting for more input
        p.proc.send_signal(signal.SIGINT)
        code, stderr = p.finish()
        assert code == 130
        assert "Traceback" not in stderr
    finally:
        p.kill()


def test_invalid_utf8_answers_earlier_lines_then_one_error(toy_classifier):
    data = b"I love my cat.\nIt \xff rains.\nCats and dogs are not allowed.\n"
    p = run_bytes("classify", "-m", toy_classifier, input=data)
    assert p.returncode == 1
    assert p.stdout.decode().splitlines()[0].startswith("positive")
    assert len(p.stdout.decode().splitlines()) == 1
    assert one_error_line(p.stderr.decode()).startswith("Error: <stdin>:2: not valid UTF-8")


def test_megabyte_lines_are_cut_with_one_warning_and_little_memory(toy_classifier):
    """Two 1 MB lines: answered, one warning, and the process stays small (it took 3.5 GB)."""
    code = ("import resource, subprocess, sys\n"
            "p = subprocess.run(sys.argv[1:], input=sys.stdin.buffer.read(),"
            " capture_output=True)\n"
            "sys.stdout.write(p.stdout.decode())\n"
            "sys.stderr.write(p.stderr.decode())\n"
            "print('maxrss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
            "sys.exit(p.returncode)\n")
    line = ("I love my cat. " * 70_000)[:1_000_000]
    p = subprocess.run([sys.executable, "-c", code, *SEQTOOL, "classify", "-m", toy_classifier,
                        "--format", "tsv"], input=f"{line}\nIt rains.\n{line}\n".encode(),
                       capture_output=True, timeout=300)
    out = p.stdout.decode().splitlines()
    assert p.returncode == 0, p.stderr
    assert [r.split("\t")[0] for r in out[:3]] == ["positive", "negative", "positive"]
    assert p.stderr.decode().count("Warning:") == 1
    assert "--max-input-length" in p.stderr.decode()
    assert int(out[3].split()[1]) < 1_500_000  # kB: torch itself takes a few hundred MB


def test_stdout_to_a_full_disk_is_one_line(toy_classifier):
    with open("/dev/full", "w") as full:
        p = subprocess.run([*SEQTOOL, "classify", "-m", toy_classifier, "I love my cat."],
                           stdout=full, stderr=subprocess.PIPE, text=True, timeout=300)
    assert p.returncode == 1
    assert one_error_line(p.stderr) == "Error: <stdout>: No space left on device"


def test_unwritable_outputs_name_the_path(toy_classifier, toy_translator, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder\n")
    below = blocker / "out"
    cases = [  # more cases, in-process, in test_robustness.py
        ["embed", "-m", toy_classifier, "--out", below, "I love my cat."],
        ["translate", "-m", toy_translator, "--attention-png", below, "I love my cat."],
    ]
    for args in cases:
        p = run_seqtool(*args)
        assert p.returncode == 1
        line = one_error_line(p.stderr)
        assert str(below) in line or str(tmp_path) in line, line
    # A folder no one may write in, root included (root ignores a folder's mode bits, and
    # CI runs as root): /sys refuses new files to everyone.
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    for folder in ([locked] if os.geteuid() != 0 else []) + [Path("/sys")]:
        p = run_seqtool("embed", "-m", toy_classifier, "--out", folder / "v.npy", "hi")
        assert p.returncode == 1, p.stderr
        assert str(folder / "v.npy") in one_error_line(p.stderr)
        assert not (folder / "v.npy").exists()


def test_out_equal_to_an_input_is_refused(toy_translator, tmp_path):
    dev = tmp_path / "d.tsv"
    dev.write_bytes((TOY / "sentiment.tsv").read_bytes())
    before = dev.read_bytes()
    p = run_seqtool("train", "classify", "--train", TOY / "sentiment.tsv", "--dev", dev,
                    "--out", tmp_path / "." / "d.tsv", "--epochs", "1")
    assert p.returncode == 1 and "refusing to overwrite an input file" in one_error_line(p.stderr)
    src = tmp_path / "s.en"
    src.write_text("I love my cat.\n")
    link = tmp_path / "link.en"
    link.symlink_to(src)
    p = run_seqtool("evaluate", "translate", "-m", toy_translator, "--src", src, "--ref", src,
                    "--out", link)
    assert p.returncode == 1 and "refusing to overwrite" in one_error_line(p.stderr)
    assert dev.read_bytes() == before and src.read_text() == "I love my cat.\n"


def test_evaluate_translate_out_keeps_blank_lines_aligned(toy_translator, tmp_path):
    src, ref, out = tmp_path / "s.en", tmp_path / "r.de", tmp_path / "out.de"
    src.write_text("I love my cat.\n\nThe dog sleeps.\n\n\nMy cat sleeps.\n")
    ref.write_text("Ich liebe meine Katze.\n\nDer Hund schläft.\n\n\nMeine Katze schläft.\n")
    p = run_seqtool("evaluate", "translate", "-m", toy_translator, "--src", src, "--ref", ref,
                    "--out", out, "--format", "jsonl")
    assert p.returncode == 0, p.stderr
    lines = out.read_text().split("\n")[:-1]
    assert len(lines) == 6
    assert [bool(x) for x in lines] == [True, False, True, False, False, True]
    import json

    assert json.loads(p.stdout)["sentences"] == 3  # blank pairs are not scored


def test_missing_default_model_explains_seqtool_checkpoints(tmp_path):
    env = {**os.environ, "SEQTOOL_CHECKPOINTS": str(tmp_path)}
    p = subprocess.run([*SEQTOOL, "classify", "hello"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert p.returncode == 1
    assert "SEQTOOL_CHECKPOINTS" in one_error_line(p.stderr)
