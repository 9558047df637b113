"""Edited checkpoints that keep the weight shapes fail in one line instead of answering
wrongly: an edited configuration or labels (digest), repeated labels, non-finite weights."""

from __future__ import annotations

import json

import pytest
import torch

from seqtool.checkpoint import Checkpoint
from seqtool.errors import SeqtoolError
from tests.conftest import run_seqtool


def edit_payload(source, target, **changes):
    payload = torch.load(source, weights_only=True)
    for key, change in changes.items():
        payload[key] = change(payload[key]) if callable(change) else change
    torch.save(payload, target)


def one_line_failure(path, message):
    result = run_seqtool("classify", "-m", path, "I love my cat.")
    assert result.returncode == 1, result.stdout
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert str(path) in result.stderr
    assert result.stdout == ""


def test_a_changed_pooling_is_a_damaged_checkpoint(toy_classifier, tmp_path):
    edited = tmp_path / "edited.pt"
    config = json.loads(torch.load(toy_classifier, weights_only=True)["model_config"])
    assert config["pooling"] == "max"
    edit_payload(toy_classifier, edited,
                 model_config=json.dumps({**config, "pooling": "mean"}))
    one_line_failure(edited, "damaged checkpoint: its configuration, labels, tokenizer or")


def test_swapped_labels_are_a_damaged_checkpoint(toy_classifier, tmp_path):
    edited = tmp_path / "edited.pt"
    edit_payload(toy_classifier, edited,
                 labels=lambda labels: json.dumps(list(reversed(json.loads(labels)))))
    one_line_failure(edited, "digest differs")


def test_repeated_labels_are_refused_even_when_signed(toy_classifier, tmp_path):
    ckpt = Checkpoint.load(toy_classifier)
    ckpt.labels = [ckpt.labels[0]] * len(ckpt.labels)
    ckpt.save(tmp_path / "twice.pt")  # a digest over the repeated labels: still refused
    one_line_failure(tmp_path / "twice.pt", "appears more than once")


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_weights_are_refused(toy_classifier, tmp_path, value):
    ckpt = Checkpoint.load(toy_classifier)
    name = sorted(ckpt.weights)[0]
    ckpt.weights[name] = ckpt.weights[name].clone()
    ckpt.weights[name].view(-1)[0] = value
    ckpt.save(tmp_path / "nan.pt")
    with pytest.raises(SeqtoolError, match=f"weight '{name}' holds NaN or infinite"):
        Checkpoint.load(tmp_path / "nan.pt")


def test_a_checkpoint_without_digest_still_loads(toy_classifier, tmp_path):
    """Checkpoints written before the digest (the shipped ones among them) load as before."""
    old = tmp_path / "old.pt"
    payload = torch.load(toy_classifier, weights_only=True)
    assert "digest" in payload
    del payload["digest"]
    torch.save(payload, old)
    assert Checkpoint.load(old).labels == Checkpoint.load(toy_classifier).labels


def test_the_digest_covers_the_tokenizer(toy_classifier, tmp_path):
    edited = tmp_path / "edited.pt"
    other = torch.load(toy_classifier, weights_only=True)["tokenizers"]["src"].clone()
    other[-1] ^= 1
    edit_payload(toy_classifier, edited, tokenizers={"src": other})
    with pytest.raises(SeqtoolError, match="digest differs"):
        Checkpoint.load(edited)
