"""Training on a few hundred examples (issue 30): the warm-up as a share of the planned run,
patience that waits for it, the default start from the shipped English language model
(`--init none` opts out), and the one-line warnings of a run that never warmed up or ended
near chance."""

from __future__ import annotations

import pytest
import torch
from conftest import ROOT, TINY_CLASSIFY, TOY, run_cli
from toy_models import Regression

import seqtool
from seqtool.checkpoint import Checkpoint
from seqtool.config import TrainConfig
from seqtool.errors import reset_warnings
from seqtool.training.loop import Task, Trainer
from seqtool.training.pretrained import DEFAULT_INIT, default_init, is_english
from seqtool.training.resume import last_path
from seqtool.training.run import choose_init, near_chance, options_for, warn_weak_run
from seqtool.training.schedule import warmup_steps

pytestmark = pytest.mark.usefixtures("one_thread")

LM = ROOT / "checkpoints" / DEFAULT_INIT["classify"]
ENGLISH = [line.split("\t", 1)[1] for line in (TOY / "sentiment.tsv").read_text().splitlines()]
FRENCH = (ROOT / "corpora" / "translation" / "bible-fr-en" / "dev.fr").read_text().splitlines()




def flat_trainer(tmp_path, **config) -> Trainer:
    """A Trainer on 16 examples, one a batch, whose dev metric never improves after the first
    evaluation."""
    torch.manual_seed(0)
    x, y = torch.randn(16, 2), torch.randn(16, 1)
    task = Task(lengths=[1] * 16, collate=lambda idx: {"x": x[idx], "y": y[idx]},
                evaluate=lambda model: {"score": 1.0}, metric="score", higher_is_better=True,
                checkpoint=lambda m: Checkpoint("classify", {}, m.state_dict(), {"src": b"-"}))
    options = {"max_tokens": 1, "quiet": True, "lr": 0.05, "schedule": "constant", **config}
    return Trainer(Regression(), task, TrainConfig(**options), tmp_path / "m.pt")


def test_warmup_is_a_share_of_the_planned_steps_unless_steps_are_given(tmp_path):
    assert [warmup_steps(0.1, None, n) for n in (40, 3, 0, 5000)] == [4, 0, 0, 100]
    assert warmup_steps(0.1, 100, 40) == 100 and warmup_steps(0.5, 0, 40) == 0
    trainer = flat_trainer(tmp_path, epochs=5, warmup=0.25)  # 16 batches an epoch
    assert trainer.total_steps == 80 and trainer.warmup_steps == 20
    factors = [trainer._lr_factor(s) for s in range(25)]
    assert factors[:20] == pytest.approx([(s + 1) / 20 for s in range(20)])
    assert factors[20:] == [1.0] * 5
    assert flat_trainer(tmp_path, epochs=5, max_steps=40).warmup_steps == 4  # default 0.1
    assert flat_trainer(tmp_path, epochs=5, warmup_steps=7).warmup_steps == 7
    trainer = flat_trainer(tmp_path, epochs=5, warmup=0.25, schedule="plateau")
    rates = []
    for _ in range(22):
        rates.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.optimizer.step()
        trainer.scheduler.step()
    assert rates == pytest.approx([0.05 * min(1, (s + 1) / 20) for s in range(22)])


@pytest.mark.parametrize("warmup,stopped_at", [(0, 2), (6, 6), (11, 11)])
def test_patience_does_not_count_evaluations_before_the_warmup_ends(tmp_path, warmup,
                                                                     stopped_at):
    # Every evaluation after the first is no better: patience 1 stops at the first one that
    # counts, the first at or after the warm-up's last step.
    trainer = flat_trainer(tmp_path, epochs=100, eval_every=1, patience=1, warmup_steps=warmup)
    assert trainer.fit()["steps"] == stopped_at


def test_near_chance_is_within_one_standard_error_of_a_constant_answer():
    assert near_chance(0.36, 1 / 3, 90) and not near_chance(0.40, 1 / 3, 90)  # se 0.05
    assert near_chance(0.8, 0.6, 5)  # five dev lines tell nothing
    assert near_chance(0.505, 0.5, 10**6) and not near_chance(0.52, 0.5, 10**6)  # floor 0.01


def test_a_weak_run_says_so_in_one_line_each(capsys):
    reset_warnings()
    warn_weak_run(100, {"steps": 40, "best": 0.35}, "accuracy", 1 / 3, 90)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Warning: the warm-up (100 steps) outlasted the run (40 steps)")
    assert lines[1].startswith("Warning: dev accuracy 0.3500 is near chance (0.3333")
    reset_warnings()
    warn_weak_run(4, {"steps": 40, "best": 0.7}, "accuracy", 1 / 3, 90)
    warn_weak_run(4, {"steps": 4, "best": float("nan")}, "perplexity", None, 0)
    assert capsys.readouterr().err == ""


