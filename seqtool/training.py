"""One training loop for every task: the seeds' IGD algorithm at mini-batch scale.

For each batch: forward, loss, backward, gradient clipping (against exploding gradients),
an Adam step and a learning-rate schedule. Every `eval_every` steps (or once an epoch) the dev
metric decides about the best checkpoint and early stopping. The last checkpoint carries the
optimizer, schedule, RNG and position, so `--resume` continues exactly where training stopped,
including after Ctrl-C.

Data parallelism: under `torchrun` each process takes every world_size-th example of the same
global batch, the summed losses are divided by the global number of units and the gradients
are summed across processes, so N processes compute the same update as one process would.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqtool.checkpoint import Checkpoint
from seqtool.data import token_budget_batches
from seqtool.errors import SeqtoolError


@dataclass
class TrainConfig:
    epochs: int = 10
    max_tokens: int = 4096  # padded tokens per global batch
    lr: float = 2e-3
    warmup_steps: int = 100
    schedule: str = "plateau"  # constant | linear | plateau (halve the rate when dev stalls)
    clip_norm: float = 1.0
    eval_every: int = 0  # steps; 0 = once an epoch
    patience: int = 5  # evaluations without improvement before stopping
    seed: int = 0
    device: str = "auto"
    precision: str = "fp32"  # fp32 | bf16
    max_steps: int = 0  # 0 = no limit
    max_minutes: float = 0.0  # 0 = no limit
    weight_decay: float = 0.0
    half_checkpoint: bool = False  # store the best weights in fp16 (smaller files)
    ema: float = 0.0  # decay of an exponential moving average of the weights; 0 = off
    quiet: bool = False


@dataclass
class Task:
    """What the loop needs to know about a task: its batches and its dev metric."""

    lengths: Sequence[int]  # cost of each training example in tokens
    collate: Callable[[Sequence[int]], dict[str, torch.Tensor]]  # example indices -> batch
    evaluate: Callable[[nn.Module], dict[str, float]]  # dev metrics
    metric: str  # key in evaluate()'s result that selects the best model
    higher_is_better: bool
    checkpoint: Callable[[nn.Module], Checkpoint]  # model -> checkpoint without train state


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise SeqtoolError("--device cuda: no CUDA device is available")
    if name not in ("cpu", "cuda"):
        raise SeqtoolError(f"unknown device {name!r}: auto, cpu or cuda")
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
    # Lengths stay on the CPU: packing reads them there.
    return {k: v if k.endswith("lengths") else v.to(device) for k, v in batch.items()}


def reuse_freed_memory() -> None:
    """Let glibc keep freed memory for the next allocation instead of unmapping it.

    By default glibc returns large freed blocks to the OS, so the next step page-faults its
    way through fresh memory for the same tensors, which on CPU cost about a tenth of a
    translation training step. The largest tensors of a step are kept under 32 MB
    (`Translator.loss`, `recurrence.py`), which keeps the heap from fragmenting: with them
    resident memory grew as with the default allocator (1.4 to 1.9 GB over 250 steps);
    before, with 100+ MB blocks, it had grown to 10 GB in 40 minutes. Nothing changes where
    the C library is not glibc."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_max = -1, -4
    libc.mallopt(m_mmap_max, 0)
    libc.mallopt(m_trim_threshold, 2**30)


def last_path(out: Path) -> Path:
    """Where the resumable last checkpoint of `out` lives: model.pt -> model.last.pt."""
    return out.with_name(out.stem + ".last" + out.suffix)


