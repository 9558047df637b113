"""The learning-rate schedules and the moving average of the weights, from torch's own parts.

Schedules (`--schedule`, with W warm-up steps: `--warmup-steps W`, or else `--warmup` times the
planned steps, rounded, at most 100); step s (from 0) runs at lr x factor(s):

    warm(s)  = min(1, (s + 1) / W)                 (1 when W is 0)
    constant : warm(s)
    linear   : warm(s) * max(0.05, 1 - s / total)  (total: the run's steps)
    plateau  : warm(s) * 0.5 ** h, h = how often dev has stalled twice in a row

`constant` and `linear` are one `LambdaLR` with that closed formula. `plateau` is a `LinearLR`
warm-up (from 1/W to 1 over W - 1 steps, which is warm(s)) and a `ReduceLROnPlateau`
(factor 0.5, patience 1, no threshold): every second evaluation in a row without a better dev
metric halves the rate, from the next step on. Both act on the optimizer's current rate, so a
halving during the warm-up holds, as the product above says. Every part of the optimizer
(their rates included) and of the schedulers is in `Schedule.state_dict()`, which the resumable
last checkpoint carries.

Polyak averaging (`--ema DECAY`): `torch.optim.swa_utils.AveragedModel` with
`get_ema_multi_avg_fn(DECAY)`: after every step, average = DECAY x average + (1 - DECAY) x
weights, starting from the weights training starts with.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR, LinearLR, LRScheduler, ReduceLROnPlateau
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

SCHEDULES = ("constant", "linear", "plateau")
LINEAR_FLOOR = 0.05  # the linear schedule never goes below this fraction of the rate


# The most steps --warmup's share warms up over: the fixed warm-up seqtool had before the share,
# so long runs warm up as before, and a run cut short by --max-minutes (which plans all its
# epochs) is not left warming up.
MAX_SHARED_WARMUP = 100


def warmup_steps(share: float, steps: int | None, planned_steps: int) -> int:
    """The warm-up's steps: `steps` when given (--warmup-steps), else `share` (--warmup) of the
    steps the run plans, at most MAX_SHARED_WARMUP, so that a run of forty steps warms up over
    four, not a hundred."""
    if steps is not None:
        return steps
    return min(round(share * planned_steps), MAX_SHARED_WARMUP)


def lr_factor(step: int, schedule: str, warmup_steps: int, total_steps: int) -> float:
    """The documented factor of `constant` and `linear` at `step` (plateau: before halving)."""
    warm = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    if schedule == "linear":
        return warm * max(LINEAR_FLOOR, 1.0 - step / max(1, total_steps))
    return warm


class Schedule:
    """The learning-rate schedule of one optimizer: `step()` after every optimizer step,
    `evaluated(metric)` after every scheduled dev evaluation."""

    def __init__(self, optimizer: torch.optim.Optimizer, schedule: str, warmup_steps: int,
                 total_steps: int, higher_is_better: bool = True):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}: {', '.join(SCHEDULES)}")
        self.optimizer = optimizer
        self.plateau: ReduceLROnPlateau | None = None
        self.per_step: LRScheduler
        if schedule == "plateau":
            warm = max(1, warmup_steps)
            self.per_step = LinearLR(optimizer, start_factor=1.0 / warm, end_factor=1.0,
                                     total_iters=warm - 1)
            self.plateau = ReduceLROnPlateau(
                optimizer, mode="max" if higher_is_better else "min", factor=0.5, patience=1,
                threshold=0.0, cooldown=0, eps=0.0)
        else:
            self.per_step = LambdaLR(
                optimizer, lambda s: lr_factor(s, schedule, warmup_steps, total_steps))

    def step(self) -> None:
        self.per_step.step()

    def evaluated(self, metric: float) -> None:
        if self.plateau is not None:
            self.plateau.step(metric)

    def state_dict(self) -> dict[str, Any]:
        return {"per_step": self.per_step.state_dict(),
                "plateau": self.plateau.state_dict() if self.plateau is not None else {}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.per_step.load_state_dict(state["per_step"])
        if self.plateau is not None:
            self.plateau.load_state_dict(state["plateau"])

    def load_legacy_state(self, state: dict[str, Any], plateau_factor: float,
                          best: float | None, bad_evals: int, warmup_steps: int) -> None:
        """A schedule saved before seqtool used torch's schedulers: one `LambdaLR` whose factor
        carried the plateau's halvings (`plateau_factor`)."""
        self.per_step.load_state_dict(dict(state))  # LinearLR takes LambdaLR's position too
        if self.plateau is None:
            return
        step = self.per_step.last_epoch
        for group in self.optimizer.param_groups:  # a halving not yet applied holds from now
            group["lr"] = group["initial_lr"] * lr_factor(step, "plateau", warmup_steps, 0) \
                * plateau_factor
        self.plateau.best = self.plateau.mode_worse if best is None else best
        self.plateau.num_bad_epochs = bad_evals % 2
        self.plateau._last_lr = [group["lr"] for group in self.optimizer.param_groups]


class WeightAverage:
    """An exponential moving average of a model's parameters (`AveragedModel`), which
    evaluation and the kept checkpoint use instead of the last step's weights."""

    def __init__(self, model: nn.Module, decay: float):
        self.model = model
        # A copy of the model whose parameters hold the average (its buffers follow the model).
        self.averaged = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay))
        self.averaged.update_parameters(model)  # starts from the initial weights

    def update(self) -> None:
        self.averaged.update_parameters(self.model)

    def tensors(self) -> list[torch.Tensor]:
        """The averaged parameters, in the model's parameter order (the checkpoint's form)."""
        return [p.detach() for p in self.averaged.module.parameters()]

    def load(self, tensors: list[torch.Tensor]) -> None:
        params = list(self.averaged.module.parameters())
        if len(params) != len(tensors):
            raise ValueError(f"{len(tensors)} averaged tensors for {len(params)} parameters")
        with torch.no_grad():
            for p, t in zip(params, tensors):
                p.copy_(t)

