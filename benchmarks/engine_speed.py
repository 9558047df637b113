"""numpy inference (`seqtool.engine`) against the torch modules, on the shipped models, in one
process, interleaved round by round (the median of each kept):

- classify: the 1,058 lines of corpora/sentiment/movie-snippets/test.tsv in length-sorted
  batches of 128 (as `scoring.classify_outputs`), and one line (torch on one thread, as
  `seqtool classify` runs a one-line call);
- translate: encode + 20 decoding steps for 64 sentences x beam 5 (the source memory once per
  sentence, group = 5), torch through `nn.fast.DecodeStep`, the step the searches use;
- generate: the prompt, then 60 steps for 3 rows.

Tokenizing and loading are outside the timings. Usage: python benchmarks/engine_speed.py
[--rounds N] [--threads N]; writes benchmarks/results/engine-speed.{md,json}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from common import output_options, use_output  # noqa: E402 (light: no torch, no numpy)

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--rounds", type=int, default=7)
parser.add_argument("--threads", type=int, default=1,
                    help="threads of each backend: set before numpy and torch load their "
                    "thread pools (OpenBLAS's and OpenMP's waiting threads slow each other "
                    "down on a shared machine)")
output_options(parser)
ARGS = parser.parse_args()
use_output(ARGS)
for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[variable] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import ROOT, record, table  # noqa: E402

from seqtool import engine  # noqa: E402
from seqtool.checkpoint import Checkpoint, one_thread  # noqa: E402
from seqtool.engine.ops import softmax  # noqa: E402
from seqtool.engine.translator import SOURCE_KEYS  # noqa: E402
from seqtool.engine.translator import select_state as np_select_state  # noqa: E402
from seqtool.nn import fast  # noqa: E402
from seqtool.nn.batches import classify_batch, translate_batch  # noqa: E402
from seqtool.nn.registry import build_model  # noqa: E402
from seqtool.nn.translator import select_state  # noqa: E402
from seqtool.text.batching import length_sorted  # noqa: E402
from seqtool.text.tokenizer import START, Tokenizer  # noqa: E402


def shipped(name: str):
    ckpt = Checkpoint.load(ROOT / "checkpoints" / f"{name}.seqtool")
    model = build_model(ckpt.task, ckpt.model_config)
    model.load_state_dict(ckpt.torch_weights())
    twin = engine.build(ckpt.task, ckpt.model_config,
                        ckpt.numpy_weights())
    return model.eval(), twin, Tokenizer(ckpt.tokenizers["src"])


def classify_cases() -> dict[str, tuple[Callable, Callable]]:
    model, twin, tokenizer = shipped("sentiment-gru")
    lines = (ROOT / "corpora/sentiment/movie-snippets/test.tsv").read_text().splitlines()
    ids = tokenizer.encode_batch([line.split("\t", 1)[1] for line in lines])
    batches = [classify_batch([ids[i] for i in idx]) for idx in length_sorted(
        [len(s) for s in ids], 128)]
    np_batches = [(b["tokens"].numpy(), b["lengths"].numpy()) for b in batches]
    one = classify_batch(tokenizer.encode_batch(["A gorgeous, witty, seductive movie."]))
    np_one = (one["tokens"].numpy(), one["lengths"].numpy())

    @torch.no_grad()
    def torch_file():
        return [torch.softmax(model(b["tokens"], b["lengths"]), -1) for b in batches]

    def numpy_file():
        return [softmax(twin.logits(t, n)) for t, n in np_batches]

    @torch.no_grad()
    def torch_line():
        with one_thread():
            return torch.softmax(model(one["tokens"], one["lengths"]), -1)

    def numpy_line():
        return softmax(twin.logits(*np_one))

    return {"classify 1,058 lines (batches of 128)": (torch_file, numpy_file),
            "classify one line": (torch_line, numpy_line)}


def translate_case(sentences: int = 64, beam: int = 5, steps: int = 20):
    model, twin, tokenizer = shipped("bible-fr-en-gru-attention")
    texts = (ROOT / "corpora/translation/bible-fr-en/test.fr").read_text().splitlines()
    batch = translate_batch(tokenizer.encode_batch(texts[:sentences]))
    src, lengths = batch["src"], batch["src_lengths"]
    copies = torch.arange(sentences).repeat_interleave(beam)
    rng = np.random.default_rng(0)
    tokens = [rng.integers(4, 8000, sentences * beam) for _ in range(steps)]
    tokens[0][:] = START

    @torch.no_grad()
    def torch_run():
        memory = model.encode(src, lengths)
        memory = {k: v if k in SOURCE_KEYS else select_state(v, copies)
                  for k, v in memory.items()}
        step = fast.decode_step(model)
        for prev in tokens:
            log_probs, memory, _ = step(memory, torch.from_numpy(prev), beam)
        return log_probs

    np_src, np_lengths, np_copies = src.numpy(), lengths.numpy(), copies.numpy()

    def numpy_run():
        memory = twin.encode(np_src, np_lengths)
        memory = {k: v if k in SOURCE_KEYS else np_select_state(v, np_copies)
                  for k, v in memory.items()}
        for prev in tokens:
            log_probs, memory, _ = twin.decode_step(memory, prev, beam)
        return log_probs

    return {f"translate encode + {steps} steps, {sentences} x beam {beam}":
            (torch_run, numpy_run)}


def generate_case(rows: int = 3, steps: int = 60):
    model, twin, _ = shipped("sentiment-lstm-generator")
    labels = torch.tensor([0, 1, 1][:rows])
    inputs = torch.tensor([[START]]).expand(rows, -1)
    rng = np.random.default_rng(0)
    tokens = [rng.integers(4, 8000, rows) for _ in range(steps)]

    @torch.no_grad()
    def torch_run():
        logits, state = model(labels, inputs)
        for prev in tokens:
            logits, state = model(labels, torch.from_numpy(prev)[:, None], state=state)
        return logits

    np_labels, np_inputs = labels.numpy(), inputs.numpy()

    def numpy_run():
        logits, state = twin.start(np_labels, np_inputs)
        for prev in tokens:
            logits, state = twin.step(state, prev)
        return logits

    return {f"generate {steps} steps, {rows} rows": (torch_run, numpy_run)}


def seconds(run: Callable, calls: int = 1) -> float:
    """The median time of `calls` calls of `run` (one call of a millisecond is often cut by
    another process's time slice on a shared machine)."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    rounds = ARGS.rounds
    torch.set_num_threads(ARGS.threads)
    cases = {**classify_cases(), **translate_case(), **generate_case()}
    times: dict[str, dict[str, list[float]]] = {n: {"torch": [], "numpy": []} for n in cases}
    for run_torch, run_numpy in cases.values():  # warm-up: caches, packed weights, pages
        run_torch(), run_numpy()
    for r in range(rounds):
        for name, (run_torch, run_numpy) in cases.items():
            pair = [("torch", run_torch), ("numpy", run_numpy)]
            for backend, run in pair if r % 2 == 0 else pair[::-1]:
                times[name][backend].append(seconds(run, 21 if "one line" in name else 1))
    rows, results = [], {}
    for name, runs in times.items():
        t, n = statistics.median(runs["torch"]), statistics.median(runs["numpy"])
        results[name] = {"torch_ms": t * 1e3, "numpy_ms": n * 1e3, "numpy_over_torch": n / t,
                         "runs_ms": {k: [x * 1e3 for x in v] for k, v in runs.items()}}
        rows.append([name, t * 1e3, n * 1e3, n / t])
    blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
    versions = {"numpy": np.__version__, "blas": f"{blas['name']} {blas['version']}",
                "rounds": rounds, "threads": ARGS.threads}
    markdown = (table(["case", "torch ms", "numpy ms", "numpy / torch"], rows)
                + f"\n\nMedians of {rounds} interleaved rounds in one process (a one-line "
                "call: each round's median of 21 calls); numpy "
                f"{versions['numpy']} ({versions['blas']}); {ARGS.threads} thread(s) for each "
                "backend (torch one for the one-line call, as `seqtool classify`).")
    record("engine-speed", {"versions": versions, "cases": results}, markdown)


if __name__ == "__main__":
    main()
