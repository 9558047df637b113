"""One training loop for every task: the seeds' IGD algorithm at mini-batch scale.

For each batch: forward, loss, backward, gradient clipping (against exploding gradients),
an Adam step and a learning-rate schedule. Every `eval_every` steps (or once an epoch) the dev
metric decides about the best checkpoint and early stopping. The last checkpoint carries the
optimizer, schedule, RNG and position, so `--resume` continues exactly where training stopped,
including after Ctrl-C.

Data parallelism: under `torchrun` each process takes every world_size-th example of the same
global batch and the model is wrapped in `DistributedDataParallel` (bucketed all-reduce,
overlapped with backward, gloo or NCCL). Each process scales its summed loss so that the
averaged gradient equals the gradient of (global summed loss / global units): without dropout
N processes compute the same update as one process would. With dropout each process draws its
own masks (from seed, step and rank), so the runs agree in distribution, not bit for bit.

Randomness: before every step the generators are reseeded from (seed, step, rank). Dropout masks
are then a function of the position in the run alone, so a resumed run, whether it stopped at a
step limit, Ctrl-C, SIGTERM or a crash, continues with exactly the draws the uninterrupted run
makes, on CPU and CUDA alike, with no generator state to save.
"""

from __future__ import annotations

import contextlib
import functools
import math
import random
import signal
import sys
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqtool.checkpoint import Checkpoint
from seqtool.config import TrainConfig
from seqtool.device import autocast, distributed, resolve_device, to_device
from seqtool.errors import SeqtoolError
from seqtool.text.data import token_budget_batches


@dataclass
class Task:
    """What the loop needs to know about a task: its batches and its dev metric."""

    lengths: Sequence[int]  # cost of each training example in tokens
    collate: Callable[[Sequence[int]], dict[str, torch.Tensor]]  # example indices -> batch
    evaluate: Callable[[nn.Module], dict[str, float]]  # dev metrics
    metric: str  # key in evaluate()'s result that selects the best model
    higher_is_better: bool
    checkpoint: Callable[[nn.Module], Checkpoint]  # model -> checkpoint without train state


def step_seed(seed: int, step: int, rank: int) -> int:
    """The seed of one training step's random draws (dropout): a function of the run's
    position only, so resuming needs no saved generator state."""
    return (seed * 1_000_003 + step) * 1_009 + rank


class LossModule(nn.Module):
    """`model.loss` as a forward pass, so DistributedDataParallel sees the call it hooks."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        return self.model.loss(batch)


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


# Options that may change when a run is resumed: how long it runs, where, how loudly.
RESUMABLE_CHANGES = frozenset({"epochs", "max_steps", "max_minutes", "patience", "device",
                               "quiet", "resume", "out"})
# Options naming files whose content, not name, belongs to the run.
DATA_FILES = frozenset({"train_path", "dev_path", "train_src", "train_tgt", "dev_src",
                        "dev_tgt", "tokenizer_path", "init", "embeddings"})


def file_digest(path: str | None) -> str | None:
    """SHA-256 of a file's bytes (None for no file or stdin)."""
    import hashlib

    if not path or path == "-":
        return None
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        raise SeqtoolError(f"cannot read: {e.strerror}", path) from None
    return digest.hexdigest()


def run_fingerprint(options: dict[str, Any]) -> dict[str, Any]:
    """What identifies a training run: its options and a hash of each data file."""
    return {
        "options": {k: v for k, v in sorted(options.items())
                    if k not in RESUMABLE_CHANGES and k not in DATA_FILES},
        "data": {k: [file_digest(f) for f in v] if isinstance(v, (list, tuple))
                 else file_digest(v) for k, v in sorted(options.items()) if k in DATA_FILES},
    }


