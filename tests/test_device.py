"""Device-true code: every tensor follows the model's device.

Without a GPU, `devicecheck.DeviceCheck` replays CUDA's rule (no mixing of device and host
tensors) on the CPU, through one training step and the decoding of each model. On a machine
with CUDA the same runs happen on the GPU for real.
"""

from __future__ import annotations

import pytest
import torch
from conftest import TOY
from devicecheck import DeviceCheck, DeviceMismatch

from seqtool.checkpoint import Checkpoint
from seqtool.config import TrainConfig
from seqtool.decoding.scoring import classify_outputs, sentence_nll
from seqtool.decoding.translation import Translation
from seqtool.inference.predict import Loaded, generate
from seqtool.nn.common import run_padded
from seqtool.text.data import read_labeled, read_parallel
from seqtool.training.loop import Trainer
from seqtool.training.recipes import (
    TokenizerOptions,
    setup_classify,
    setup_generate,
    setup_translate,
)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SMALL = {"embed_dim": 8, "hidden_dim": 8}


def build(task: str):
    if task == "translate":
        pairs = read_parallel(TOY / "en-de.tsv")
        return setup_translate(pairs, pairs, {**SMALL, "attention_dim": 8, "dropout": 0.1},
                               TokenizerOptions(vocab_size=60), True, 64, 0, {})
    records = list(read_labeled(TOY / "sentiment.tsv"))
    setup = setup_classify if task == "classify" else setup_generate
    return setup(records, records, "toy", dict(SMALL), TokenizerOptions(vocab_size=50), 0, {})


def test_the_check_catches_a_tensor_left_on_the_cpu():
    rnn = torch.nn.GRU(4, 4, batch_first=True, bidirectional=True)
    x = torch.randn(2, 3, 4).to("cpu")
    with DeviceCheck(rnn):
        run_padded(rnn, x, torch.tensor([3, 2], device="cpu"))  # lengths moved: fine
        with pytest.raises(DeviceMismatch):
            run_padded(rnn, x, torch.tensor([3, 2]))  # lengths left behind


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("task", ["classify", "generate", "translate"])
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_training_step_keeps_every_tensor_on_the_device(tmp_path, task, device, precision):
    model, task_spec = build(task)
    config = TrainConfig(device=device, precision=precision, max_tokens=64, quiet=True,
                         ema=0.9)
    trainer = Trainer(model, task_spec, config, tmp_path / "m.pt")
    batch = trainer.epoch_batches(0)[0]
    with DeviceCheck(trainer.model) as check:
        loss, units, _ = trainer.train_batch(batch)
        trainer.evaluate()
    assert check.calls > 50 and units > 0 and loss > 0
    assert all(p.device.type == device for p in trainer.model.parameters())


@pytest.mark.parametrize("device", DEVICES)
def test_decoding_keeps_every_tensor_on_the_device(device):
    translator, _ = build("translate")
    translator.to(device).eval()
    pairs = read_parallel(TOY / "en-de.tsv")  # the task's joint tokenizer, trained again
    tok = TokenizerOptions(vocab_size=60).build([p.src for p in pairs] + [p.tgt for p in pairs],
                                                0)
    texts = [p.src for p in pairs[:3]] + [""]
    with DeviceCheck(translator):
        for beam in (1, 3):
            out = Translation(translator, tok, tok).translate(texts, beam=beam, n_best=1,
                                                              with_attention=True)
            assert len(out) == 4 and out[-1].text == ""


@pytest.mark.parametrize("device", DEVICES)
def test_classify_and_generate_keep_every_tensor_on_the_device(device):
    records = list(read_labeled(TOY / "sentiment.tsv"))
    classifier, _ = build("classify")
    generator, _ = build("generate")
    tok = TokenizerOptions(vocab_size=50).build([r.text for r in records], 0)
    classifier.to(device).eval()
    generator.to(device).eval()
    texts = [r.text for r in records]
    with DeviceCheck(classifier, generator):
        probs = classify_outputs(classifier, tok, texts)
        vectors = classify_outputs(classifier, tok, texts, encode_only=True)
        nll, counts = sentence_nll(generator, [0, 1, 0, 1, 0], tok.encode_batch(texts))
        card = Checkpoint("generate", {}, {}, {}, labels=["negative", "positive"])
        loaded = Loaded(card, generator, tok, tok)
        samples = generate(loaded, "positive", 3, prompt="i love", max_tokens=5,
                           guidance=1.0, top_p=0.9)
    assert probs.shape == (5, 2) and vectors.shape[0] == 5
    assert bool((nll > 0).all()) and len(samples) == 3


@pytest.mark.parametrize("local_rank, expected", [("0", 0), ("1", 1), ("3", 1)])
def test_each_torchrun_process_takes_its_local_gpu(monkeypatch, local_rank, expected):
    """Under torchrun, cuda (and auto on a GPU machine) means the GPU of LOCAL_RANK."""
    from seqtool.device import resolve_device

    chosen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "set_device", chosen.append)
    monkeypatch.setenv("LOCAL_RANK", local_rank)
    for name in ("cuda", "auto"):
        assert resolve_device(name) == torch.device("cuda", expected)
    assert chosen == [expected, expected]
    monkeypatch.delenv("LOCAL_RANK")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")
