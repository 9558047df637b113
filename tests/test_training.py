"""The training engine: end to end, determinism, exact resume, safe checkpoints, DDP."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import torch
from conftest import TINY_CLASSIFY, TOY, run_cli
from toy_models import Regression

from seqtool.checkpoint import Checkpoint
from seqtool.config import TrainConfig
from seqtool.device import autocast
from seqtool.errors import SeqtoolError
from seqtool.nn.registry import build_model
from seqtool.training import loop as training
from seqtool.training.loop import Task, Trainer
from seqtool.training.resume import last_path

DATA = TOY / "sentiment.tsv"


def train(out, *extra):
    run_cli("train", "classify", "--train", DATA, "--dev", DATA, "--out", out,
            *TINY_CLASSIFY, *extra)
    return Checkpoint.load(out)


def weights_equal(a: Checkpoint, b: Checkpoint, atol: float = 0.0) -> bool:
    return a.weights.keys() == b.weights.keys() and all(
        torch.allclose(a.weights[k], b.weights[k], atol=atol, rtol=0) for k in a.weights)


def test_toy_classifier_learns_every_sentence(toy_classifier):
    ckpt = Checkpoint.load(toy_classifier)
    assert ckpt.meta["best_accuracy"] == 1.0
    assert ckpt.labels == ["negative", "positive"]
    assert ckpt.meta["seed"] == 0 and "torch" in ckpt.meta["versions"]
    assert len(ckpt.meta["history"]) >= 2


@pytest.mark.parametrize("extra", [[], ["--subword-sampling", "0.2", "--ema", "0.9"]])
def test_same_seed_same_model_other_seed_other_model(tmp_path, extra):
    a = train(tmp_path / "a.pt", "--epochs", "5", "--seed", "3", *extra)
    b = train(tmp_path / "b.pt", "--epochs", "5", "--seed", "3", *extra)
    c = train(tmp_path / "c.pt", "--epochs", "5", "--seed", "4", *extra)
    assert weights_equal(a, b)
    assert not weights_equal(a, c)


def test_checkpoint_write_is_atomic_and_load_is_safe(tmp_path, toy_classifier):
    ckpt = Checkpoint.load(toy_classifier)
    out = tmp_path / "copy.pt"
    ckpt.save(out)
    assert [p.name for p in tmp_path.iterdir()] == ["copy.pt"]  # no temp file left behind
    assert weights_equal(Checkpoint.load(out), ckpt)

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "seqtool-checkpoint", "x": Evil()}, evil)
    with pytest.raises(SeqtoolError, match="not a seqtool checkpoint"):
        Checkpoint.load(evil)
    assert not (tmp_path / "pwned").exists()
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps({"format": "seqtool-checkpoint"}))
    with pytest.raises(SeqtoolError):
        Checkpoint.load(raw)


def test_half_checkpoint_is_smaller_and_close(tmp_path):
    full = train(tmp_path / "f.pt", "--epochs", "3")
    half = train(tmp_path / "h.pt", "--epochs", "3", "--half-checkpoint")
    assert (tmp_path / "h.pt").stat().st_size < (tmp_path / "f.pt").stat().st_size
    assert weights_equal(full, half, atol=1e-2)


def test_bf16_training_runs_in_bf16_and_learns(tmp_path):
    fp32 = train(tmp_path / "fp.pt")
    bf16 = train(tmp_path / "bf.pt", "--precision", "bf16")
    assert bf16.meta["best_accuracy"] >= 0.8
    # Same seed and batches: only the arithmetic differs, so the weights must differ.
    assert not weights_equal(fp32, bf16, atol=1e-6)
    model = build_model("classify", bf16.model_config)
    seen = []
    model.members[0].output.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    with autocast(torch.device("cpu"), "bf16"):
        model(torch.tensor([[5, 6, 7]]), torch.tensor([3]))
    assert seen == [torch.bfloat16]


@pytest.mark.parametrize("extra", [[], ["--adversarial", "0.05"]], ids=["plain", "adversarial"])
def test_two_process_data_parallel_matches_one_process(tmp_path, extra):
    # Each text's adversarial shift depends on that text alone, so halving the batch between
    # two processes changes nothing there either.
    args = ["train", "classify", "--train", DATA, "--dev", DATA, *TINY_CLASSIFY,
            "--epochs", "4", "--dropout", "0", "--device", "cpu", *extra]
    single = tmp_path / "single.pt"
    run_cli(*args, "--out", single)
    double = tmp_path / "double.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    p = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "--module", "seqtool.cli", *map(str, args), "--out", str(double)],
        capture_output=True, text=True, timeout=300, env=env)
    assert p.returncode == 0, p.stderr[-3000:]
    a = Checkpoint.load(last_path(single))
    b = Checkpoint.load(last_path(double))
    assert a.train_state["step"] == b.train_state["step"] > 0
    assert weights_equal(a, b, atol=1e-5)


# ------------------------------------------------------------- the loop on a tiny linear task




def linear_trainer(tmp_path, dev_scores=None, **config) -> Trainer:
    """A Trainer on 16 examples, one per batch; the dev metric replays `dev_scores`."""
    torch.manual_seed(0)
    x = torch.randn(16, 2)
    y = x @ torch.tensor([[2.0], [-1.0]]) + 0.5
    scores = iter(dev_scores or [])

    def evaluate(model):
        return {"score": next(scores, 0.0)}

    task = Task(lengths=[1] * 16, collate=lambda idx: {"x": x[idx], "y": y[idx]},
                evaluate=evaluate, metric="score", higher_is_better=True,
                checkpoint=lambda m: Checkpoint("classify", {}, m.state_dict(), {"src": b"-"}))
    defaults = {"max_tokens": 1, "quiet": True, "warmup_steps": 0, "lr": 0.05}
    return Trainer(Regression(), task, TrainConfig(**{**defaults, **config}), tmp_path / "m.pt")


def test_warmup_then_linear_decay_to_a_floor(tmp_path):
    trainer = linear_trainer(tmp_path, warmup_steps=4, schedule="linear", epochs=5)
    assert trainer.total_steps == 80
    factors = [trainer._lr_factor(step) for step in range(80)]
    # Warmup ramps (s + 1) / 4 over the first 4 steps, times the linear decay 1 - s / 80.
    assert factors[:4] == pytest.approx([(s + 1) / 4 * (1 - s / 80) for s in range(4)])
    assert all(a >= b for a, b in zip(factors[3:], factors[4:]))  # decays after warmup
    assert factors[-1] == pytest.approx(0.05)  # never below the floor
    constant = linear_trainer(tmp_path, schedule="constant")
    assert {constant._lr_factor(s) for s in range(50)} == {1.0}


def test_plateau_halves_the_rate_and_patience_stops(tmp_path):
    # Dev scores: better, better, then flat: every second flat evaluation halves the rate and
    # the third flat one ends training (patience 3). The halving holds from the next step on.
    trainer = linear_trainer(tmp_path, [1.0, 2.0, 2.0, 1.5, 0.5, 9.0], schedule="plateau",
                             patience=3, eval_every=1, epochs=100)
    result = trainer.fit()
    assert result["steps"] == 5 and result["best"] == 2.0
    assert [r["lr"] for r in trainer.history] == pytest.approx([0.05] * 3 + [0.025] * 2)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(0.05 * 0.5)
    assert [r["score"] for r in trainer.history] == [1.0, 2.0, 2.0, 1.5, 0.5]
    best = Checkpoint.load(tmp_path / "m.pt")
    assert best.meta["best_score"] == 2.0 and best.meta["steps"] == 2


def test_keep_last_holds_the_last_evaluation_not_the_best(tmp_path):
    # The same scores as above: the best is at step 2, yet --keep last writes every
    # evaluation, so --out holds step 5's weights, those of OUT.last.pt.
    trainer = linear_trainer(tmp_path, [1.0, 2.0, 2.0, 1.5, 0.5, 9.0], schedule="plateau",
                             patience=3, eval_every=1, epochs=100, keep="last")
    assert trainer.fit()["steps"] == 5
    kept, last = Checkpoint.load(tmp_path / "m.pt"), Checkpoint.load(last_path(tmp_path / "m.pt"))
    assert kept.meta["steps"] == 5 and weights_equal(kept, last)
    assert kept.meta["best_score"] == 2.0  # the best seen is still reported


def test_max_steps_and_max_minutes_stop_training(tmp_path, monkeypatch):
    assert linear_trainer(tmp_path, epochs=100, max_steps=7).fit()["steps"] == 7
    clock = iter(range(0, 10**6, 10))  # every reading of the clock is 10 s later
    monkeypatch.setattr(training.time, "perf_counter", lambda: float(next(clock)))
    result = linear_trainer(tmp_path, epochs=100, max_minutes=1.0).fit()
    assert 1 <= result["steps"] <= 4


def test_a_better_closing_evaluation_is_saved_and_reported(tmp_path):
    # Scheduled evaluations at steps 3 and 6 score 1 and 2; the closing one at step 7 (cut by
    # --max-steps) scores 5: it writes --out and is what the run reports, yet the state that
    # --resume continues from keeps the scheduled best.
    trainer = linear_trainer(tmp_path, [1.0, 2.0, 5.0], eval_every=3, epochs=100, max_steps=7)
    result = trainer.fit()
    assert result["best"] == 5.0 and trainer.best == 2.0
    assert Checkpoint.load(tmp_path / "m.pt").meta["steps"] == 7


def test_training_reduces_the_loss_and_clips_gradients(tmp_path):
    trainer = linear_trainer(tmp_path, epochs=3, clip_norm=0.01)
    before = trainer.model.linear.weight.detach().clone()
    trainer.train_batch([0])
    # Adam normalises the step, so check the clipped gradient itself.
    grad_norm = torch.cat([p.grad.flatten() for p in trainer.model.parameters()]).norm()
    assert grad_norm <= 0.01 + 1e-6
    assert not torch.equal(before, trainer.model.linear.weight)
    first = trainer.task.collate(list(range(16)))
    loss0 = trainer.model.loss(first)[0].item()
    linear_trainer(tmp_path)  # a second trainer must not disturb the first
    trainer.config.clip_norm = 0
    for _ in range(200):
        trainer.train_batch(list(range(16)))
    assert trainer.model.loss(first)[0].item() < 0.01 * loss0


def test_ema_ships_the_averaged_weights(tmp_path):
    # Every evaluation is better than the last, so each one writes the best checkpoint.
    trainer = linear_trainer(tmp_path, [1.0, 2.0, 3.0], ema=0.5, eval_every=3, epochs=100,
                             max_steps=9)
    trainer.fit()
    best = Checkpoint.load(tmp_path / "m.pt")
    last = Checkpoint.load(last_path(tmp_path / "m.pt"))
    averaged = dict(zip(last.weights, last.train_state["ema"]))
    assert best.meta["steps"] == last.meta["steps"] == 9
    assert all(torch.equal(best.weights[k], averaged[k]) for k in averaged)
    assert not all(torch.equal(last.weights[k], averaged[k]) for k in averaged)


@pytest.mark.parametrize("task, action", [("classify", "cut"), ("generate", "dropped")])
def test_a_huge_training_line_is_capped_with_one_warning(tmp_path, task, action):
    data = tmp_path / "train.tsv"
    huge = " ".join(["cats and dogs lap water"] * 40_000)  # about 1 MB
    data.write_text(DATA.read_text() + f"positive\t{huge}\n")
    out = tmp_path / "m.pt"
    result = run_cli("train", task, "--train", data, "--dev", DATA, "--out", out,
                     *TINY_CLASSIFY, "--epochs", "2", "--max-train-length", "40")
    assert result.output.count(f"{action} 1 training example(s) longer than 40 pieces") == 1
    ckpt = Checkpoint.load(last_path(out))
    assert ckpt.train_state["step"] > 0
