"""Shared by the benchmark scripts: machine facts, a table printer, result files, progress.

Results go to `--results DIR` (default benchmarks/out/, not tracked); only `--record` writes
the tracked benchmarks/results/ that the docs cite. Progress lines go to stderr."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "benchmarks" / "out"  # the default --results folder (in .gitignore)
_output = OUT  # where record() writes; use_output() sets it


def output_options(parser: Any) -> None:
    """--results DIR and --record, for every benchmark script's argument parser."""
    parser.add_argument("--results", type=Path, default=OUT, metavar="DIR",
                        help="folder for NAME.json and NAME.md (default: benchmarks/out/, "
                             "not tracked)")
    parser.add_argument("--record", action="store_true",
                        help="write the tracked benchmarks/results/ instead, which the docs "
                             "cite (for a run that is to replace the published figures)")


def use_output(args: Any) -> None:
    """Take --results/--record from parsed arguments."""
    global _output
    _output = RESULTS if args.record else Path(args.results)


def output_folder() -> Path:
    """The folder record() writes to (for a script's own caches beside its results)."""
    return _output


def progress(message: str) -> None:
    """One progress line on stderr, with the time."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def machine() -> dict[str, Any]:
    import torch

    cpu, flags = platform.processor() or "", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and cpu == (platform.processor() or ""):
                cpu = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        pass
    # The widest vector instructions: "AMD EPYC" names CPUs whose BLAS kernels differ
    # (AVX-512 or not), and with them the speeds and the ratios between backends.
    simd = next((f for f in ("avx512f", "avx2", "avx") if f in flags), "")
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu,
        "simd": simd,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
    }


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[str(c) for c in headers]] + [[f"{c:.4g}" if isinstance(c, float) else str(c)
                                            for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def record(name: str, results: dict[str, Any], markdown: str) -> None:
    """Print the table and write NAME.{json,md} to the --results folder (benchmarks/out/ by
    default; benchmarks/results/ with --record)."""
    _output.mkdir(parents=True, exist_ok=True)
    info = machine()
    payload = {"machine": info, **results}
    (_output / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    simd = f", {info['simd']}" if info.get("simd") else ""
    header = (f"# {name}\n\n{info['date']} on {info['cpu']}{simd} ({info['cores']} cores, "
              f"{info['torch_threads']} torch threads), Python {info['python']}, "
              f"torch {info['torch']}\n\n")
    (_output / f"{name}.md").write_text(header + markdown + "\n")
    print(markdown)
    progress(f"wrote {_output / name}.json and .md"
             + ("" if _output == RESULTS else " (--record writes benchmarks/results/)"))


def evaluate_generator(model: str | Path, data: Path, split: str, guidance: str = "1",
                       lexicon: str = "model", threads: str = "1") -> dict[str, Any]:
    """`seqtool evaluate generate` (through the API) on DATA/SPLIT.tsv with the default
    sampling settings (200 samples per class at temperature 0.8), copies counted against
    DATA/train.tsv, on `threads` torch threads."""
    import torch

    import seqtool

    torch.set_num_threads(int(threads))
    return seqtool.evaluate("generate", data / f"{split}.tsv", model, device="cpu",
                            train_path=str(data / "train.tsv"), samples=200, temperature=0.8,
                            lexicon=lexicon, guidance=float(guidance))
