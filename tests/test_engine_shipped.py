"""`seqtool.engine` on the shipped models (checkpoints/) gives what their torch modules give:
the sentiment classifier's probabilities on 50 test lines, decoding steps of the Bible
translator with beams, and the sentiment generator's steps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seqtool import engine
from seqtool.checkpoint import Checkpoint
from seqtool.engine.ops import softmax
from seqtool.engine.translator import SOURCE_KEYS
from seqtool.engine.translator import select_state as np_select_state
from seqtool.nn.batches import classify_batch, translate_batch
from seqtool.nn.registry import build_model
from seqtool.nn.translator import select_state
from seqtool.text.tokenizer import START, Tokenizer
from tests.conftest import ROOT

pytestmark = pytest.mark.usefixtures("one_thread")


def shipped(name: str):
    """(torch model in eval mode, numpy twin in float32, tokenizer) of a shipped model."""
    ckpt = Checkpoint.load(ROOT / "checkpoints" / f"{name}.seqtool")
    model = build_model(ckpt.task, ckpt.model_config)
    model.load_state_dict(ckpt.torch_weights())
    weights = ckpt.numpy_weights()
    return (model.eval(), engine.build(ckpt.task, ckpt.model_config, weights),
            Tokenizer(ckpt.tokenizers["src"]))


def test_shipped_classifier_probabilities():
    model, twin, tokenizer = shipped("sentiment-gru")
    lines = (ROOT / "corpora/sentiment/movie-snippets/test.tsv").read_text().splitlines()[:50]
    batch = classify_batch(tokenizer.encode_batch([line.split("\t")[1] for line in lines]))
    with torch.no_grad():
        want = torch.softmax(model(batch["tokens"], batch["lengths"]), -1).numpy()
    got = softmax(twin.logits(batch["tokens"].numpy(), batch["lengths"].numpy()))
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert (got.argmax(1) == want.argmax(1)).all()


def test_shipped_translator_steps():
    model, twin, tokenizer = shipped("bible-fr-en-gru-attention")
    texts = (ROOT / "corpora/translation/bible-fr-en/test.fr").read_text().splitlines()[:6]
    batch = translate_batch(tokenizer.encode_batch(texts))
    src, lengths = batch["src"], batch["src_lengths"]
    beam = 3
    with torch.no_grad():
        memory = model.encode(src, lengths)
        np_memory = twin.encode(src.numpy(), lengths.numpy())
        np.testing.assert_allclose(np_memory["values"], memory["values"].numpy(), atol=1e-5)
        copies = torch.arange(len(texts)).repeat_interleave(beam)
        memory = {k: v if k in SOURCE_KEYS else select_state(v, copies)
                  for k, v in memory.items()}
        np_memory = {k: v if k in SOURCE_KEYS else np_select_state(v, copies.numpy())
                     for k, v in np_memory.items()}
        prev = torch.full((len(copies),), START)
        for _ in range(4):
            log_probs, memory, weights = model.decode_step(memory, prev, beam)
            got, np_memory, np_weights = twin.decode_step(np_memory, prev.numpy(), beam)
            np.testing.assert_allclose(got, log_probs.numpy(), atol=1e-4, rtol=1e-5)
            np.testing.assert_allclose(np.exp(got), log_probs.exp().numpy(), atol=1e-5)
            np.testing.assert_allclose(np_weights, weights.numpy(), atol=1e-5)
            # each row's second best token: the hypotheses differ from the first step on
            prev = log_probs.topk(2, -1).indices[:, 1]


def test_shipped_generator_steps():
    model, twin, _ = shipped("sentiment-lstm-generator")
    labels = torch.tensor([0, 1, 1])
    inputs = torch.tensor([[START, 40, 41]]).expand(3, -1)
    with torch.no_grad():
        logits, state = model(labels, inputs)
        got, np_state = twin.start(labels.numpy(), inputs.numpy())
        np.testing.assert_allclose(got, logits[:, -1].numpy(), atol=1e-4, rtol=1e-5)
        for _ in range(5):
            prev = logits[:, -1].argmax(-1)
            logits, state = model(labels, prev[:, None], state=state)
            got, np_state = twin.step(np_state, prev.numpy())
            np.testing.assert_allclose(got, logits[:, -1].numpy(), atol=1e-4, rtol=1e-5)
            np.testing.assert_allclose(np_state.h, state[0].numpy(), atol=1e-5)
