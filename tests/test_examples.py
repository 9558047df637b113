"""Every example of the README (its ```sh blocks) and of every command's --help runs as
written, with the shipped models, in a fresh folder that holds the repository's corpora/.

So that the whole test stays short, each corpus file is cut to an evenly spaced sample of its
lines (parallel files keep their alignment, labelled files all their labels), each training
command gets `--max-steps 2` appended and `evaluate generate` `--samples 4` (LIMITS). A line
is skipped only when it needs what a test cannot have (SKIPPED: an installer, torchrun, a
server, the git history); the test fails when an example fails, or when a command's help has
no example."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import ROOT

from seqtool.cli import cli

LINES_PER_FILE = 60  # of each corpus file: enough for a tokenizer, two steps and a score
# Options the test appends, as it appends --max-steps to training: the work of an example,
# not what it shows, cut down.
LIMITS = [(re.compile(r"\bseqtool (train \w+|pretrain|distill)\b"), "--max-steps 2"),
          (re.compile(r"\bseqtool evaluate generate\b"), "--samples 4")]
# What a test cannot run, each with why.
SKIPPED = {
    "pip install": "installs packages (the fresh-machine commands; CI runs them)",
    "python -m pytest": "the test suite itself",
    "torchrun": "several processes (tests/test_sharded.py covers them)",
    "seqtool serve": "a server (tests/test_serve.py covers it)",
    "curl ": "needs the server",
    "git cat-file": "needs the git history of the checkpoints",
}


def logical_lines(script: str) -> list[str]:
    """Lines with their backslash continuations joined."""
    lines, current = [], ""
    for line in script.splitlines():
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
        else:
            lines.append(current + line)
            current = ""
    if current:
        lines.append(current)
    return [line for line in lines if line.strip()]


def runnable(line: str) -> str | None:
    """The line as the test runs it: None when skipped, training limited to two steps."""
    if any(marker in line for marker in SKIPPED):
        return None
    for pattern, options in LIMITS:
        if pattern.search(line):
            command, comment = re.match(r"(.*?)(\s+#.*)?$", line).groups()
            line = f"{command} {options}{comment or ''}"
    return line


# `seqtool` in the examples' shell: a small client that hands its arguments, folder,
# environment and standard streams to a server that imported torch and seqtool once and forks
# a process per call, which runs `seqtool.cli.main()` as the command would. Each of the
# examples' ~50 calls so skips the second or so of `import torch`.
FORK_SERVER = r"""
import json, os, socket, sys, threading
import torch  # noqa: F401
import seqtool.api, seqtool.cli, seqtool.inference.predict, seqtool.report  # noqa: F401


def read(connection, size):
    data = b""
    while len(data) < size:
        part = connection.recv(size - len(data))
        if not part:
            raise EOFError
        data += part
    return data


def answer(connection, pid):
    code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    connection.sendall((128 - code if code < 0 else code).to_bytes(4, "big"))
    connection.close()


listener = socket.socket(socket.AF_UNIX)
listener.bind(sys.argv[1])
listener.listen(16)
print("ready", flush=True)
while True:
    connection, _ = listener.accept()
    _, fds, _, _ = socket.recv_fds(connection, 1, 3)
    request = json.loads(read(connection, int.from_bytes(read(connection, 4), "big")))
    pid = os.fork()  # from the main thread, which alone runs here
    if pid == 0:
        listener.close()
        connection.close()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["seqtool", *request["argv"]]
        code = 0
        try:
            seqtool.cli.main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except Exception:
                    pass
        os._exit(code)
    for fd in fds:
        os.close(fd)
    threading.Thread(target=answer, args=(connection, pid), daemon=True).start()
