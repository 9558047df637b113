"""`bench_classify.py --latency`: what a `seqtool classify` call costs beyond `import torch`
(issue 24), for each shipped classifier."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, progress, table

# A `seqtool classify` call timed inside its process from the moment torch is imported: what
# the call costs beyond `import torch`, measured directly (not as the difference of two
# medians of ~2 s processes, which moves by a tenth of a second under load).
BEYOND_CODE = (
    "import sys, time\nimport torch\nstart = time.perf_counter()\n"
    "sys.argv = ['seqtool', *sys.argv[1:]]\nfrom seqtool.cli import main\n"
    "try:\n    main()\nexcept SystemExit:\n    pass\n"
    "print(time.perf_counter() - start, file=sys.stderr)")


def beyond_import_torch(model: str | Path, line: str) -> float:
    """Seconds a one-line `seqtool classify -m MODEL LINE` takes after `import torch`, in a
    fresh process (imports of seqtool, loading, classifying, writing)."""
    done = subprocess.run([sys.executable, "-c", BEYOND_CODE, "classify", "-m", str(model),
                           line], check=True, capture_output=True, text=True, cwd=ROOT)
    return float(done.stderr.strip().splitlines()[-1])


def classify_latency(data: Path, repeats: int = 3) -> tuple[dict, str]:
    """What a `seqtool classify` call costs beyond `import torch`, per shipped classifier:
    `python -c "import torch"`, a one-line call and the 1,058 test lines (stdin), each run
    `repeats` times interleaved (the median kept), and the phases of a one-line call timed
    in one process (imports, checkpoint read and checks, model, tokenizers, classifying)."""
    models = ["sentiment-gru.seqtool", "brown-genre-gru.seqtool"]
    lines = (data / "test.tsv").read_text(encoding="utf-8").splitlines()
    texts = "".join(line.split("\t", 1)[1] + "\n" for line in lines)
    one = "A gorgeous, witty, seductive movie."

    def timed(args: list[str], stdin: str | None = None) -> float:
        start = time.perf_counter()
        subprocess.run([sys.executable, *args], input=stdin, check=True, capture_output=True,
                       text=True, cwd=ROOT)
        return time.perf_counter() - start

    runs: dict[str, list[float]] = {}
    for r in range(repeats):
        progress(f"round {r + 1} of {repeats}")
        runs.setdefault("import torch", []).append(timed(["-c", "import torch"]))
        for m in models:
            model = str(ROOT / "checkpoints" / m)
            runs.setdefault(f"{m} one line", []).append(
                timed(["-m", "seqtool.cli", "classify", "-m", model, one]))
            runs.setdefault(f"{m} beyond import torch", []).append(
                beyond_import_torch(model, one))
            runs.setdefault(f"{m} test file", []).append(
                timed(["-m", "seqtool.cli", "classify", "-m", model, "--format", "jsonl"],
                      texts))
    median = {k: statistics.median(v) for k, v in runs.items()}
    phases_code = (
        "import time, sys\nT = [time.perf_counter()]\nimport torch\nT.append(time.perf_counter())\n"
        "import seqtool.cli, seqtool.report, seqtool.text.data\n"
        "from seqtool.inference import predict\nT.append(time.perf_counter())\n"
        "from seqtool.checkpoint import Checkpoint\nfrom seqtool.text.tokenizer import Tokenizer\n"
        "ck = Checkpoint.load(sys.argv[1]); T.append(time.perf_counter())\n"
        "m = predict._build_loaded('classify', ck.model_config, ck.torch_weights())\n"
        "T.append(time.perf_counter())\n"
        "toks = {Tokenizer(b) for b in set(ck.tokenizers.values())}\n"
        "T.append(time.perf_counter())\n"
        "from seqtool.device import resolve_device\n"
        "d = resolve_device('auto'); T.append(time.perf_counter())\n"
        "loaded = predict.load(sys.argv[1], 'classify', 'auto', 'torch')\n"
        "T.append(time.perf_counter())\n"
        "from seqtool.decoding.scoring import classify_probabilities\n"
        "classify_probabilities(loaded.model, loaded.tokenizer, [sys.argv[2]])\n"
        "T.append(time.perf_counter())\n"
        "print(' '.join(str(b - a) for a, b in zip(T, T[1:])))")
    names = ["import torch", "seqtool imports (cli, report, predict)", "Checkpoint.load",
             "model built + weights assigned", "tokenizers (distinct)",
             "device probe", "predict.load (all of it, again)", "classify one line"]
    phases = {}
    for m in models:
        out = subprocess.run([sys.executable, "-c", phases_code, str(ROOT / "checkpoints" / m),
                              one], check=True, capture_output=True, text=True, cwd=ROOT,
                             env=os.environ).stdout.split()
        phases[m] = dict(zip(names, map(float, out), strict=True))
    rows = []
    for m in models:
        extra = median[f"{m} beyond import torch"]
        rows.append([m, median["import torch"], median[f"{m} one line"], extra,
                     median[f"{m} test file"],
                     median[f"{m} test file"] / median[f"{m} one line"],
                     len(lines) / median[f"{m} test file"]])
    markdown = table(["model", "import torch (s)", "one line (s)", "beyond import torch (s)",
                      f"{len(lines)} test lines (s)", "test lines / one line",
                      "lines/s (process incl.)"], rows)
    markdown += "\n\nPhases of a one-line call, one process (s):\n\n" + table(
        ["phase", *models], [[n, *(phases[m][n] for m in models)] for n in names])
    markdown += ("\n\nBeyond import torch: the call timed inside its own process from the "
                 "moment torch is imported (`BEYOND_CODE`), not one line minus import torch.")
    markdown += (f"\n\nMedians of {repeats} interleaved runs; load average at the end "
                 f"(1, 5, 15 min): {os.getloadavg()}")
    return {"runs": runs, "median": median, "phases": phases, "sentences": len(lines)}, markdown
