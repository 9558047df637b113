"""Shared by the benchmark scripts: machine facts, a table printer, result files."""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> dict[str, Any]:
    import torch

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cpu": cpu,
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


def record(name: str, results: dict[str, Any], markdown: str,
           folder: Path | None = None) -> None:
    """Print the table and write FOLDER/NAME.{json,md} (default benchmarks/results)."""
    folder = Path(folder) if folder else RESULTS
    folder.mkdir(parents=True, exist_ok=True)
    info = machine()
    payload = {"machine": info, **results}
    (folder / f"{name}.json").write_text(json.dumps(payload, indent=2) + "\n")
    header = (f"# {name}\n\n{info['date']} on {info['cpu']} ({info['cores']} cores, "
              f"{info['torch_threads']} torch threads), Python {info['python']}, "
              f"torch {info['torch']}\n\n")
    (folder / f"{name}.md").write_text(header + markdown + "\n")
    print(markdown)


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