"""
FORK_CLIENT = r"""
import json, os, socket, sys
connection = socket.socket(socket.AF_UNIX)
connection.connect(SOCKET)
socket.send_fds(connection, [b"x"], [0, 1, 2])
body = json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
connection.sendall(len(body).to_bytes(4, "big") + body)
code = b""
while len(code) < 4:
    part = connection.recv(4 - len(code))
    if not part:
        sys.exit(1)
    code += part
sys.exit(int.from_bytes(code, "big"))
"""
JQ_STAND_IN = """import json, sys
for line in sys.stdin:
    value = json.loads(line)
    for part in sys.argv[-1].split("|"):
        part = part.strip()
        if part == "length":
            value = len(value)
        else:
            for key in filter(None, part.split(".")):
                value = value[key]
    print(json.dumps(value))
"""


def readme_blocks() -> list[tuple[str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [(f"README block {i + 1}", block) for i, block in enumerate(blocks)]


def command_paths(group=cli, path: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command's path (`train classify`, ...), groups left out."""
    ctx = click_context(group)
    paths = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if hasattr(command, "list_commands"):
            paths += command_paths(command, path + (name,))
        else:
            paths.append(path + (name,))
    return paths


def click_context(command):
    import click

    return click.Context(command)


def help_examples(path: tuple[str, ...]) -> str:
    """The indented lines under "Example(s):" of a command's --help."""
    text = CliRunner().invoke(cli, [*path, "--help"]).output
    match = re.search(r"^  Examples?:\n(.*?)(?:\n\n|\nOptions:)", text, re.S | re.M)
    assert match, f"`seqtool {' '.join(path)} --help` shows no example"
    return "\n".join(line[4:] for line in match.group(1).splitlines())


def help_cases() -> list[tuple[str, str]]:
    return [(f"seqtool {' '.join(p)} --help", help_examples(p)) for p in command_paths()]