def test_a_run_that_learned_nothing_warns_and_a_warmup_longer_than_the_run_too(tmp_path,
                                                                               capsys):
    # Thirty lines of three classes, all the same text: no model beats always answering one
    # class (1/3 of dev). Without options the run starts from the shipped language model.
    data = tmp_path / "same.tsv"
    data.write_text("".join(f"{'abc'[i % 3]}\tIt was a day like any other.\n"
                            for i in range(30)))
    reset_warnings()
    trained = seqtool.train("classify", train=str(data), dev=str(data),
                            out=str(tmp_path / "m.pt"), epochs=2, warmup_steps=50, quiet=True)
    assert trained.summary["best"] == pytest.approx(1 / 3)
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if line.startswith("Warning:")]
    assert len(warnings) == 2
    assert f"outlasted the run ({trained.summary['steps']} steps)" in warnings[0]
    assert "near chance (0.3333" in warnings[1] and "30 dev examples" in warnings[1]


def test_english_text_starts_from_the_shipped_language_model(tmp_path, capsys):
    out = tmp_path / "m.pt"
    seqtool.train("classify", train=str(TOY / "sentiment.tsv"), dev=str(TOY / "sentiment.tsv"),
                  out=str(out), epochs=1, warmup_steps=0)
    assert "starting from the shipped English language model" in capsys.readouterr().err
    lm, model = Checkpoint.load(LM), Checkpoint.load(out)
    assert model.tokenizers["src"] == lm.tokenizers["src"]
    for size in ("embed_dim", "hidden_dim", "layers", "bidirectional"):
        assert model.model_config[size] == lm.model_config[size]


def opts_with(**given):
    return {**options_for("classify"), "train_path": str(TOY / "sentiment.tsv"), **given}


def test_init_none_starts_from_scratch_and_a_given_init_stays():
    opts = opts_with(init="none", quiet=True)
    choose_init("classify", opts, {"init"}, default=True)
    assert opts["init"] is None
    opts = opts_with(init="NONE")
    choose_init("pretrain", opts, {"init"}, default=False)
    assert opts["init"] is None
    opts = opts_with(init="other.pt")
    choose_init("classify", opts, {"init"}, default=True)
    assert opts["init"] == "other.pt"
    opts = opts_with(quiet=True)
    choose_init("classify", opts, set(), default=True)
    assert opts["init"] == str(LM)
    opts = opts_with(quiet=True)
    choose_init("classify", opts, set(), default=False)  # distillation's student
    assert opts["init"] is None


@pytest.mark.parametrize("given", [
    {"vocab_size": 60}, {"lowercase": True}, {"tokenizer_path": "sp.model"},
    {"hidden_dim": 16}, {"embed_dim": 64}, {"bidirectional": False},
    {"embeddings": "glove.vec"}])
def test_the_default_start_gives_way_to_a_tokenizer_or_sizes_of_the_runs_own(given):
    assert default_init("classify", ENGLISH, opts_with(), set()) == LM
    assert default_init("classify", ENGLISH, opts_with(**given), set(given)) is None


def test_the_default_start_only_for_english_classifiers(tmp_path, monkeypatch):
    lexicon = set(Checkpoint.load(LM).meta["lexicon"])
    assert is_english(ENGLISH, lexicon) and not is_english(FRENCH[:200], lexicon)
    assert not is_english(["数据 很 少"], lexicon)
    assert default_init("classify", FRENCH[:200], opts_with(), set()) is None
    assert default_init("generate", ENGLISH, opts_with(), set()) is None
    # sizes given equal to the language model's are no reason to give way
    assert default_init("classify", ENGLISH, opts_with(hidden_dim=192), {"hidden_dim"}) == LM
    monkeypatch.setenv("SEQTOOL_CHECKPOINTS", str(tmp_path))  # no shipped model there
    assert default_init("classify", ENGLISH, opts_with(), set()) is None


def test_a_run_saved_before_the_warmup_share_resumes_as_it_ran(tmp_path):
    # A run of an older seqtool: its fingerprint has --warmup-steps (100 by default then) and
    # no --warmup. Resumed with the same options (none about the warm-up), it goes on over
    # its 100 warm-up steps, not refused for options that differ.
    out, data = tmp_path / "m.pt", TOY / "sentiment.tsv"
    at = TINY_CLASSIFY.index("--warmup-steps")
    tiny = TINY_CLASSIFY[:at] + TINY_CLASSIFY[at + 2:]
    run_cli("train", "classify", "--train", data, "--dev", data, "--out", out, *tiny,
            "--warmup-steps", "100", "--max-steps", "2")
    last = last_path(out)
    old = Checkpoint.load(last)
    del old.meta["run"]["options"]["warmup"]
    old.save(last)
    run_cli("train", "classify", "--train", data, "--dev", data, "--out", out, *tiny,
            "--resume", "--max-steps", "4")
    resumed = Checkpoint.load(last)
    assert resumed.meta["steps"] == 4
    assert resumed.meta["run"]["options"]["warmup_steps"] == 100
    # the rate of the next step, the fifth: 5/100 of --lr
    assert resumed.meta["history"][-1]["lr"] == pytest.approx(0.01 * 5 / 100)
