"""seqtool.nn.translator on small random float64 models: the decoder step is `recur` then
`attend`, `attend` takes one step or all steps at once, and beam search reorders states."""

from __future__ import annotations

import pytest
import torch

from seqtool.config import TranslatorConfig
from seqtool.nn.translator import Translator, select_state


def small_translator(**options) -> Translator:
    torch.manual_seed(0)
    config = TranslatorConfig(src_vocab_size=30, tgt_vocab_size=30, embed_dim=8, hidden_dim=6,
                              attention_dim=5, dropout=0.0, **options)
    return Translator(config).double().eval()


def memory(model: Translator):
    src = torch.randint(4, 30, (3, 7), generator=torch.Generator().manual_seed(1))
    return model.encode(src, torch.tensor([7, 4, 2]))


@pytest.mark.parametrize("rnn", ["gru", "lstm"])
@pytest.mark.parametrize("feeding", [True, False])
def test_the_step_is_recur_then_attend(rnn, feeding):
    model = small_translator(rnn=rnn, input_feeding=feeding, decoder_layers=2)
    m = memory(model)
    emb = model.decoder.embedding(torch.tensor([5, 6, 7]))
    attentional, state, weights = model.decoder.step(
        emb, m["state"], m["attentional"], m["keys"], m["values"], m["mask"])
    x = torch.cat([emb, m["attentional"]], -1) if feeding else emb
    hidden, expected_state = model.decoder.recur(x, m["state"])
    expected, expected_weights = model.decoder.attend(hidden, m["keys"], m["values"], m["mask"])
    assert torch.equal(attentional, expected) and torch.equal(weights, expected_weights)
    assert len(state) == len(expected_state) == 2
    for s, e in zip(state, expected_state, strict=True):
        if rnn == "lstm":
            assert torch.equal(s[0], e[0]) and torch.equal(s[1], e[1])
        else:
            assert torch.equal(s, e)


@pytest.mark.parametrize("attention", ["bahdanau", "luong-general", "luong-dot"])
def test_attend_over_all_steps_equals_one_step_at_a_time(attention):
    model = small_translator(attention=attention)
    m = memory(model)
    hidden = torch.randn(3, 4, 6, dtype=torch.double)
    together, weights = model.decoder.attend(hidden, m["keys"], m["values"], m["mask"])
    for t in range(4):
        alone, alone_weights = model.decoder.attend(hidden[:, t], m["keys"], m["values"],
                                                    m["mask"])
        torch.testing.assert_close(together[:, t], alone, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(weights[:, t], alone_weights, rtol=1e-10, atol=1e-12)


def test_select_state_reorders_every_tensor_of_a_state():
    h, c = torch.arange(6.0).view(3, 2), torch.arange(6.0, 12.0).view(3, 2)
    index = torch.tensor([2, 2, 0])
    assert torch.equal(select_state(h, index), h[index])
    state = [(h, c), (c, h)]  # an LSTM's (h, c) per layer
    picked = select_state(state, index)
    assert isinstance(picked, list) and len(picked) == 2
    for got, layer in zip(picked, state, strict=True):
        assert isinstance(got, tuple) and len(got) == 2
        for tensor, original in zip(got, layer, strict=True):  # h and c alike
            assert torch.equal(tensor, original[index])
