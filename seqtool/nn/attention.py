"""Attention over encoder states: a convex combination of them, weighted by softmax scores.

`keys` are computed once per source sentence (`precompute`), so each decoder step costs only
the query side. Padding positions get a score of -inf and so a weight of exactly zero.
"""

from __future__ import annotations

import torch
from torch import nn


class Attention(nn.Module):
    """score(q, k_j) for every encoder state j, then softmax and the weighted sum of values."""

    def __init__(self, kind: str, query_dim: int, key_dim: int, attention_dim: int):
        super().__init__()
        self.kind = kind
        if kind == "bahdanau":  # additive: v^T tanh(W_k k_j + W_q q)
            self.key_proj = nn.Linear(key_dim, attention_dim, bias=False)
            self.query_proj = nn.Linear(query_dim, attention_dim, bias=False)
            self.energy = nn.Linear(attention_dim, 1, bias=False)
        elif kind == "luong-general":  # multiplicative: q^T W k_j
            self.key_proj = nn.Linear(key_dim, query_dim, bias=False)
        elif kind == "luong-dot":  # q^T k_j
            if query_dim != key_dim:
                raise ValueError(
                    f"dot attention needs equal sizes (decoder {query_dim}, encoder {key_dim})"
                )
        else:
            raise ValueError(f"unknown attention {kind!r}: bahdanau, luong-general, luong-dot")

    def precompute(self, values: torch.Tensor) -> torch.Tensor:
        """Keys for `values` [B, S, key_dim]; call once per batch of source sentences."""
        return values if self.kind == "luong-dot" else self.key_proj(values)

    def forward(
        self, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """query [B, Q] (one step) or [B, T, Q] (all steps at once); keys [B, S, *];
        values [B, S, V]; mask [B, S], True at real tokens.

        Returns the context [B, (T,) V] and the weights [B, (T,) S].
        """
        one_step = query.dim() == 2
        if one_step:
            query = query.unsqueeze(1)
        if self.kind == "bahdanau":
            # In place: the sum is the largest tensor of a decoding step, [B, T, S, A].
            energy = torch.tanh_(keys.unsqueeze(1) + self.query_proj(query).unsqueeze(2))
            scores = self.energy(energy).squeeze(-1)
        else:
            scores = torch.bmm(query, keys.transpose(1, 2))
        if scores.dtype in (torch.float16, torch.bfloat16):  # softmax in fp32 under autocast
            scores = scores.float()
        scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights.to(values.dtype), values)
        if one_step:
            return context.squeeze(1), weights.squeeze(1)
        return context, weights
