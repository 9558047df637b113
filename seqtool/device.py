"""Where and how precisely models run: the device, mixed precision, and the process group
of a torchrun launch. Shared by training and inference."""

from __future__ import annotations

import contextlib
import os

import torch

from seqtool.errors import SeqtoolError


def resolve_device(name: str) -> torch.device:
    """"auto" (cuda when available), "cpu" or "cuda". Under torchrun each process takes the
    GPU of its LOCAL_RANK (one process per GPU, as torchrun's --nproc_per_node counts)."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SeqtoolError("--device cuda: no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise SeqtoolError(f"unknown device {name!r}: auto, cpu or cuda")
    if name == "cuda" and "LOCAL_RANK" in os.environ:
        index = int(os.environ["LOCAL_RANK"]) % torch.cuda.device_count()
        torch.cuda.set_device(index)  # NCCL's collectives use the current device
        return torch.device("cuda", index)
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision != "fp32":
        raise SeqtoolError(f"unknown precision {precision!r}: fp32 or bf16")
    return contextlib.nullcontext()


def distributed() -> tuple[int, int]:
    """(rank, world size); initialises torch.distributed when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def to_device(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    """Every tensor of a batch, lengths included, on the model's device."""
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def reuse_freed_memory() -> None:
    """Let glibc keep freed memory for the next allocation instead of unmapping it.

    By default glibc returns large freed blocks to the OS, so the next step page-faults its
    way through fresh memory for the same tensors, which on CPU cost about a tenth of a
    translation training step. The largest tensors of a step are kept under 32 MB
    (`Translator.loss`, `nn/fast.py`), which keeps the heap from fragmenting: with them
    resident memory grew as with the default allocator (1.4 to 1.9 GB over 250 steps);
    before, with 100+ MB blocks, it had grown to 10 GB in 40 minutes. Nothing changes where
    the C library is not glibc.

    It changes the allocator of the whole process, so nothing in the library calls it: the
    command line (or a benchmark) opts in before training."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_max = -1, -4
    libc.mallopt(m_mmap_max, 0)
    libc.mallopt(m_trim_threshold, 2**30)
