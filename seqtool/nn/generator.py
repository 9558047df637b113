"""S2 `Generator`: y_h(0) = tanh(W_i x) from the class x; an LSTM predicts c(t) from c(t-1)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqtool.config import GeneratorConfig
from seqtool.nn.common import run_packed
from seqtool.text.tokenizer import PAD


class Generator(nn.Module):
    def __init__(self, config: GeneratorConfig):
        super().__init__()
        c = self.config = config
        # W_i applied to a one-hot class vector is a column of W_i: an embedding lookup.
        self.initial = nn.Embedding(c.num_classes, c.layers * 2 * c.hidden_dim)
        self.class_input = (
            nn.Embedding(c.num_classes, c.class_dim) if c.class_every_step else None
        )
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=PAD)
        input_dim = c.embed_dim + (c.class_dim if c.class_every_step else 0)
        self.rnn = nn.LSTM(
            input_dim, c.hidden_dim, c.layers, batch_first=True,
            dropout=c.dropout if c.layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(c.dropout)
        out_dim = c.embed_dim if c.tie_embeddings else c.hidden_dim
        self.bottleneck = (
            nn.Linear(c.hidden_dim, c.embed_dim)
            if c.tie_embeddings and c.hidden_dim != c.embed_dim
            else None
        )
        self.output = nn.Linear(out_dim, c.vocab_size)
        if c.tie_embeddings:
            self.output.weight = self.embedding.weight
        # The class shifts word choice directly (sentiment words), not only through y_h(0).
        self.class_bias = nn.Embedding(c.num_classes, c.vocab_size) if c.class_bias else None
        if self.class_bias is not None:
            nn.init.zeros_(self.class_bias.weight)

    def initial_state(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """y_h(0) = tanh(W_i x): the class sets the LSTM's hidden and cell state of every layer."""
        c = self.config
        state = torch.tanh(self.initial(labels)).view(-1, c.layers, 2, c.hidden_dim)
        h0 = state[:, :, 0].transpose(0, 1).contiguous()
        c0 = state[:, :, 1].transpose(0, 1).contiguous()
        return h0, c0

    def forward(
        self,
        labels: torch.Tensor,
        inputs: torch.Tensor,
        lengths: torch.Tensor | None = None,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Next-token logits [B, T, V] for input tokens [B, T] (c(t-1), from <start>)."""
        if state is None:
            state = self.initial_state(labels)
        x = self.embedding(inputs)
        if self.class_input is not None:
            x = torch.cat([x, self.class_input(labels)[:, None].expand(-1, x.size(1), -1)], -1)
        x = self.dropout(x)
        if lengths is not None:
            out, state = run_packed(self.rnn, x, lengths, state)
        else:
            out, state = self.rnn(x, state)
        out = self.dropout(out)
        if self.bottleneck is not None:
            out = self.bottleneck(out)
        logits = self.output(out)
        if self.class_bias is not None:
            logits = logits + self.class_bias(labels).unsqueeze(1)
        return logits, state

    def sentence_nll(self, labels: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """-log p(x|c) of every sentence x of a batch under the classes `labels` [B]."""
        logits, _ = self(labels, batch["inputs"], batch["lengths"])
        nll = F.cross_entropy(logits.float().transpose(1, 2), batch["targets"],
                              ignore_index=PAD, reduction="none")
        return nll.sum(1)

    def class_nll(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """-log p(x|c) of every sentence under every class [B, C], in one batch of B * C."""
        c, b = self.config.num_classes, batch["labels"].numel()
        repeated = {k: batch[k].repeat(c, *[1] * (batch[k].dim() - 1))
                    for k in ("inputs", "targets", "lengths")}
        labels = torch.arange(c, device=batch["labels"].device).repeat_interleave(b)
        return self.sentence_nll(labels, repeated).view(c, b).t()

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        labels, tokens = batch["labels"], int((batch["targets"] != PAD).sum())
        weight = self.config.discriminative_weight
        if not (self.training and weight > 0 and self.config.num_classes > 1):
            return self.sentence_nll(labels, batch).sum(), tokens
        nll = self.class_nll(batch)
        generative = nll.gather(1, labels[:, None]).sum()
        # Bayes' rule with a uniform prior: log p(c|x) = -nll_c - logsumexp(-nll).
        discriminative = F.cross_entropy(-nll, labels, reduction="sum")
        # Summed over pieces and over sentences: each piece's log-probability then gets a
        # gradient of at most `weight` from the classifier against 1 from the likelihood, the
        # balance of GeDi's per-piece and per-sentence means.
        return generative + weight * discriminative, tokens
