"""The learning-rate schedules and the moving average of the weights (torch's parts), alone and
inside the Trainer: each matches its documented formula and resumes exactly."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from toy_models import Regression

from seqtool.checkpoint import Checkpoint
from seqtool.config import TrainConfig
from seqtool.training.loop import Task, Trainer
from seqtool.training.resume import last_path
from seqtool.training.schedule import Schedule, WeightAverage, lr_factor

LR = 0.1


def optimizer(groups: int = 1) -> torch.optim.Optimizer:
    params = [{"params": [nn.Parameter(torch.zeros(1))], "lr": LR / (g + 1)}
              for g in range(groups)]
    return torch.optim.Adam(params, lr=LR)


def rates(opt: torch.optim.Optimizer, schedule: Schedule, steps: int,
          evaluations: dict[int, float] | None = None) -> list[float]:
    """The rate each of `steps` steps runs at; `evaluations`: step -> dev metric seen after it."""
    seen = []
    for s in range(steps):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        schedule.step()
        if evaluations and s in evaluations:
            schedule.evaluated(evaluations[s])
    return seen


def warm(s: int, w: int) -> float:
    return min(1.0, (s + 1) / w) if w > 0 else 1.0


@pytest.mark.parametrize("warmup", [0, 1, 4])
def test_constant_and_linear_follow_the_documented_formula(warmup):
    total = 20
    for name, rest in (("constant", lambda s: 1.0),
                       ("linear", lambda s: max(0.05, 1 - s / total))):
        opt = optimizer()
        seen = rates(opt, Schedule(opt, name, warmup, total), total + 5)
        expected = [LR * warm(s, warmup) * rest(s) for s in range(total + 5)]
        assert seen == pytest.approx(expected, rel=1e-12, abs=0)
        assert seen == [LR * lr_factor(s, name, warmup, total) for s in range(total + 5)]
    assert lr_factor(10**6, "linear", 4, total) == pytest.approx(0.05)  # the floor


@pytest.mark.parametrize("warmup", [0, 1, 5])
def test_plateau_warms_up_then_halves_after_two_stalls_in_a_row(warmup):
    opt = optimizer(groups=2)
    # Dev after steps 1..9: better, better, stall, stall (halve), stall, better, stall,
    # stall (halve), stall.
    dev = dict(enumerate([1.0, 2.0, 2.0, 1.0, 0.5, 3.0, 3.0, 2.0, 1.0]))
    schedule = Schedule(opt, "plateau", warmup, 0, higher_is_better=True)
    seen = rates(opt, schedule, 12, dev)
    halvings = [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]  # of step s (from the step after a halving)
    expected = [LR * warm(s, warmup) * 0.5 ** h for s, h in enumerate(halvings)]
    assert seen == pytest.approx(expected, rel=1e-12, abs=0)
    # Every group keeps its own rate under the same factors.
    assert opt.param_groups[1]["lr"] == pytest.approx(opt.param_groups[0]["lr"] / 2, rel=1e-12)


def test_plateau_halves_during_the_warmup_too_and_lower_is_better():
    opt = optimizer()
    schedule = Schedule(opt, "plateau", 8, 0, higher_is_better=False)
    seen = rates(opt, schedule, 8, {0: 5.0, 1: 5.0, 2: 6.0})  # loss: stalls twice
    expected = [LR * warm(s, 8) * (0.5 if s >= 3 else 1.0) for s in range(8)]
    assert seen == pytest.approx(expected, rel=1e-12, abs=0)


def test_a_schedule_resumes_from_its_state():
    dev = dict(enumerate([1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0]))
    for name in ("constant", "linear", "plateau"):
        opt = optimizer()
        full = rates(opt, Schedule(opt, name, 3, 12), 12, dev)
        opt = optimizer()
        schedule = Schedule(opt, name, 3, 12)
        first = rates(opt, schedule, 6, dev)
        saved = opt.state_dict(), schedule.state_dict()
        opt = optimizer()
        schedule = Schedule(opt, name, 3, 12)
        opt.load_state_dict(saved[0])
        schedule.load_state_dict(saved[1])
        later = {s - 6: v for s, v in dev.items() if s >= 6}
        assert first + rates(opt, schedule, 6, later) == full, name


def test_the_averaged_weights_are_the_hand_computed_moving_average():
    torch.manual_seed(0)
    model = nn.Linear(3, 2)
    decay = 0.8
    average = WeightAverage(model, decay)
    expected = [p.detach().clone() for p in model.parameters()]  # starts at the initial weights
    for _ in range(5):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        average.update()
        expected = [decay * e + (1 - decay) * p.detach()
                    for e, p in zip(expected, model.parameters())]
    assert all(torch.allclose(a, e, rtol=0, atol=1e-6) for a, e in zip(average.tensors(), expected))
    assert not any(torch.equal(a, p) for a, p in zip(average.tensors(), model.parameters()))
    copy = WeightAverage(model, decay)
    copy.load(average.tensors())
    assert all(torch.equal(a, b) for a, b in zip(copy.tensors(), average.tensors()))


# ------------------------------------------------------------- inside the Trainer




def trainer(tmp_path, **config) -> Trainer:
    torch.manual_seed(0)
    x = torch.randn(16, 2)
    y = x @ torch.tensor([[2.0], [-1.0]]) + 0.5
    made: list[Trainer] = []
    # The dev metric is a function of the step (stalls included), also across a resume.
    scores = [1.0, 2.0, 2.0, 2.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0] * 10
    task = Task(lengths=[1] * 16, collate=lambda idx: {"x": x[idx], "y": y[idx]},
                evaluate=lambda model: {"score": scores[made[0].step]}, metric="score",
                higher_is_better=True,
                checkpoint=lambda m: Checkpoint("classify", {}, m.state_dict(), {"src": b"-"}))
    defaults = {"max_tokens": 2, "quiet": True, "lr": 0.05, "eval_every": 2, "patience": 50}
    tmp_path.mkdir(parents=True, exist_ok=True)
    made.append(Trainer(Regression(), task, TrainConfig(**{**defaults, **config}),
                        tmp_path / "m.pt"))
    return made[0]


def test_the_trainer_ships_the_average_of_every_step(tmp_path):
    t = trainer(tmp_path, ema=0.5, epochs=1, max_steps=3, eval_every=0)
    expected = [p.detach().clone() for p in t.model.parameters()]
    for step in range(3):
        t.train_batch(t.epoch_batches(0)[step])
        t.step += 1
        expected = [0.5 * e + 0.5 * p.detach() for e, p in zip(expected, t.model.parameters())]
    assert all(torch.allclose(a, e, rtol=0, atol=1e-7) for a, e in zip(t.ema.tensors(), expected))
    with t.averaged_weights():
        assert all(torch.equal(p, e) for p, e in zip(t.model.parameters(), t.ema.tensors()))
    assert not all(torch.equal(p, e) for p, e in zip(t.model.parameters(), t.ema.tensors()))


@pytest.mark.parametrize("schedule", ["plateau", "linear"])
def test_an_interrupted_run_resumes_its_schedule_and_average(tmp_path, schedule):
    options = {"ema": 0.7, "schedule": schedule, "warmup_steps": 5, "epochs": 4}
    full = trainer(tmp_path / "full", **options)
    full.fit()
    part = trainer(tmp_path / "part", **options)
    # Stopped after step 11 (as Ctrl-C would), by a limit set after the linear schedule took
    # the run's length: --max-steps would shorten that length.
    part.config.max_steps = 11
    part.fit()
    assert part.step == 11
    resumed = trainer(tmp_path / "part", **options)
    ckpt = Checkpoint.load(last_path(tmp_path / "part" / "m.pt"))
    resumed.resume(ckpt, last_path(tmp_path / "part" / "m.pt"))
    # What was restored: the rate, both schedulers' state and the moving average.
    assert resumed.optimizer.param_groups[0]["lr"] == part.optimizer.param_groups[0]["lr"]
    assert resumed.scheduler.state_dict() == part.scheduler.state_dict()
    assert all(torch.equal(a, b) for a, b in zip(resumed.ema.tensors(), part.ema.tensors()))
    resumed.fit()
    assert resumed.step == full.step == 32
    scheduled = [[r["lr"] for r in t.history if r["step"] % 2 == 0] for t in (resumed, full)]
    assert scheduled[0] == scheduled[1] and len(scheduled[0]) == 16
    if schedule == "plateau":
        assert full.optimizer.param_groups[0]["lr"] < 0.05 / 4  # it halved, more than once
    assert all(torch.equal(a, b) for a, b in zip(resumed.ema.tensors(), full.ema.tensors()))
    assert all(torch.equal(a, b) for a, b in zip(resumed.model.parameters(),
                                                 full.model.parameters()))
