"""The training engine: end to end, determinism, exact resume, safe checkpoints, DDP."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys

import pytest
import torch
from conftest import TINY_CLASSIFY, TOY, run_cli

from seqtool.checkpoint import Checkpoint
from seqtool.errors import SeqtoolError
from seqtool.training import last_path

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


def test_ema_ships_the_averaged_weights(tmp_path):
    out = tmp_path / "m.pt"
    best = train(out, "--epochs", "4", "--ema", "0.5", "--patience", "1000")
    last = Checkpoint.load(last_path(out))
    averaged = dict(zip(last.weights, last.train_state["ema"]))
    if best.meta["steps"] == last.meta["steps"]:  # best was the last evaluation
        assert weights_equal(best, Checkpoint("classify", {}, averaged, {}))
    assert not weights_equal(last, Checkpoint("classify", {}, averaged, {}))


def test_resume_continues_exactly(tmp_path):
    # Dropout on, so the restored RNG state matters too.
    full = train(tmp_path / "full.pt", "--epochs", "6", "--dropout", "0.3")
    part = tmp_path / "part.pt"
    train(part, "--epochs", "6", "--dropout", "0.3", "--max-steps", "7")
    assert Checkpoint.load(last_path(part)).train_state["step"] == 7
    resumed = train(part, "--epochs", "6", "--dropout", "0.3", "--resume")
    assert weights_equal(Checkpoint.load(last_path(part)),
                         Checkpoint.load(last_path(tmp_path / "full.pt")))
    assert resumed.meta["steps"] == full.meta["steps"]


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


def test_bf16_training_runs(tmp_path):
    ckpt = train(tmp_path / "bf.pt", "--epochs", "3", "--precision", "bf16")
    assert ckpt.meta["train_config"]["precision"] == "bf16"


def test_two_process_data_parallel_matches_one_process(tmp_path):
    args = ["train", "classify", "--train", DATA, "--dev", DATA, *TINY_CLASSIFY,
            "--epochs", "4", "--dropout", "0", "--device", "cpu"]
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


def test_ctrl_c_leaves_a_resumable_checkpoint(tmp_path):
    import signal

    out = tmp_path / "m.pt"
    args = [sys.executable, "-m", "seqtool.cli", "train", "classify", "--train", str(DATA),
            "--dev", str(DATA), "--out", str(out), *TINY_CLASSIFY[:-1], "--epochs", "100000"]
    p = subprocess.Popen(args, stderr=subprocess.PIPE, text=True)
    for line in p.stderr:  # wait until training is under way
        if line.startswith("step "):
            break
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 1
    assert "interrupted at step" in err and "Traceback" not in err
    state = Checkpoint.load(last_path(out)).train_state
    assert state["step"] > 0
    run_cli("train", "classify", "--train", DATA, "--dev", DATA, "--out", out,
            *TINY_CLASSIFY, "--epochs", str(state["epoch"] + 2), "--resume")
    assert Checkpoint.load(last_path(out)).train_state["step"] > state["step"]
