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
        """query [B, Q]; keys [B, S, *]; values [B, S, V]; mask [B, S] True at real tokens.

        Returns the context [B, V] and the weights [B, S].
        """
        if self.kind == "bahdanau":
            energy = torch.tanh(keys + self.query_proj(query).unsqueeze(1))
            scores = self.energy(energy).squeeze(2)
        else:
            scores = torch.bmm(keys, query.unsqueeze(2)).squeeze(2)
        scores = scores.float().masked_fill(~mask, float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights.unsqueeze(1).to(values.dtype), values).squeeze(1)
        return context, weights