@pytest.fixture(scope="module")
def fresh_folder(tmp_path_factory):
    """A folder with corpora/ (each file a sample of its lines) and checkpoints/, and the
    environment whose `seqtool` is this checkout's."""
    folder = tmp_path_factory.mktemp("fresh")
    for source in (ROOT / "corpora").rglob("*"):
        if not source.is_file():
            continue
        target = folder / source.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.suffix in (".py", ".md"):
            shutil.copy(source, target)
            continue
        lines = source.read_bytes().splitlines(keepends=True)
        step = max(1, -(-len(lines) // LINES_PER_FILE))
        target.write_bytes(b"".join(lines[::step]))
    (folder / "checkpoints").symlink_to(ROOT / "checkpoints")
    bin_folder = folder / ".bin"
    bin_folder.mkdir()
    socket_path = folder / ".seqtool.sock"
    server = subprocess.Popen([sys.executable, "-c", FORK_SERVER, str(socket_path)], cwd=ROOT,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert server.stdout.readline().strip() == "ready"
    shim = bin_folder / "seqtool"
    shim.write_text(f"#!{sys.executable}\nSOCKET = {str(socket_path)!r}\n{FORK_CLIENT}")
    shim.chmod(0o755)
    python = bin_folder / "python"  # `python benchmarks/...` and the like: this interpreter
    python.symlink_to(sys.executable)
    if shutil.which("jq") is None:  # the examples' filters (.key, | length), for a bare machine
        jq = bin_folder / "jq"
        jq.write_text(f"#!{sys.executable}\n{JQ_STAND_IN}")
        jq.chmod(0o755)
    path = os.pathsep.join([str(bin_folder), str(Path(sys.executable).parent),  # sacrebleu
                            os.environ["PATH"]])
    env = {**os.environ, "PATH": path,
           "PYTHONPATH": str(ROOT), "COLUMNS": "80"}
    env.pop("SEQTOOL_CHECKPOINTS", None)
    yield {"folder": str(folder), **{f"env:{k}": v for k, v in env.items()}}
    server.kill()
    server.wait()


def run_example(fresh_folder: dict[str, str], name: str, script: str) -> None:
    for line in logical_lines(script):  # each line whole (no docstring \n turned into a break)
        shlex.split(line, comments=True)
    lines = [runnable(line) for line in logical_lines(script)]
    kept = [line for line in lines if line is not None]
    if not kept:
        pytest.skip(f"{name}: every line needs what a test cannot have")
    env = {k[4:]: v for k, v in fresh_folder.items() if k.startswith("env:")}
    body = "\n".join(kept)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", body], cwd=fresh_folder["folder"],
                            env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (f"{name} failed (exit {result.returncode}):\n{body}\n"
                                    f"--- stderr:\n{result.stderr[-3000:]}")
    assert "Traceback" not in result.stderr, result.stderr


@pytest.mark.parametrize("name, script", readme_blocks(), ids=[n for n, _ in readme_blocks()])
def test_readme_examples_run_as_written(fresh_folder, name, script):
    run_example(fresh_folder, name, script)


@pytest.mark.parametrize("name, script", help_cases(), ids=[n for n, _ in help_cases()])
def test_help_examples_run_as_written(fresh_folder, name, script):
    run_example(fresh_folder, name, script)


def test_runnable_limits_training_and_skips_what_a_test_cannot_have():
    assert runnable("seqtool evaluate generate -i x") == \
        "seqtool evaluate generate -i x --samples 4"
    assert runnable("seqtool train classify --out a.pt  # note") == \
        "seqtool train classify --out a.pt --max-steps 2  # note"
    assert runnable("torchrun --nproc_per_node 2 -m seqtool.cli classify") is None
    assert runnable("seqtool classify x") == "seqtool classify x"
    assert logical_lines("a \\\n  b\nc\n") == ["a    b", "c"]


def test_readme_names_every_old_spelling_and_no_other():
    """The README's promise of old spellings is what the commands accept, no more, no less:
    each hidden old spelling is named, and `--json` only where it is accepted."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    promise = re.search(r"\*\*Old spellings\*\*(.*?)\n\n", text, re.S).group(1)
    named = set(re.findall(r"`(?:generate )?(-[-\w]+)", promise)) - {
        "--help", "--max-input-length", "--max-train-length", "--max-output-length", "--format"}
    accepted: dict[str, set[str]] = {}
    for path in command_paths():
        command = cli
        for name in path:
            command = command.get_command(click_context(command), name)
        for param in command.params:
            old = set(getattr(param, "old", ()))
            if getattr(param, "hidden", False) and getattr(param, "renamed_to", None):
                old |= set(param.opts)
            for spelling in old:
                accepted.setdefault(spelling, set()).add(" ".join(path))
    assert named == set(accepted), (named, accepted)
    assert accepted["--json"] == {"evaluate classify", "evaluate generate", "evaluate translate",
                                  "info"}
    refused = CliRunner().invoke(cli, ["translate", "--json", "Dieu est amour."])
    assert refused.exit_code == 2


def test_the_shell_runs_seqtool_with_its_streams_and_exit_codes(fresh_folder):
    """The examples' `seqtool` answers as the command does: output, stdin, exit codes."""
    env = {k[4:]: v for k, v in fresh_folder.items() if k.startswith("env:")}

    def shell(script: str) -> subprocess.CompletedProcess:
        return subprocess.run(["bash", "-c", script], cwd=fresh_folder["folder"], env=env,
                              capture_output=True, text=True, timeout=300)

    done = shell('echo "A gorgeous, witty film." | seqtool classify --format tsv | cut -f1')
    assert done.returncode == 0 and done.stdout.strip() in {"positive", "negative"}
    bad = shell("seqtool classify -m no-such.pt hello")
    assert bad.returncode == 1 and bad.stderr.startswith("Error: ")
    assert shell("seqtool classify --max-input-length -3 x").returncode == 2
    with pytest.raises(AssertionError, match="failed"):
        run_example(fresh_folder, "a failing example", "seqtool classify -m no-such.pt hi")
