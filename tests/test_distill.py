"""`seqtool distill`: a student classifier learns a teacher's soft labels (issue 24)."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from conftest import TOY

from seqtool.api_distill import distill, soft_targets_path
from seqtool.checkpoint import Checkpoint
from seqtool.cli.common import SeqtoolGroup
from seqtool.cli.distill import distill as distill_command
from seqtool.errors import SeqtoolError
from seqtool.training.distill import NO_LABEL, distillation_loss, soften
from seqtool.training.loop import last_path

DATA = TOY / "sentiment.tsv"
TINY = {"epochs": 40, "vocab_size": 60, "embed_dim": 16, "hidden_dim": 16, "max_tokens": 64,
        "lr": 0.01, "warmup_steps": 0, "schedule": "constant", "patience": 1000,
        "quiet": True}
UNLABELLED = "I love dogs.\nRaining cats.\n\nThe dogs are natural enemies.\nI love my cat.\n"


@pytest.fixture
def unlabelled(tmp_path):
    path = tmp_path / "unlabelled.txt"
    path.write_text(UNLABELLED)
    return path


def cli(*args: str):
    """The command as the lazy command table will run it: errors in one line."""
    group = SeqtoolGroup()
    group.add_command(distill_command, "distill")
    return CliRunner().invoke(group, ["distill", *map(str, args)])


# ----------------------------------------------------------------------------- the loss


def test_the_loss_is_least_where_the_student_matches_the_teacher():
    teacher = torch.tensor([[0.9, 0.1], [0.3, 0.7]])
    gold = torch.tensor([NO_LABEL, NO_LABEL])
    matching = teacher.log().requires_grad_()
    loss = distillation_loss(matching, teacher, gold, temperature=2.0, alpha=0.5)
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    (grad,) = torch.autograd.grad(loss, matching)
    assert grad.abs().max() < 1e-6
    assert distillation_loss(torch.zeros(2, 2), teacher, gold, 2.0, 0.5) > 0.01


def test_labelled_texts_mix_soft_and_gold_terms():
    teacher, logits = torch.tensor([[0.8, 0.2]]), torch.tensor([[0.5, -0.5]])
    gold = torch.tensor([1])
    t, alpha = 3.0, 0.25
    q, p = soften(teacher, t), torch.softmax(logits / t, -1)
    kl = float((q * (q / p).log()).sum())
    ce = -float(torch.log_softmax(logits, -1)[0, 1])
    expected = alpha * t * t * kl + (1 - alpha) * ce
    loss = distillation_loss(logits, teacher, gold, t, alpha).item()
    assert loss == pytest.approx(expected, rel=1e-4)
    # Without gold the soft term alone, at full weight.
    assert distillation_loss(logits, teacher, torch.tensor([NO_LABEL]), t, alpha).item() == \
        pytest.approx(t * t * kl, rel=1e-4)


# ----------------------------------------------------------------------------- learning


def test_the_student_learns_the_teachers_soft_labels(tmp_path, toy_classifier, unlabelled):
    out = tmp_path / "student.pt"
    distill(toy_classifier, DATA, DATA, out, [unlabelled], eval_every=2, dropout=0.0, **TINY)
    history = Checkpoint.load(out).meta["history"]
    first, last = history[0], history[-1]
    assert last["teacher_kl"] < 0.5 * first["teacher_kl"]
    assert last["agreement"] == 1.0 >= first["agreement"]
    student = Checkpoint.load(out)
    assert student.task == "classify" and student.labels == ["negative", "positive"]
    meta = student.meta["distill"]
    assert (meta["labelled"], meta["unlabelled"]) == (5, 3)  # "I love my cat." is labelled
    assert meta["temperature"] == 2.0 and meta["alpha"] == 0.5
    assert meta["unlabelled_files"] == [str(unlabelled)] and meta["augmented"] == 0
    # The teacher's distributions are kept for --resume: 8 texts, 2 classes.
    stored = torch.load(soft_targets_path(out), weights_only=True)
    assert stored["probabilities"].shape == (8, 2)


def test_resume_equals_an_uninterrupted_run(tmp_path, toy_classifier, unlabelled):
    options = {**TINY, "epochs": 6, "dropout": 0.3, "ema": 0.9, "adversarial": 0.05,
               "temperature": 3.0, "alpha": 0.3}
    full, part = tmp_path / "full.pt", tmp_path / "part.pt"
    distill(toy_classifier, DATA, DATA, full, [unlabelled], **options)
    distill(toy_classifier, DATA, DATA, part, [unlabelled], max_steps=5, **options)
    assert Checkpoint.load(last_path(part)).train_state["step"] == 5
    distill(toy_classifier, DATA, DATA, part, [unlabelled], resume=True, **options)
    a, b = Checkpoint.load(last_path(full)), Checkpoint.load(last_path(part))
    assert a.train_state["step"] == b.train_state["step"] > 5
    assert a.weights.keys() == b.weights.keys()
    assert all(torch.equal(a.weights[k], b.weights[k]) for k in a.weights)


def test_resume_refuses_another_temperature_or_unlabelled_text(tmp_path, toy_classifier,
                                                                unlabelled):
    out = tmp_path / "student.pt"
    distill(toy_classifier, DATA, DATA, out, [unlabelled], max_steps=2, **TINY)
    with pytest.raises(SeqtoolError, match="--temperature was 2.0"):
        distill(toy_classifier, DATA, DATA, out, [unlabelled], resume=True,
                **{**TINY, "temperature": 4.0})
    unlabelled.write_text("Other text.\n")
    with pytest.raises(SeqtoolError, match="cannot resume: --unlabelled-digests"):
        distill(toy_classifier, DATA, DATA, out, [unlabelled], resume=True, **TINY)


def test_the_command_trains_a_student(tmp_path, toy_classifier, unlabelled):
    out = tmp_path / "student.pt"
    result = cli("--teacher", toy_classifier, "--train", DATA, "--dev", DATA, "--unlabelled",
                 unlabelled, "--out", out, "--epochs", "2", "--vocab-size", "60",
                 "--embed-dim", "16", "--hidden-dim", "16", "--temperature", "4",
                 "--alpha", "0.7", "--half-checkpoint", "-q")
    assert result.exit_code == 0, result.output
    student = Checkpoint.load(out)
    assert student.meta["distill"]["temperature"] == 4.0
    assert student.meta["command"].startswith("seqtool ")
    assert student.model_config["embed_dim"] == 16


# ----------------------------------------------------------------------------- errors


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def common(toy_classifier, out, *extra):
    return ("--teacher", toy_classifier, "--train", DATA, "--dev", DATA, "--out", out,
            "--epochs", "1", "--vocab-size", "60", "--embed-dim", "8", "--hidden-dim", "8",
            "-q", *extra)


def test_a_teacher_of_another_task_is_refused(tmp_path, toy_classifier):
    other = Checkpoint.load(toy_classifier)
    other.task = "generate"
    other.save(tmp_path / "generator.pt")
    line = one_line_error(cli(*common(tmp_path / "generator.pt", tmp_path / "s.pt")))
    assert "the teacher is a generate model; distill needs a classify model" in line
    assert not (tmp_path / "s.pt").exists()


def test_labels_that_differ_from_the_teachers_are_refused(tmp_path, toy_classifier):
    data = tmp_path / "other.tsv"
    data.write_text("good\tI love my cat.\nbad\tIt is raining cats and dogs.\n")
    args = list(common(toy_classifier, tmp_path / "s.pt"))
    args[args.index("--train") + 1] = data
    line = one_line_error(cli(*args))
    assert "the teacher's labels are negative, positive; the training data's are bad, good" \
        in line


def test_a_missing_unlabelled_file_is_refused(tmp_path, toy_classifier):
    missing = tmp_path / "missing.txt"
    line = one_line_error(cli(*common(toy_classifier, tmp_path / "s.pt", "--unlabelled",
                                      missing)))
    assert f"{missing}: cannot open" in line


def test_an_empty_unlabelled_file_is_refused(tmp_path, toy_classifier, unlabelled):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n  \n")
    line = one_line_error(cli(*common(toy_classifier, tmp_path / "s.pt", "--unlabelled",
                                      unlabelled, "--unlabelled", empty)))
    assert f"{empty}: unlabelled file is empty" in line


def test_out_may_not_be_the_teacher(tmp_path, toy_classifier):
    line = one_line_error(cli(*common(toy_classifier, toy_classifier)))
    assert str(toy_classifier) in line


def test_the_student_can_start_from_a_language_model(tmp_path, toy_classifier, unlabelled):
    """As `train classify --init`: the language model's tokenizer, sizes and layers (frozen
    here, so they stay exactly)."""
    from conftest import run_cli
    from test_pretrain import TINY_PRETRAIN

    lm = tmp_path / "lm.pt"
    run_cli("pretrain", "--train", unlabelled, "--dev", unlabelled, "--out", lm, *TINY_PRETRAIN)
    out = tmp_path / "student.pt"
    sizes_left_out = {k: v for k, v in TINY.items() if k not in ("embed_dim", "hidden_dim")}
    distill(toy_classifier, DATA, DATA, out, [unlabelled], init=str(lm),
            pretrained_lr_scale=0.0, **{**sizes_left_out, "epochs": 3})
    student, language_model = Checkpoint.load(out), Checkpoint.load(lm)
    assert student.tokenizers["src"] == language_model.tokenizers["src"]
    assert student.model_config["hidden_dim"] == 16  # the language model's, not 192
    assert torch.equal(student.weights["members.0.embedding.weight"],
                       language_model.weights["embedding.weight"])


def test_augmented_copies_join_the_transfer_set(tmp_path, toy_classifier):
    from seqtool.text.augment import augmented_copies

    texts = [line.split("\t")[1] for line in DATA.read_text().splitlines()]
    copies = augmented_copies(texts, 4, seed=3)
    assert copies == augmented_copies(texts, 4, seed=3) != augmented_copies(texts, 4, seed=4)
    assert 0 < len(copies) <= 20 and all(c and c not in texts for c in copies)
    out = tmp_path / "student.pt"
    distill(toy_classifier, DATA, DATA, out, augment=4, **{**TINY, "epochs": 2})
    added = Checkpoint.load(out).meta["distill"]["augmented"]
    assert 0 < added <= len(copies)
    stored = torch.load(soft_targets_path(out), weights_only=True)
    assert stored["probabilities"].shape == (5 + added, 2)
