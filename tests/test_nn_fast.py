"""Every fast path of `seqtool.nn.fast` computes what its plain, public-API version computes,
on small random float64 models, gradients included (each fast path is used in training).

Equalities hold far below any rounding that differs between CPUs, since everything runs in
float64.
"""

from __future__ import annotations

import itertools

import pytest
import torch

from seqtool.config import ClassifierConfig, TranslatorConfig
from seqtool.nn import fast
from seqtool.nn.classifier import Classifier
from seqtool.nn.common import run_padded, stepped_rnn
from seqtool.nn.translator import Translator

RTOL, ATOL = 1e-10, 1e-12


def assert_same(actual: torch.Tensor, expected: torch.Tensor, msg: str = "") -> None:
    torch.testing.assert_close(actual, expected, rtol=RTOL, atol=ATOL, msg=msg or None)


def gradients(output: torch.Tensor, inputs: list[torch.Tensor], seed: int = 5):
    """d(output . random direction)/d inputs: every element of the output matters."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(output.shape, generator=g, dtype=output.dtype)
    return torch.autograd.grad((output * direction).sum(), inputs, allow_unused=True)


def test_disabled_switches_the_plain_paths_on_and_back():
    assert fast.enabled()
    with fast.disabled():
        assert not fast.enabled()
        with fast.disabled():
            assert not fast.enabled()
        assert not fast.enabled()
    assert fast.enabled()
    with pytest.raises(RuntimeError), fast.disabled():
        raise RuntimeError
    assert fast.enabled()


# ----------------------------------------------------------------------------- fused_rnn


@pytest.mark.parametrize("lstm, layers", list(itertools.product([False, True], [1, 2])))
def test_fused_rnn_equals_stepped_rnn(lstm, layers):
    torch.manual_seed(0)
    B, T, D, H = 3, 5, 4, 6
    gates = 4 if lstm else 3
    x = torch.randn(B, T, D, dtype=torch.double, requires_grad=True)
    weights = []
    for layer in range(layers):
        weights += [torch.randn(gates * H, D if layer == 0 else H, dtype=torch.double) * 0.5,
                    torch.randn(gates * H, H, dtype=torch.double) * 0.5,
                    torch.randn(gates * H, dtype=torch.double) * 0.5,
                    torch.randn(gates * H, dtype=torch.double) * 0.5]
    for w in weights:
        w.requires_grad_()
    h0 = torch.randn(layers, B, H, dtype=torch.double, requires_grad=True)
    c0 = torch.randn(layers, B, H, dtype=torch.double, requires_grad=True)
    state = (h0, c0) if lstm else h0
    inputs = [x, h0, *weights] + ([c0] if lstm else [])
    results = []
    for run in (fast.fused_rnn, stepped_rnn):
        out = run(x, state, weights, layers, 0.0, True)
        results.append((out, gradients(out, inputs)))
    (fused, fused_grads), (plain, plain_grads) = results
    assert fused.shape == (B, T, H)
    assert_same(fused, plain)
    for i, (a, b) in enumerate(zip(fused_grads, plain_grads, strict=True)):
        assert_same(a, b, f"gradient {i}")


@pytest.mark.parametrize("rnn, bidirectional, layers",
                         list(itertools.product([torch.nn.GRU, torch.nn.LSTM], [True, False],
                                                [1, 2])))
def test_run_padded_fast_equals_plain(rnn, bidirectional, layers):
    """The encoders' and the classifier's RNN (training mode: it is used in training)."""
    torch.manual_seed(0)
    module = rnn(5, 4, layers, batch_first=True, bidirectional=bidirectional).double().train()
    x = torch.randn(3, 6, 5, dtype=torch.double, requires_grad=True)
    lengths = torch.tensor([6, 3, 1])
    inputs = [x, *module.parameters()]
    results = []
    for plain in (False, True):
        with fast.disabled() if plain else torch.enable_grad():
            out, final = run_padded(module, x, lengths)
        both = torch.cat([out.flatten(), final.flatten()])
        results.append((out, final, gradients(both, inputs)))
    (out, final, grads), (plain_out, plain_final, plain_grads) = results
    assert_same(out, plain_out)
    assert_same(final, plain_final)
    for i, (a, b) in enumerate(zip(grads, plain_grads, strict=True)):
        assert_same(a, b, f"gradient {i}")


# ----------------------------------------------------------------------------- decoder paths


def small_translator(**options) -> Translator:
    torch.manual_seed(0)
    config = TranslatorConfig(src_vocab_size=30, tgt_vocab_size=30, embed_dim=8, hidden_dim=6,
                              attention_dim=5, dropout=0.0, **options)
    return Translator(config).double()


def decoder_results(model: Translator, decode) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Attentional vectors of one decoding path over a fixed batch and every gradient."""
    src = torch.randint(4, 30, (3, 7), generator=torch.Generator().manual_seed(1))
    tgt = torch.randint(4, 30, (3, 5), generator=torch.Generator().manual_seed(2))
    model.zero_grad()
    hidden = decode(model.encode(src, torch.tensor([7, 4, 2])), model.decoder.embedding(tgt))
    direction = torch.randn(hidden.shape, generator=torch.Generator().manual_seed(3),
                            dtype=torch.double)
    (hidden * direction).sum().backward()
    # (the output layer, after the attentional vectors, gets none)
    return hidden.detach(), {n: p.grad.clone() for n, p in model.named_parameters()
                             if p.grad is not None}


