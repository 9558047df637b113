"""A fair share of a busy machine (issue 32): `seqtool translate --beam 5` on the first 200
test sentences of bible-fr-en, a fresh process each run, on the machine as found and beside two
more busy processes (`python -c 'while True: pass'`, started before and stopped after each
run), with 1 thread, as many threads as cores (PyTorch's own default before --threads), that
with OpenMP's passive wait policy, and seqtool's default (no --threads, no OMP_* set). Also
numpy's BLAS (OpenBLAS) on a decode-sized matrix product loop, 1 thread against every core,
for the numpy backend. All variants interleaved round by round; every translate run must
write the same translations.

    python benchmarks/threads.py [--sentences 200] [--rounds 2]

Writes results/threads.{md,json}.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator

from common import ROOT, output_options, record, table, use_output

from seqtool.threads import THREAD_VARIABLES, THREADS_ENV, available_cores

SOURCE = ROOT / "corpora" / "translation" / "bible-fr-en" / "test.fr"
SEQTOOL = "import sys; from seqtool.cli import main; sys.argv[0] = 'seqtool'; main()"
BUSY = "while True: pass"
PRODUCTS = 500
NUMPY_LOOP = ("import time, numpy as np; r = np.random.default_rng(0); "
              "a = r.standard_normal((320, 256), dtype=np.float32); "
              "b = r.standard_normal((256, 768), dtype=np.float32); c = a @ b; "
              "t = time.perf_counter()\n"
              f"for _ in range({PRODUCTS}): np.matmul(a, b, out=c)\n"
              "print(time.perf_counter() - t)")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without any thread setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items()
           if k not in (*THREAD_VARIABLES, THREADS_ENV, "OMP_WAIT_POLICY")}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


@contextlib.contextmanager
def busy(processes: int) -> Iterator[None]:
    """`processes` Python loops spinning on the CPU for the duration."""
    spinners = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(processes)]
    try:
        time.sleep(0.5 if processes else 0)
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()


def translate_variants(cores: int) -> dict[str, tuple[list[str], dict[str, str]]]:
    """name -> (options, environment)."""
    return {
        "1 thread": (["--threads", "1"], clean_env()),
        f"{cores} threads (torch's default before)": (["--threads", str(cores)], clean_env()),
        f"{cores} threads, OMP_WAIT_POLICY=passive": (
            ["--threads", str(cores)], clean_env(OMP_WAIT_POLICY="PASSIVE")),
        "seqtool's default": ([], clean_env()),
    }


def run_translate(options: list[str], env: dict[str, str], source: bytes) -> tuple[float, str]:
    begin = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", SEQTOOL, "translate", "--beam", "5", *options],
                         input=source, capture_output=True, check=True, env=env,
                         cwd=ROOT).stdout
    return time.perf_counter() - begin, hashlib.sha256(out).hexdigest()


def run_numpy(threads: int) -> float:
    out = subprocess.run([sys.executable, "-c", NUMPY_LOOP], capture_output=True, text=True,
                         check=True, env=clean_env(OPENBLAS_NUM_THREADS=str(threads)))
    return float(out.stdout)


def measure(sentences: int, rounds: int) -> tuple[dict, str]:
    cores = available_cores()
    lines = SOURCE.read_bytes().splitlines(keepends=True)[:sentences]
    source = b"".join(lines)
    variants = translate_variants(cores)
    conditions = {"as found": 0, "+2 busy": 2}
    seconds: dict = {(v, c): [] for v in variants for c in conditions}
    digests: dict = {}
    blas: dict = {(t, c): [] for t in (1, cores) for c in conditions}
    loads = []
    for round_ in range(rounds):
        for condition, processes in conditions.items():
            for name, (options, env) in variants.items():
                loads.append(os.getloadavg()[0])
                with busy(processes):
                    took, digest = run_translate(options, env, source)
                seconds[(name, condition)].append(took)
                digests[(name, condition)] = digest
                print(f"round {round_ + 1} {condition:9} {name:42} {took:7.2f} s",
                      file=sys.stderr, flush=True)
            for threads in (1, cores):
                with busy(processes):
                    blas[(threads, condition)].append(run_numpy(threads))
                print(f"round {round_ + 1} {condition:9} numpy, {threads} BLAS threads "
                      f"{blas[(threads, condition)][-1]:7.2f} s", file=sys.stderr, flush=True)
    reference = digests[("1 thread", "as found")]
    out: dict = {"sentences": len(lines), "rounds": rounds, "cores": cores,
                 "load_average_before_runs": loads, "translate": {}, "numpy_blas": {}}
    rows = []
    for name in variants:
        idle = statistics.median(seconds[(name, "as found")])
        loaded = statistics.median(seconds[(name, "+2 busy")])
        same = all(digests[(name, c)] == reference for c in conditions)
        out["translate"][name] = {"seconds": {c: seconds[(name, c)] for c in conditions},
                                  "busy_over_idle": loaded / idle, "same_output": same}
        rows.append([name, idle, loaded, loaded / idle, "yes" if same else "NO"])
    blas_rows = []
    for threads in (1, cores):
        idle = statistics.median(blas[(threads, "as found")])
        loaded = statistics.median(blas[(threads, "+2 busy")])
        out["numpy_blas"][f"{threads} threads"] = {
            "seconds": {c: blas[(threads, c)] for c in conditions}, "busy_over_idle":
            loaded / idle}
        blas_rows.append([f"OPENBLAS_NUM_THREADS={threads}", idle, loaded, loaded / idle])
    markdown = (
        f"`seqtool translate --beam 5`, first {len(lines)} sentences of bible-fr-en test.fr, "
        f"a fresh process per run (Python, import torch, the model, decoding), median of "
        f"{rounds} interleaved rounds, on {cores} cores as found (a machine shared with other "
        f"jobs: 1-minute load average before the runs {min(loads):.2f} to {max(loads):.2f}) "
        f"and with two more busy processes (`python -c '{BUSY}'`) beside it.\n\n"
        + table(["threads", "as found (s)", "+2 busy (s)", "busy / as found",
                 "same translations"], rows)
        + f"\n\nnumpy (OpenBLAS): {PRODUCTS} products [320, 256] x [256, 768] in float32 "
        "(one beam-5 decoding step's size), fresh process, median of the rounds:\n\n"
        + table(["BLAS threads", "as found (s)", "+2 busy (s)", "busy / as found"], blas_rows))
    return out, markdown


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=2)
    output_options(parser)
    args = parser.parse_args()
    use_output(args)
    record("threads", *measure(args.sentences, args.rounds))


if __name__ == "__main__":
    main()
