"""One training loop for every task: the seeds' IGD algorithm at mini-batch scale.

For each batch: forward, loss, backward, gradient clipping (against exploding gradients),
an Adam step and a learning-rate schedule (`schedule.py`). Every `eval_every` steps (or once an
epoch) the dev metric decides about the best checkpoint and early stopping. The last checkpoint
carries the optimizer, schedule, moving average and position, so `--resume` continues exactly
where training stopped, including after Ctrl-C (`resume.py`).

Data parallelism: under `torchrun` the model is wrapped in `DistributedDataParallel` (bucketed
all-reduce, overlapped with backward, gloo or NCCL), which averages the gradients over the
processes. Each process takes its shard of the same global batch, DistributedSampler's way:
the examples rank, rank + world, ... (without its padding, which would count examples twice).
The processes' shards hold different numbers of tokens, so for the averaged gradient to be the
gradient of (global summed loss / global units), as one process computes it, each process
divides its summed loss by the global units (one all-reduce) and multiplies by the world size,
undoing DDP's division. Without dropout N processes then compute the same update as one
process would. With dropout each process draws its own masks (from seed, step and rank), so
the runs agree in distribution, not bit for bit.
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
from seqtool.training.resume import (  # noqa: F401 (check_same_run, run_fingerprint: the CLI)
    StopRequest,
    TrainingInterrupted,
    check_same_run,
    damaged_state,
    last_path,
    run_fingerprint,
    step_seed,
)
from seqtool.training.schedule import Schedule, WeightAverage, lr_factor, warmup_steps


@dataclass
class Task:
    """What the loop needs to know about a task: its batches and its dev metric."""

    lengths: Sequence[int]  # cost of each training example in tokens
    collate: Callable[[Sequence[int]], dict[str, torch.Tensor]]  # example indices -> batch
    evaluate: Callable[[nn.Module], dict[str, float]]  # dev metrics
    metric: str  # key in evaluate()'s result that selects the best model
    higher_is_better: bool
    checkpoint: Callable[[nn.Module], Checkpoint]  # model -> checkpoint without train state
    chance: float | None = None  # dev metric of a constant answer (the warning of a weak run)
    dev_size: int = 0  # dev examples behind the metric


def shard(indices: Sequence[int], rank: int, world: int) -> list[int]:
    """This process's examples of a global batch: DistributedSampler's split (rank, rank +
    world, ...) without its padding, so no example counts twice."""
    return list(indices[rank::world])


class LossModule(nn.Module):
    """`model.loss` as a forward pass, so DistributedDataParallel sees the call it hooks."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        return self.model.loss(batch)


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
        self.warmup_steps = warmup_steps(config.warmup, config.warmup_steps, self.total_steps)
        self.scheduler = Schedule(self.optimizer, config.schedule, self.warmup_steps,
                                  self.total_steps if config.schedule == "linear" else 0,
                                  task.higher_is_better)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.best: float | None = None
        self.best_saved: float | None = None  # metric of the model in --out (this process)
        self.bad_evals = 0
        self.finished = False  # True once fit ends whole; a run killed mid-way leaves False
        self.history: list[dict[str, Any]] = []
        self.events: Any = None  # an EventWriter (--tensorboard), set by the caller
        self.train_seconds = 0.0
        self.tokens_seen = 0
        self.window_loss, self.window_units = 0.0, 0
        self.batches_per_epoch = 0
        # Polyak averaging: evaluate and ship a moving average of the weights, which is
        # smoother than the last step's weights (helps most on small data sets).
        self.ema = WeightAverage(model, config.ema) if config.ema > 0 else None

    # -- schedule -------------------------------------------------------------------------
    def _lr_factor(self, step: int) -> float:
        """The schedule's factor at `step` (for plateau: before any halving)."""
        c = self.config
        return lr_factor(step, c.schedule, self.warmup_steps, self.total_steps)

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
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "best": self.best if self.best is not None else float("nan"),
            "bad_evals": self.bad_evals,
            "train_seconds": self.train_seconds,
            "tokens_seen": self.tokens_seen,
            "window": [self.window_loss, float(self.window_units)],
            "ema": self.ema.tensors() if self.ema is not None else [],
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
            self.best = None if math.isnan(s["best"]) else float(s["best"])
            self.bad_evals = int(s["bad_evals"])
            if "plateau_factor" in s:  # saved by a seqtool before torch's schedulers
                self.scheduler.load_legacy_state(s["scheduler"], float(s["plateau_factor"]),
                                                 self.best, self.bad_evals,
                                                 self.warmup_steps)
            else:
                self.scheduler.load_state_dict(s["scheduler"])
            self.step, self.epoch = int(s["step"]), int(s["epoch"])
            self.batch_in_epoch = int(s["batch_in_epoch"])
            self.train_seconds = float(s["train_seconds"])
            self.tokens_seen = int(s["tokens_seen"])
            if "window" in s:
                self.window_loss, self.window_units = float(s["window"][0]), int(s["window"][1])
            if self.ema is not None and s.get("ema"):
                self.ema.load(s["ema"])
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError, AttributeError) as e:
            raise damaged_state(e, path) from None
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
            for p, a in zip(params, self.ema.tensors()):
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

    def complete_history(self) -> None:
        """Give --out the whole run's history, not only the evaluations up to its best, so
        that its record (`seqtool plot`, `info`) shows the run that chose it."""
        if self.rank != 0 or not self.out.is_file():
            return
        ckpt = Checkpoint.load(self.out)
        if ckpt.meta.get("history") != self.history:
            ckpt.meta["history"] = self.history
            ckpt.save(self.out, half=self.config.half_checkpoint)

    def progress_meta(self) -> dict[str, Any]:
        return {"history": self.history, "train_seconds": round(self.train_seconds, 1),
                "steps": self.step}

    # -- loop -----------------------------------------------------------------------------
    @torch.enable_grad()  # also when a caller runs the library under torch.no_grad()
    def train_batch(self, indices: Sequence[int], stop: bool = False) -> tuple[float, int, bool]:
        """One IGD step on a global batch. Returns the summed loss and units over all
        processes, and whether any process was asked to stop (all then stop together)."""
        torch.manual_seed(step_seed(self.config.seed, self.step, self.rank))
        local = shard(indices, self.rank, self.world)
        # A process without examples still takes part (DDP needs every process in every
        # all-reduce): it runs the batch's first example with weight 0.
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
        # DDP averages the processes' gradients (divides their sum by world); this scale makes
        # that average the gradient of the global summed loss over the global units.
        (loss_sum * (weight * self.world / total_units)).backward()
        for param, epoch in self.thawing:
            if self.epoch < epoch:
                param.grad = None
        if self.config.clip_norm > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.clip_norm)
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update()
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
        saved = (self.best, self.bad_evals, self.window_loss, self.window_units)
        if better:
            self.best, self.bad_evals = value, 0
        elif self.step >= self.warmup_steps:  # patience waits for the full learning rate
            self.bad_evals += 1
        if scheduled:
            self.scheduler.evaluated(value)  # plateau: halves after two stalls in a row
        record = {
            "step": self.step,
            "epoch": round(self.epoch + self.batch_in_epoch / max(1, self.batches_per_epoch), 2),
            "train_loss": round(self.window_loss / max(1, self.window_units), 4),
            "lr": self.optimizer.param_groups[0]["lr"],
            "tokens_per_s": round(self.tokens_seen / max(1e-9, self.train_seconds), 1),
            **{k: round(v, 4) for k, v in metrics.items()},
        }
        self.history.append(record)
        if self.events is not None and self.rank == 0:
            self.events.evaluation(record)
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
            self.best, self.bad_evals, self.window_loss, self.window_units = saved
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
                    if self.events is not None and self.rank == 0:
                        self.events.batch(self.step, loss / max(1, units))
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
            self.complete_history()
        best = self.best_saved if self.best_saved is not None else self.best
        if best is None:
            best = float("nan")
        return {"best": best, "steps": self.step, "seconds": self.train_seconds,
                "history": self.history}

