"""seqtool.nn.common on small random float64 inputs: the plain RNN, masks, pooling over time."""

from __future__ import annotations

import pytest
import torch

from seqtool.nn.common import (
    POOLINGS,
    length_mask,
    max_over_time,
    mean_over_time,
    run_padded,
    stepped_rnn,
)


@pytest.mark.parametrize("rnn", [torch.nn.GRU, torch.nn.LSTM])
@pytest.mark.parametrize("layers", [1, 2])
def test_stepped_rnn_equals_the_torch_module(rnn, layers):
    """The plain RNN is PyTorch's own GRU and LSTM, layer by layer."""
    torch.manual_seed(0)
    module = rnn(5, 4, layers, batch_first=True).double()
    x = torch.randn(3, 6, 5, dtype=torch.double)
    h0 = torch.randn(layers, 3, 4, dtype=torch.double)
    state = (h0, torch.randn_like(h0)) if rnn is torch.nn.LSTM else h0
    weights = [getattr(module, f"{name}_l{layer}") for layer in range(layers)
               for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    expected, _ = module(x, state)
    torch.testing.assert_close(stepped_rnn(x, state, weights, layers, 0.0, False), expected,
                               rtol=1e-10, atol=1e-12)


def test_run_padded_outputs_are_zero_at_padding():
    torch.manual_seed(0)
    module = torch.nn.GRU(5, 4, batch_first=True, bidirectional=True).double()
    lengths = torch.tensor([6, 3, 1])
    out, final = run_padded(module, torch.randn(3, 6, 5, dtype=torch.double), lengths)
    assert out.shape == (3, 6, 8) and final.shape == (3, 8)
    assert (out[~length_mask(lengths, 6)] == 0).all()
    assert (out[length_mask(lengths, 6)] != 0).all()


def test_length_mask():
    assert length_mask(torch.tensor([3, 1, 0]), 4).tolist() == [
        [True, True, True, False], [True, False, False, False], [False] * 4]


def test_pooling_over_time_reads_only_real_positions():
    torch.manual_seed(0)
    states = torch.randn(2, 4, 3, dtype=torch.double)
    lengths = torch.tensor([4, 2])
    padded = states.clone()
    padded[1, 2:] = 100.0  # padding must never show
    for pool in (max_over_time, mean_over_time):
        result = pool(padded, lengths)
        assert result.shape == (2, 3)
        for i, n in enumerate(lengths.tolist()):
            alone = pool(states[i : i + 1, :n], lengths[i : i + 1])
            torch.testing.assert_close(result[i : i + 1], alone)
    torch.testing.assert_close(max_over_time(states, lengths)[1], states[1, :2].max(0).values)
    torch.testing.assert_close(mean_over_time(states, lengths)[1], states[1, :2].mean(0))
    assert set(POOLINGS) == {"max", "mean", "last", "concat"}