class Trainer:
    def __init__(self, model: nn.Module, task: Task, config: TrainConfig, out: Path):
        self.model, self.task, self.config, self.out = model, task, config, Path(out)
        self.rank, self.world = distributed()
        self.device = resolve_device(config.device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", self.rank % torch.cuda.device_count())
        self.model.to(self.device)
        reuse_freed_memory()
        self.optimizer = torch.optim.Adam(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.plateau_factor = 1.0
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best: float | None = None
        self.bad_evals = 0
        self.history: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.tokens_seen = 0
        # Polyak averaging: evaluate and ship a moving average of the weights, which is
        # smoother than the last step's weights (helps most on small data sets).
        self.ema = ([p.detach().clone() for p in model.parameters()]
                    if config.ema > 0 else None)

    # -- schedule -------------------------------------------------------------------------
    def _lr_factor(self, step: int) -> float:
        c = self.config
        warm = min(1.0, (step + 1) / c.warmup_steps) if c.warmup_steps > 0 else 1.0
        if c.schedule == "linear":
            total = max(1, self.total_steps)
            return warm * max(0.05, 1.0 - step / total)
        return warm * self.plateau_factor

    # -- batches --------------------------------------------------------------------------
    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The global batches of an epoch: a function of seed and epoch only (exact resume)."""
        rng = random.Random(self.config.seed * 100_003 + epoch)
        return token_budget_batches(self.task.lengths, self.config.max_tokens, rng)

    @functools.cached_property
    def total_steps(self) -> int:
        """Steps of the whole run, for the linear schedule (computed once, not every step)."""
        per_epoch = len(self.epoch_batches(0))
        steps = per_epoch * self.config.epochs
        return min(steps, self.config.max_steps) if self.config.max_steps else steps

    # -- state ----------------------------------------------------------------------------
    def train_state(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "plateau_factor": self.plateau_factor,
            "rng": torch.get_rng_state(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best": self.best if self.best is not None else float("nan"),
            "bad_evals": self.bad_evals,
            "train_seconds": self.train_seconds,
            "tokens_seen": self.tokens_seen,
            "ema": self.ema if self.ema is not None else [],
        }

    def resume(self, path: Path) -> None:
        ckpt = Checkpoint.load(path)
        if ckpt.train_state is None:
            raise SeqtoolError("checkpoint has no training state to resume from", str(path))
        self.model.load_state_dict(ckpt.weights)
        s = ckpt.train_state
        self.optimizer.load_state_dict(s["optimizer"])
        self.scheduler.load_state_dict(s["scheduler"])
        self.plateau_factor = float(s["plateau_factor"])
        torch.set_rng_state(s["rng"])
        self.step, self.epoch, self.batch_in_epoch = s["step"], s["epoch"], s["batch_in_epoch"]
        self.best = None if math.isnan(s["best"]) else float(s["best"])
        self.bad_evals = s["bad_evals"]
        self.train_seconds = float(s["train_seconds"])
        self.tokens_seen = int(s["tokens_seen"])
        if self.ema is not None and s.get("ema"):
            self.ema = [t.to(self.device) for t in s["ema"]]
        self.history = list(ckpt.meta.get("history", []))

    @contextlib.contextmanager
    def averaged_weights(self):
        """Swap the moving-average weights into the model for evaluation and saving."""
        if self.ema is None:
            yield
            return
        params = list(self.model.parameters())
        current = [p.detach().clone() for p in params]
        with torch.no_grad():
            for p, a in zip(params, self.ema):
                p.copy_(a)
        try:
            yield
        finally:
            with torch.no_grad():
                for p, c in zip(params, current):
                    p.copy_(c)

    def save(self, best: bool) -> None:
        if self.rank != 0:
            return
        meta = {"history": self.history, "train_seconds": round(self.train_seconds, 1),
                "steps": self.step}
        if best:
            with self.averaged_weights():
                ckpt = self.task.checkpoint(self.model)
                ckpt.meta.update(meta)
                ckpt.meta["best_" + self.task.metric] = self.best
                ckpt.save(self.out, half=self.config.half_checkpoint)
        ckpt = self.task.checkpoint(self.model)
        ckpt.meta.update(meta)
        ckpt.train_state = self.train_state()
        ckpt.save(last_path(self.out))

    # -- loop -----------------------------------------------------------------------------
    def train_batch(self, indices: Sequence[int]) -> tuple[float, int]:
        """One IGD step on a global batch; returns (summed loss, units) over all processes."""
        local = indices[self.rank :: self.world]
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        batch = to_device(self.task.collate(local), self.device) if local else None
        if batch is not None:
            with autocast(self.device, self.config.precision):
                loss_sum, units = self.model.loss(batch)
        else:
            loss_sum, units = torch.zeros((), device=self.device), 0
        totals = torch.tensor([float(units), loss_sum.item()], dtype=torch.float64)
        if self.world > 1:
            torch.distributed.all_reduce(totals)
        total_units = max(1.0, totals[0].item())
        if batch is not None:
            (loss_sum / total_units).backward()
        if self.world > 1:
            for p in self.model.parameters():
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                torch.distributed.all_reduce(p.grad)
        if self.config.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            with torch.no_grad():
                params = [p.detach() for p in self.model.parameters()]
                torch._foreach_lerp_(self.ema, params, 1.0 - self.config.ema)
        return totals[1].item(), int(total_units)

    def evaluate(self) -> bool:
        """Dev evaluation; returns True when training should stop early."""
        self.model.eval()
        with torch.no_grad(), autocast(self.device, self.config.precision), \
                self.averaged_weights():
            metrics = self.task.evaluate(self.model) if self.rank == 0 else {}
        value = metrics.get(self.task.metric, float("nan"))
        if self.world > 1:
            t = torch.tensor([value], dtype=torch.float64)
            torch.distributed.broadcast(t, 0)
            value = t.item()
        better = self.best is None or (
            value > self.best if self.task.higher_is_better else value < self.best
        )
        if better:
            self.best, self.bad_evals = value, 0
        else:
            self.bad_evals += 1
            if self.config.schedule == "plateau" and self.bad_evals % 2 == 0:
                self.plateau_factor *= 0.5  # two evaluations without progress: halve the rate
        record = {
            "step": self.step,
            "epoch": round(self.epoch + self.batch_in_epoch / max(1, self.batches_per_epoch), 2),
            "train_loss": round(self.window_loss / max(1, self.window_units), 4),
            "lr": self.optimizer.param_groups[0]["lr"],
            "tokens_per_s": round(self.tokens_seen / max(1e-9, self.train_seconds), 1),
            **{k: round(v, 4) for k, v in metrics.items()},
        }
        self.history.append(record)
        self.window_loss, self.window_units = 0.0, 0
        self.log(
            f"step {self.step} epoch {record['epoch']}: train loss {record['train_loss']}, "
            f"dev {self.task.metric} {value:.4f}{' (best)' if better else ''}, "
            f"{record['tokens_per_s']:.0f} tok/s"
        )
        self.save(best=better)
        return self.bad_evals >= self.config.patience

    def log(self, message: str) -> None:
        if self.rank == 0 and not self.config.quiet:
            print(message, file=sys.stderr, flush=True)

    def fit(self) -> dict[str, Any]:
        """Train until the epochs, steps or time run out or the dev metric stops improving."""
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        c = self.config
        if self.step == 0:
            torch.manual_seed(c.seed)  # dropout masks; a resumed run keeps its restored RNG
        self.window_loss, self.window_units = 0.0, 0
        self.batches_per_epoch = len(self.epoch_batches(self.epoch))
        console = Console(stderr=True)
        progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"), BarColumn(),
            TextColumn("{task.completed}/{task.total} loss {task.fields[loss]:.3f} "
                       "{task.fields[tps]:.0f} tok/s"),
            TimeElapsedColumn(), console=console, transient=True,
            disable=c.quiet or self.rank != 0 or not console.is_terminal,
        )
        stop = False
        started = time.perf_counter() - self.train_seconds
        last_log = -math.inf  # the first step logs at once, then one line a minute
        interrupted = False
        try:
            with progress:
                while self.epoch < c.epochs and not stop:
                    batches = self.epoch_batches(self.epoch)
                    bar = progress.add_task("train", total=len(batches), epoch=self.epoch + 1,
                                            loss=0.0, tps=0.0, completed=self.batch_in_epoch)
                    while self.batch_in_epoch < len(batches):
                        t0 = time.perf_counter()
                        indices = batches[self.batch_in_epoch]
                        loss, units = self.train_batch(indices)
                        self.train_seconds += time.perf_counter() - t0
                        self.tokens_seen += sum(self.task.lengths[i] for i in indices)
                        self.window_loss += loss
                        self.window_units += units
                        self.step += 1
                        self.batch_in_epoch += 1
                        tps = self.tokens_seen / max(1e-9, self.train_seconds)
                        progress.update(bar, advance=1, loss=loss / max(1, units), tps=tps)
                        if progress.disable and time.perf_counter() - last_log > 60:
                            # No live bar (a log file, CI): a line a minute shows progress.
                            last_log = time.perf_counter()
                            self.log(f"step {self.step} epoch {self.epoch + 1}: "
                                     f"loss {loss / max(1, units):.4f}, {tps:.0f} tok/s")
                        out_of_time = bool(c.max_minutes) and (
                            time.perf_counter() - started > 60 * c.max_minutes
                        )
                        out_of_steps = bool(c.max_steps) and self.step >= c.max_steps
                        if (c.eval_every and self.step % c.eval_every == 0) or (
                            self.batch_in_epoch == len(batches) and not c.eval_every
                        ):
                            stop = self.evaluate()
                        if stop or out_of_time or out_of_steps:
                            stop = True
                            break
                    progress.remove_task(bar)
                    if self.batch_in_epoch >= len(batches):
                        self.epoch += 1
                        self.batch_in_epoch = 0
                if not self.history or self.history[-1]["step"] != self.step:
                    self.evaluate()
        except KeyboardInterrupt:
            interrupted = True
        if interrupted:
            self.save(best=False)
            raise SeqtoolError(
                f"interrupted at step {self.step}; resume with --resume "
                f"(state in {last_path(self.out)})"
            )
        return {"best": self.best, "steps": self.step, "seconds": self.train_seconds,
                "history": self.history}
