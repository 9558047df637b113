"""Pieces every model family shares: the RNN type tables, masks, pooling over time, and running
an RNN over a padded batch.

Padding never enters a recurrence as data: encoders read each sentence within its own length
(`run_padded`) and the causal decoders only see padding after the last real token, where the
loss is masked. Every tensor a model makes follows the device of its input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqtool.nn import fast

RNN_TYPES = {"gru": nn.GRU, "lstm": nn.LSTM}
CELL_TYPES = {"gru": nn.GRUCell, "lstm": nn.LSTMCell}


def run_packed(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor, state=None):
    """Run `rnn` over the real tokens only; returns padded outputs (zeros at padding) and h_n."""
    packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
    out, h_n = rnn(packed, state)
    out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.size(1))
    return out, h_n


def run_padded(rnn: nn.RNNBase, x: torch.Tensor, lengths: torch.Tensor):
    """Run a one- or two-directional `rnn` over a padded batch x [B, S, *]. Returns the outputs
    [B, S, dirs * H] (zeros at padding) and the last layer's final states [B, dirs * H].

    Every direction runs over the whole padded length, yet padding never reaches a real
    position: the forward direction sees it only after the last real token, and the backward
    direction reads each sentence reversed within its own length. (Packed sequences give the
    same result, but PyTorch's CPU kernels then step with a shrinking batch, and the encoder's
    backward pass was 1.75x slower.)"""
    B, S, _ = x.shape
    steps = torch.arange(S, device=x.device)[None]
    real = steps < lengths[:, None]
    # Position j of a sentence of length n holds position n-1-j; padding stays in place.
    reverse = torch.where(real, lengths[:, None] - 1 - steps, steps)

    def reorder(t: torch.Tensor) -> torch.Tensor:
        return t.gather(1, reverse[:, :, None].expand(-1, -1, t.size(2)))

    lstm = isinstance(rnn, nn.LSTM)
    run = fast.fused_rnn if fast.enabled() else stepped_rnn
    for layer in range(rnn.num_layers):
        if layer > 0:
            x = F.dropout(x, rnn.dropout, rnn.training)
        outputs = []
        for direction in ["", "_reverse"][: 2 if rnn.bidirectional else 1]:
            weights = [getattr(rnn, f"{name}_l{layer}{direction}")
                       for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            h0 = x.new_zeros(1, B, rnn.hidden_size)
            state = (h0, h0) if lstm else h0
            out = run(reorder(x) if direction else x, state, weights, 1, 0.0, rnn.training)
            outputs.append(reorder(out) if direction else out)
        x = torch.cat(outputs, -1) if len(outputs) > 1 else outputs[0]
    x = x * real[:, :, None]
    H = rnn.hidden_size
    final = x[torch.arange(B, device=x.device), lengths - 1, :H]
    if rnn.bidirectional:
        final = torch.cat([final, x[:, 0, H:]], -1)
    return x, final


def stepped_rnn(
    x: torch.Tensor,
    state: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
    weights: list[torch.Tensor],
    layers: int,
    dropout: float,
    training: bool,
) -> torch.Tensor:
    """Outputs [B, T, H] of a one-directional GRU (state h0 [layers, B, H]) or LSTM (state
    (h0, c0)) of `layers` layers over x [B, T, I], from the weights (weight_ih, weight_hh,
    bias_ih, bias_hh) of each layer in turn; dropout between layers while training.

    The plain version of `fast.fused_rnn`: PyTorch's GRU and LSTM equations, one step at a
    time."""
    lstm = isinstance(state, tuple)
    for layer in range(layers):
        if layer > 0:
            x = F.dropout(x, dropout, training)
        w_ih, w_hh, b_ih, b_hh = weights[4 * layer : 4 * layer + 4]
        h = state[0][layer] if lstm else state[layer]
        c = state[1][layer] if lstm else None
        outputs = []
        for gi in F.linear(x, w_ih, b_ih).unbind(1):
            gh = F.linear(h, w_hh, b_hh)
            if lstm:
                i, f, g, o = (gi + gh).chunk(4, dim=-1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
            else:
                i_r, i_z, i_n = gi.chunk(3, dim=-1)
                h_r, h_z, h_n = gh.chunk(3, dim=-1)
                r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
                n = torch.tanh(i_n + r * h_n)
                h = (1 - z) * n + z * h
            outputs.append(h)
        x = torch.stack(outputs, dim=1)
    return x


def fp32_recurrence(x: torch.Tensor):
    """Keep recurrent states in fp32 under bf16 autocast: rounding a state to bf16 at every
    step compounds over a sentence and slowed learning in our runs. The vocabulary-sized
    output projection, where most of the arithmetic is, stays in bf16."""
    return torch.autocast(x.device.type, enabled=False)


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, max_len] True at real positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]



def max_over_time(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[B, T, H] -> [B, H]: the largest value of each unit over each text's real positions."""
    mask = length_mask(lengths, states.size(1)).unsqueeze(2)
    return states.masked_fill(~mask, float("-inf")).max(dim=1).values


def mean_over_time(states: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """[B, T, H] -> [B, H]: the mean over each text's real positions."""
    mask = length_mask(lengths, states.size(1)).unsqueeze(2)
    return (states * mask).sum(1) / lengths.unsqueeze(1).to(states.dtype)


# concat: ULMFiT's concat pooling, [y_h(T); max over t; mean over t] (Howard & Ruder 2018).
POOLINGS = ("max", "mean", "last", "concat")