def check_same_run(saved: dict[str, Any] | None, now: dict[str, Any], path: Path) -> None:
    """Refuse to resume a run with other data or options than the run that was saved."""
    if not saved:
        raise SeqtoolError("cannot resume: this checkpoint does not record its run's data "
                           "and options (written by an older seqtool)", str(path))
    for key in sorted(set(saved["data"]) | set(now["data"])):
        if saved["data"].get(key) != now["data"].get(key):
            option = "--" + key.removesuffix("_path").replace("_", "-")
            raise SeqtoolError(f"cannot resume: the {option} data differ from the run being "
                               f"resumed (start a new run, or restore the file)", str(path))
    for key in sorted(set(saved["options"]) | set(now["options"])):
        was, now_value = saved["options"].get(key), now["options"].get(key)
        if was != now_value:
            raise SeqtoolError(f"cannot resume: --{key.replace('_', '-')} was {was!r} in the "
                               f"run being resumed, now {now_value!r}", str(path))


class StopRequest:
    """Ctrl-C and SIGTERM ask training to stop at the next step boundary, where the state is
    whole, so the saved last checkpoint resumes exactly. A second Ctrl-C aborts at once."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: int | None = None
        self.previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        if threading_main():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self.handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def handle(self, sig: int, _frame: object) -> None:
        if self.signal is not None and sig == signal.SIGINT:
            raise KeyboardInterrupt  # asked twice: stop now, the last saved state stays
        self.signal = sig
        print(f"{signal.Signals(sig).name}: stopping after this step "
              f"(Ctrl-C again to abort at once)", file=sys.stderr, flush=True)


def threading_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


class Trainer:
    def __init__(self, model: nn.Module, task: Task, config: TrainConfig, out: Path,
                 pretrained: Mapping[str, int] | Collection[str] = ()):
        """`pretrained`: names of the parameters set by --init, or a map from each to the
        first epoch in which it learns (gradual unfreezing; 0 = from the start)."""
        self.model, self.task, self.config, self.out = model, task, config, Path(out)
        self.rank, self.world = distributed()
        self.device = resolve_device(config.device)
        if self.device.type == "cuda" and self.world > 1:
            self.device = torch.device("cuda", self.rank % torch.cuda.device_count())
        self.model.to(self.device)
        self.loss_module: nn.Module = LossModule(model)
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.loss_module = DistributedDataParallel(self.loss_module, device_ids=ids)
        reuse_freed_memory()
        # Parameters set by --init learn at their own (lower) rate; the schedule scales both.
        named = list(model.named_parameters())
        groups = [{"params": [p for n, p in named if n not in pretrained]}]
        if pretrained:
            groups.append({"params": [p for n, p in named if n in pretrained],
                           "lr": config.lr * config.pretrained_lr_scale})
        self.optimizer = torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
        # Frozen until their epoch: no gradient, so Adam leaves them and their moments alone.
        thaw = pretrained if isinstance(pretrained, Mapping) else {}
        self.thawing = [(p, thaw[n]) for n, p in named if thaw.get(n, 0) > 0]
        self.plateau_factor = 1.0
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._lr_factor)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best: float | None = None
        self.best_saved: float | None = None  # metric of the model in --out (this process)
        self.bad_evals = 0
        self.finished = False  # True once fit ends whole; a run killed mid-way leaves False
        self.history: list[dict[str, Any]] = []
        self.train_seconds = 0.0
        self.tokens_seen = 0
        self.window_loss, self.window_units = 0.0, 0
        self.batches_per_epoch = 0
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
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best": self.best if self.best is not None else float("nan"),
            "bad_evals": self.bad_evals,
            "train_seconds": self.train_seconds,
            "tokens_seen": self.tokens_seen,
            "window": [self.window_loss, float(self.window_units)],
            "ema": self.ema if self.ema is not None else [],
            "finished": self.finished,
        }

    def resume(self, ckpt: Checkpoint, path: Path) -> None:
        """Continue from a last checkpoint (already checked to belong to this run)."""
        s = ckpt.train_state
        if s is None:
            raise SeqtoolError("checkpoint has no training state to resume from", str(path))
        try:
            self.model.load_state_dict(ckpt.weights)
            self.optimizer.load_state_dict(s["optimizer"])
            self.scheduler.load_state_dict(s["scheduler"])
            self.plateau_factor = float(s["plateau_factor"])
            self.step, self.epoch = int(s["step"]), int(s["epoch"])
            self.batch_in_epoch = int(s["batch_in_epoch"])
            self.best = None if math.isnan(s["best"]) else float(s["best"])
            self.bad_evals = int(s["bad_evals"])
            self.train_seconds = float(s["train_seconds"])
            self.tokens_seen = int(s["tokens_seen"])
            if "window" in s:
                self.window_loss, self.window_units = float(s["window"][0]), int(s["window"][1])
            if self.ema is not None and s.get("ema"):
                self.ema = [t.to(self.device) for t in s["ema"]]
        except (KeyError, RuntimeError, ValueError, TypeError) as e:
            raise SeqtoolError(f"cannot resume: {str(e).splitlines()[0]}", str(path)) from None
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

    def save_best(self) -> None:
        if self.rank != 0:
            return
        with self.averaged_weights():
            ckpt = self.task.checkpoint(self.model)
            ckpt.meta.update(self.progress_meta())
            ckpt.meta["best_" + self.task.metric] = self.best
            ckpt.save(self.out, half=self.config.half_checkpoint)

    def save_last(self) -> None:
        if self.rank != 0:
            return
        ckpt = self.task.checkpoint(self.model)
        ckpt.meta.update(self.progress_meta())
        ckpt.train_state = self.train_state()
        ckpt.save(last_path(self.out))

    def progress_meta(self) -> dict[str, Any]:
        return {"history": self.history, "train_seconds": round(self.train_seconds, 1),
                "steps": self.step}

    # -- loop -----------------------------------------------------------------------------
    @torch.enable_grad()  # also when a caller runs the library under torch.no_grad()
    def train_batch(self, indices: Sequence[int], stop: bool = False) -> tuple[float, int, bool]:
        """One IGD step on a global batch. Returns the summed loss and units over all
        processes, and whether any process was asked to stop (all then stop together)."""
        torch.manual_seed(step_seed(self.config.seed, self.step, self.rank))
        local = list(indices[self.rank :: self.world])
        # A process without examples still takes part (DDP needs every process in every
        # all-reduce): it runs one example with weight 0.
        weight = 1.0 if local else 0.0
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        batch = to_device(self.task.collate(local or list(indices[:1])), self.device)
        with autocast(self.device, self.config.precision):
            loss_sum, units = self.loss_module(batch)
        units = units if local else 0
        # On the model's device: NCCL reduces only CUDA tensors.
        totals = torch.tensor([float(units), loss_sum.item() * weight, float(stop)],
                              dtype=torch.float64, device=self.device)
        if self.world > 1:
            torch.distributed.all_reduce(totals)
        total_units = max(1.0, totals[0].item())
        # DDP averages gradients over processes; scaling by world makes that average the
        # gradient of the global summed loss over the global units.
        (loss_sum * (weight * self.world / total_units)).backward()
        for param, epoch in self.thawing:
            if self.epoch < epoch:
                param.grad = None
        if self.config.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            with torch.no_grad():
                params = [p.detach() for p in self.model.parameters()]
                torch._foreach_lerp_(self.ema, params, 1.0 - self.config.ema)
        return totals[1].item(), int(total_units), totals[2].item() > 0

    def evaluate(self, scheduled: bool = True) -> bool:
        """Dev evaluation; returns True when training should stop early.

        The closing evaluation of a run cut short by --max-steps or --max-minutes is not
        `scheduled`: it may save a better model, but leaves the best score, patience and
        learning-rate schedule as they were, so that --resume continues as if it never ran."""
        self.model.eval()
        with torch.no_grad(), autocast(self.device, self.config.precision), \
                self.averaged_weights():
            metrics = self.task.evaluate(self.model) if self.rank == 0 else {}
        value = metrics.get(self.task.metric, float("nan"))
        if self.world > 1:
            t = torch.tensor([value], dtype=torch.float64, device=self.device)
            torch.distributed.broadcast(t, 0)
            value = t.item()
        better = self.best is None or (
            value > self.best if self.task.higher_is_better else value < self.best
        )
        saved = (self.best, self.bad_evals, self.plateau_factor, self.window_loss,
                 self.window_units)
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
        if better or self.config.keep == "last":
            self.save_best()
            self.best_saved = value  # what --out holds, also after a closing evaluation
        if not scheduled:
            (self.best, self.bad_evals, self.plateau_factor, self.window_loss,
             self.window_units) = saved
        self.save_last()
        return self.bad_evals >= self.config.patience

    def log(self, message: str) -> None:
        if self.rank == 0 and not self.config.quiet:
            print(message, file=sys.stderr, flush=True)

    def fit(self) -> dict[str, Any]:
        """Train until the epochs, steps or time run out or the dev metric stops improving.

        Ctrl-C or SIGTERM stops at the next step boundary, saves the last checkpoint and
        raises `TrainingInterrupted`."""
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        c = self.config
        self.batches_per_epoch = len(self.epoch_batches(self.epoch))
        console = Console(stderr=True)
        progress = Progress(
            TextColumn("epoch {task.fields[epoch]}"), BarColumn(),
            TextColumn("{task.completed}/{task.total} loss {task.fields[loss]:.3f} "
                       "{task.fields[tps]:.0f} tok/s"),
            TimeElapsedColumn(), console=console, transient=True,
            disable=c.quiet or self.rank != 0 or not console.is_terminal,
        )
        # A resumed run that had already stopped early stays stopped, as the uninterrupted run
        # with these options would have (a larger --patience lets it go on).
        stop = self.best is not None and self.bad_evals >= c.patience
        started = time.perf_counter() - self.train_seconds
        last_log = -math.inf  # the first step logs at once, then one line a minute
        interrupted = False
        with StopRequest() as request, progress:
            while self.epoch < c.epochs and not stop:
                batches = self.epoch_batches(self.epoch)
                bar = progress.add_task("train", total=len(batches), epoch=self.epoch + 1,
                                        loss=0.0, tps=0.0, completed=self.batch_in_epoch)
                while self.batch_in_epoch < len(batches):
                    t0 = time.perf_counter()
                    indices = batches[self.batch_in_epoch]
                    loss, units, interrupted = self.train_batch(
                        indices, request.signal is not None)
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
                        stop = self.evaluate()  # also when interrupted: resume skips it
                    if stop or out_of_time or out_of_steps or interrupted:
                        stop = True
                        break
                progress.remove_task(bar)
                if self.batch_in_epoch >= len(batches):
                    self.epoch += 1
                    self.batch_in_epoch = 0
            if interrupted:
                self.save_last()
                raise TrainingInterrupted(
                    f"interrupted at step {self.step}; resume with --resume "
                    f"(state in {last_path(self.out)})", request.signal or signal.SIGINT)
            self.finished = True
            if not self.history or self.history[-1]["step"] != self.step:
                self.evaluate(scheduled=False)  # saves the last checkpoint too
            else:
                self.save_last()
        best = self.best_saved if self.best_saved is not None else self.best
        if best is None:
            best = float("nan")
        return {"best": best, "steps": self.step, "seconds": self.train_seconds,
                "history": self.history}


class TrainingInterrupted(SeqtoolError):
    """Training stopped on Ctrl-C or SIGTERM after saving a resumable checkpoint; the exit
    status is the shell's for that signal (130, 143)."""

    def __init__(self, message: str, sig: int):
        super().__init__(message)
        self.exit_code = 128 + sig
