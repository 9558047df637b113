"""`LanguageModel`: pretraining on unlabelled text; its embedding and RNN initialise S1 and S2."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from seqtool.config import LanguageModelConfig
from seqtool.nn.common import RNN_TYPES, length_mask, run_padded
from seqtool.text.tokenizer import PAD


class LanguageModel(nn.Module):
    """Learns the language from unlabelled text, for `--init`: the forward direction predicts
    each piece from the pieces before it, the backward direction (when bidirectional) from the
    pieces after it, as in ELMo. Its `embedding` and `rnn` have the names and shapes of a
    classifier's or generator's, so finetuning starts from them.

    Each direction sees only its own side of the piece it predicts, so the two are one
    bidirectional RNN of one layer; a second layer would read both directions' states of the
    first, which have seen the piece."""

    def __init__(self, c: LanguageModelConfig):
        super().__init__()
        if c.rnn not in RNN_TYPES:
            raise ValueError(f"unknown rnn {c.rnn!r}: gru or lstm")
        if c.bidirectional and c.layers > 1:
            raise ValueError("a bidirectional language model has one layer (a second would "
                             "see the piece it predicts); use --unidirectional for more")
        self.config = c
        self.embedding = nn.Embedding(c.vocab_size, c.embed_dim, padding_idx=PAD)
        self.rnn = RNN_TYPES[c.rnn](c.embed_dim, c.hidden_dim, c.layers, batch_first=True,
                                    bidirectional=c.bidirectional,
                                    dropout=c.dropout if c.layers > 1 else 0.0)
        self.dropout = nn.Dropout(c.dropout)
        # Both directions predict through the input embeddings (tied), as the generator does.
        self.bottleneck = nn.Linear(c.hidden_dim, c.embed_dim)
        self.output = nn.Linear(c.embed_dim, c.vocab_size)
        self.output.weight = self.embedding.weight

    def predicting_states(
        self, tokens: torch.Tensor, lengths: torch.Tensor
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per direction, the states [B, T-1, H] and the pieces [B, T-1] they predict, for
        `<start> x(1) ... x(n) <end>` batches [B, T]: the forward state at t has read pieces
        0..t and predicts piece t+1; the backward state at t+1 has read pieces t+1..n+1 and
        predicts piece t."""
        H = self.config.hidden_dim
        out, _ = run_padded(self.rnn, self.dropout(self.embedding(tokens)), lengths)
        out = self.dropout(out)
        pairs = [(out[:, :-1, :H], tokens[:, 1:])]
        if self.config.bidirectional:
            pairs.append((out[:, 1:, H:], tokens[:, :-1]))
        return pairs

    def piece_nll(self, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """NLL [directions, B, T-1] of every piece (zero at padding): forward from the left
        context, backward from the right."""
        real = length_mask(lengths - 1, tokens.size(1) - 1)
        nll = []
        for states, targets in self.predicting_states(tokens, lengths):
            per_piece = torch.zeros(targets.shape, device=tokens.device)
            hidden, wanted = states[real], targets[real]
            per_piece[real] = torch.cat([
                F.cross_entropy(self.output(self.bottleneck(h)).float(), y, reduction="none")
                for h, y in zip(hidden.split(512), wanted.split(512))])
            nll.append(per_piece)
        return torch.stack(nll)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        nll = self.piece_nll(batch["tokens"], batch["lengths"])
        return nll.sum(), int((batch["lengths"] - 1).sum()) * nll.size(0)
