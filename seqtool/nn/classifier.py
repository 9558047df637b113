"""S1 `Classifier`: y_h(t) = GRU(y_h(t-1), x(t)); y = softmax(W_o pool(y_h)).

Several GRUs can see the same batches (an ensemble, `--ensemble`), and training can add
adversarial shifts of the embedded texts (`--adversarial`). Every model has
`loss(batch) -> (summed loss, number of units)`, which is all the training loop needs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from seqtool.config import ClassifierConfig
from seqtool.nn.common import POOLINGS, length_mask, max_over_time, mean_over_time, run_padded
from seqtool.text.tokenizer import PAD


def encoding_dim(c: ClassifierConfig) -> int:
    """Size of one GRU's sentence vector."""
    states = c.hidden_dim * (2 if c.bidirectional else 1)
    return states * 3 if c.pooling == "concat" else states


class GRUClassifier(nn.Module):
    """embedding -> GRU -> pooled states -> class scores."""

    def __init__(self, c: ClassifierConfig):
        super().__init__()
        if c.pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {c.pooling!r}: {', '.join(POOLINGS)}")
        self.config = c
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=PAD)
        self.rnn = nn.GRU(
            c.embed_dim,
            c.hidden_dim,
            c.layers,
            batch_first=True,
            bidirectional=c.bidirectional,
            dropout=c.dropout if c.layers > 1 else 0.0,
        )
        self.dropout = nn.Dropout(c.dropout)
        self.output = nn.Linear(encoding_dim(c), c.num_classes)

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.encode_embedded(self.embedding(tokens), lengths)

    def encode_embedded(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out, final = run_padded(self.rnn, self.dropout(embedded), lengths)
        pooling = self.config.pooling
        if pooling == "last":
            return final
        if pooling == "max":
            return max_over_time(out, lengths)
        if pooling == "mean":
            return mean_over_time(out, lengths)
        return torch.cat([final, max_over_time(out, lengths), mean_over_time(out, lengths)], -1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.scores(self.embedding(tokens), lengths)

    def scores(self, embedded: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Class scores [B, C] of texts already embedded [B, T, E]."""
        return self.output(self.dropout(self.encode_embedded(embedded, lengths)))


def adversarial_shift(loss: torch.Tensor, embedded: torch.Tensor, lengths: torch.Tensor,
                      radius: float) -> torch.Tensor:
    """Adversarial training (Miyato, Dai & Goodfellow 2017): the shift of each embedded text
    [B, T, E], of norm `radius` times the text's own norm, that raises the loss most to first
    order: along the gradient. Relative to the text's norm, so the model cannot escape the
    shift by growing its embeddings (the paper normalises the embeddings instead)."""
    (grad,) = torch.autograd.grad(loss, embedded, retain_graph=True)
    mask = length_mask(lengths, embedded.size(1)).unsqueeze(2)
    grad = grad.detach() * mask
    text_norm = torch.linalg.vector_norm(embedded.detach() * mask, dim=(1, 2), keepdim=True)
    grad_norm = torch.linalg.vector_norm(grad, dim=(1, 2), keepdim=True).clamp_min(1e-12)
    return radius * text_norm * grad / grad_norm


class Classifier(nn.Module):
    """S1. With `ensemble` > 1, several GRU classifiers see the same batches and the
    prediction is the mean of their class distributions (each member has its own loss)."""

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        self.members = nn.ModuleList(GRUClassifier(config) for _ in range(config.ensemble))

    @property
    def encoding_dim(self) -> int:
        return encoding_dim(self.config) * self.config.ensemble

    def encode(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """One vector per sentence [B, encoding_dim]: the sentence embedding."""
        return torch.cat([m.encode(tokens, lengths) for m in self.members], dim=-1)

    def forward(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Log of the (mean) class distribution [B, C]; softmax of it gives probabilities."""
        if len(self.members) == 1:
            return self.members[0](tokens, lengths)
        log_probs = torch.stack([torch.log_softmax(m(tokens, lengths).float(), -1)
                                 for m in self.members])
        return torch.logsumexp(log_probs, dim=0) - math.log(len(self.members))

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        """Summed cross-entropy of every member; with `adversarial`, in training, plus each
        member's cross-entropy on its adversarially shifted embedded texts (the paper's sum)."""
        tokens, lengths, labels = batch["tokens"], batch["lengths"], batch["labels"]
        radius = self.config.adversarial if self.training else 0.0
        total = torch.zeros((), device=tokens.device)
        for member in self.members:
            embedded = member.embedding(tokens)
            loss = F.cross_entropy(member.scores(embedded, lengths).float(), labels,
                                   reduction="sum")
            if radius > 0:
                shift = adversarial_shift(loss, embedded, lengths, radius)
                loss = loss + F.cross_entropy(member.scores(embedded + shift, lengths).float(),
                                              labels, reduction="sum")
            total = total + loss
        return total, labels.numel()