def assert_same_path(model: Translator, fast_decode, plain_decode) -> None:
    hidden, grads = decoder_results(model, fast_decode)
    plain_hidden, plain_grads = decoder_results(model, plain_decode)
    assert_same(hidden, plain_hidden)
    assert grads.keys() == plain_grads.keys() and "decoder.combine.weight" in grads
    for name, grad in plain_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-8, atol=1e-12, msg=name)


ATTENTIONS = ["bahdanau", "luong-general", "luong-dot"]


@pytest.mark.parametrize("attention", ATTENTIONS)
def test_input_feeding_gru_equals_the_step_loop(attention):
    """`fast.input_feeding_gru` (hand-written backward) against `Decoder.step` at every step."""
    model = small_translator(attention=attention)
    assert_same_path(model, model._decode_fused, model._decode_steps)


@pytest.mark.parametrize("rnn, attention, layers",
                         list(itertools.product(["gru", "lstm"], ATTENTIONS, [1, 2])))
def test_parallel_decoder_equals_the_step_loop(rnn, attention, layers):
    """Without input feeding: one `fast.fused_rnn` call and attention over all steps at once
    against `Decoder.step` at every step."""
    model = small_translator(rnn=rnn, attention=attention, decoder_layers=layers,
                             input_feeding=False)
    assert_same_path(model, model._decode_parallel, model._decode_steps)


@pytest.mark.parametrize("options", [
    dict(), dict(attention="luong-general"), dict(input_feeding=False),
    dict(rnn="lstm", decoder_layers=2, encoder_layers=2, input_feeding=False),
    dict(rnn="lstm"),  # no fast decoder path: only the encoder's
], ids=str)
def test_a_translator_loss_and_gradients_are_the_same_without_the_fast_paths(options):
    model = small_translator(**options).train()
    batch = {"src": torch.randint(4, 30, (3, 7), generator=torch.Generator().manual_seed(1)),
             "src_lengths": torch.tensor([7, 4, 2]),
             "tgt_in": torch.randint(4, 30, (3, 5), generator=torch.Generator().manual_seed(2)),
             "tgt_out": torch.randint(4, 30, (3, 5), generator=torch.Generator().manual_seed(4))}
    batch["tgt_out"][2, 3:] = 0  # padding
    results = []
    for plain in (False, True):
        model.zero_grad()
        with fast.disabled() if plain else torch.enable_grad():
            loss, units = model.loss(batch)
        loss.backward()
        results.append((loss.detach(), units,
                        {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss, units, grads), (plain_loss, plain_units, plain_grads) = results
    assert units == plain_units
    assert_same(loss, plain_loss)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-8, atol=1e-12, msg=name)


def test_a_classifier_loss_and_gradients_are_the_same_without_the_fast_paths():
    torch.manual_seed(0)
    model = Classifier(ClassifierConfig(vocab_size=30, num_classes=3, embed_dim=6, hidden_dim=5,
                                        layers=2, dropout=0.0, pooling="concat")).double()
    batch = {"tokens": torch.randint(4, 30, (3, 6), generator=torch.Generator().manual_seed(1)),
             "lengths": torch.tensor([6, 3, 1]), "labels": torch.tensor([0, 2, 1])}
    batch["tokens"][1, 3:] = 0
    batch["tokens"][2, 1:] = 0
    results = []
    for plain in (False, True):
        model.zero_grad()
        with fast.disabled() if plain else torch.enable_grad():
            loss, _ = model.loss(batch)
        loss.backward()
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (loss, grads), (plain_loss, plain_grads) = results
    assert_same(loss, plain_loss)
    for name, grad in plain_grads.items():
        torch.testing.assert_close(grads[name], grad, rtol=1e-8, atol=1e-12, msg=name)
