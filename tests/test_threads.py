"""--threads (and SEQTOOL_THREADS): on every command that computes, set in one place
(`seqtool.threads.use_threads`) before torch or numpy loads, and told to torch when loaded."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from test_cli import all_commands

from seqtool import threads
from seqtool.cli.common import LIGHT_COMMANDS
from seqtool.threads import THREAD_VARIABLES, THREADS_ENV, auto_threads, available_cores
from tests.conftest import ROOT

# After a command ran in this process: torch's threads, and what numpy's BLAS would read.
REPORT = ("import os, sys; from seqtool.cli import cli; "
          "cli.main(sys.argv[1:], standalone_mode=False); import torch; "
          f"print(torch.get_num_threads(), *(os.environ[v] for v in {THREAD_VARIABLES!r}))")


def run_python(code: str, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in (*THREAD_VARIABLES, THREADS_ENV)}
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**clean, **env})


def test_every_command_that_computes_takes_threads():
    seen = 0
    for path, command in all_commands():
        threads = [p for p in command.params if p.name == "threads"]
        if path[0] in LIGHT_COMMANDS:
            assert not threads, path
            continue
        (option,) = threads
        assert option.origin == "ComputeConfig.threads" and option.envvar == THREADS_ENV
        assert option.default == 0 and not option.expose_value
        seen += 1
    assert seen >= 10  # classify, translate, train classify, evaluate translate, serve, ...


# torch takes no more threads from OMP_NUM_THREADS than the machine has cores
TWO_CORES = pytest.mark.skipif((os.cpu_count() or 1) < 2, reason="one core: torch takes one")


@TWO_CORES
@pytest.mark.parametrize("options, env, expected", [
    (["--threads", "2"], {}, 2),
    ([], {THREADS_ENV: "2"}, 2),
    (["--threads", "1"], {THREADS_ENV: "2"}, 1),  # the flag wins
    ([], {"OMP_NUM_THREADS": "2"}, 2),  # the default keeps what the user set
])
def test_threads_reach_torch_and_the_blas(toy_classifier, options, env, expected):
    done = run_python(REPORT, "classify", "-m", str(toy_classifier), "fine", *options, **env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].split() == [str(expected)] * 4


def test_the_default_is_the_same_for_torch_and_the_blas(toy_classifier):
    done = run_python(REPORT, "classify", "-m", str(toy_classifier), "fine")
    assert done.returncode == 0, done.stderr
    counts = done.stdout.splitlines()[-1].split()
    assert len(set(counts)) == 1 and 1 <= int(counts[0]) <= available_cores(), counts


@TWO_CORES
def test_set_before_torch_loads_torch_reads_it():
    """The environment path: OpenMP reads OMP_NUM_THREADS once, when torch loads."""
    done = run_python("import sys; from seqtool.threads import use_threads; use_threads(2); "
                      "assert 'torch' not in sys.modules; import torch; "
                      "print(torch.get_num_threads())")
    assert done.stdout.split() == ["2"], done.stderr


@TWO_CORES
def test_set_after_torch_loads_torch_is_told():
    done = run_python("import torch; torch.set_num_threads(1); "
                      "from seqtool.threads import use_threads; use_threads(3); "
                      "print(torch.get_num_threads())")
    assert done.stdout.split() == ["3"], done.stderr


def test_auto_threads_keeps_what_the_user_set(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "5")
    assert auto_threads() == 5
    for unusable in ("0", "two", ""):
        monkeypatch.setenv("OMP_NUM_THREADS", unusable)
        assert 1 <= auto_threads() <= available_cores()
    assert available_cores() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("runnable, expected", [
    ([1, 1, 1], lambda cores: cores),  # only this process: every core
    ([3, 9, 3], lambda cores: max(1, cores - 2)),  # two busy tasks elsewhere
    ([9, 1, 9], lambda cores: cores),  # a task passing by does not count
    ([500, 500, 500], lambda cores: 1),  # never none
])
def test_auto_threads_leaves_the_busy_cores(monkeypatch, runnable, expected):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    samples = iter(runnable)
    monkeypatch.setattr(threads, "runnable_tasks", lambda: next(samples))
    assert threads.auto_threads(samples=3) == expected(available_cores())


def test_runnable_tasks_counts_this_process():
    assert threads.runnable_tasks() >= 1


@pytest.mark.parametrize("options, env", [(["--threads", "-1"], {}),
                                          (["--threads", "two"], {}),
                                          ([], {THREADS_ENV: "two"})])
def test_a_bad_thread_count_is_a_usage_error(options, env):
    done = run_python("import sys; sys.argv[0] = 'seqtool'; from seqtool.cli import main; "
                      "main()", "classify", "fine", *options, **env)
    assert done.returncode == 2
    assert "--threads" in done.stderr and "Traceback" not in done.stderr
