"""S3 `Translator`: a bidirectional RNN encoder and an RNN decoder that attends over all encoder
states at every step, with input feeding (the previous attentional vector is part of the next
input).

One decoder step is defined once, `Decoder.step` (`recur`, then `attend`): decoding calls it
token by token, and training on a whole target sentence either loops over it
(`Translator._decode_steps`, the plain path) or takes a fast path from `fast.py` that computes
the same thing (tests/test_nn_fast.py).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqtool.config import TranslatorConfig
from seqtool.nn import fast
from seqtool.nn.attention import Attention
from seqtool.nn.common import CELL_TYPES, RNN_TYPES, fp32_recurrence, length_mask, run_padded
from seqtool.text.tokenizer import PAD

State = Any  # list per layer of h [B, H] (GRU) or (h, c) (LSTM)
SOURCE_KEYS = ("keys", "values", "mask")  # the parts of `Translator.encode`'s memory per source


def select_state(state: State, index: torch.Tensor) -> State:
    """Reorder the batch dimension of a decoder state (for beam search)."""
    if isinstance(state, torch.Tensor):
        return state.index_select(0, index)
    return type(state)(select_state(s, index) for s in state)


class Encoder(nn.Module):
    def __init__(self, c: TranslatorConfig, embedding: nn.Embedding):
        super().__init__()
        if c.rnn not in RNN_TYPES:
            raise ValueError(f"unknown rnn {c.rnn!r}: gru or lstm")
        self.embedding = embedding
        self.dropout = nn.Dropout(c.dropout)
        self.rnn = RNN_TYPES[c.rnn](
            c.embed_dim, c.encoder_dim // 2, c.encoder_layers, batch_first=True,
            bidirectional=True,
            dropout=c.dropout if c.encoder_layers > 1 else 0.0,
        )

    def forward(self, src: torch.Tensor, lengths: torch.Tensor):
        """Encoder states [B, S, D] and the last layer's final states of both directions [B, D]
        (D = config.encoder_dim)."""
        return run_padded(self.rnn, self.dropout(self.embedding(src)), lengths)


class Decoder(nn.Module):
    def __init__(self, c: TranslatorConfig, embedding: nn.Embedding):
        super().__init__()
        self.config = c
        self.embedding = embedding
        self.dropout = nn.Dropout(c.dropout)
        enc_dim = c.encoder_dim
        first_input = c.embed_dim + (c.hidden_dim if c.input_feeding else 0)
        cell = CELL_TYPES[c.rnn]
        self.cells = nn.ModuleList(
            cell(first_input if i == 0 else c.hidden_dim, c.hidden_dim)
            for i in range(c.decoder_layers)
        )
        self.bridge = nn.Linear(enc_dim, c.hidden_dim * c.decoder_layers)
        self.attention = Attention(c.attention, c.hidden_dim, enc_dim, c.attention_dim)
        self.combine = nn.Linear(c.hidden_dim + enc_dim, c.hidden_dim)
        self.output = nn.Linear(c.hidden_dim, c.tgt_vocab_size)

    def initial_state(self, enc_final: torch.Tensor) -> State:
        c = self.config
        hidden = torch.tanh(self.bridge(enc_final)).chunk(c.decoder_layers, dim=-1)
        if c.rnn == "lstm":
            return [(h, torch.zeros_like(h)) for h in hidden]
        return list(hidden)

    def step(
        self,
        emb: torch.Tensor,
        state: State,
        prev_attentional: torch.Tensor,
        keys: torch.Tensor,
        values: torch.Tensor,
        mask: torch.Tensor,
    ) -> tuple[torch.Tensor, State, torch.Tensor]:
        """One decoder step: input (and previous attentional vector) -> RNN -> attend -> combine.
        The one definition of the step; every path over a whole sentence computes the same.

        Returns the attentional vector [B, H], the new state and the attention weights [B, S].
        """
        x = torch.cat([emb, prev_attentional], dim=-1) if self.config.input_feeding else emb
        hidden, new_state = self.recur(x, state)
        attentional, weights = self.attend(hidden, keys, values, mask)
        return attentional, new_state, weights

    def recur(self, x: torch.Tensor, state: State) -> tuple[torch.Tensor, State]:
        """The RNN part of a step: the last layer's output [B, H] and the new state."""
        new_state = []
        for i, cell in enumerate(self.cells):
            s = cell(x, state[i])
            new_state.append(s)
            x = s[0] if isinstance(s, tuple) else s
            if i + 1 < len(self.cells):
                x = self.dropout(x)
        return x, new_state

    def attend(
        self, hidden: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The attention part of a step: the RNN output [B, (T,) H] attends over the encoder
        states and is combined with the context: the attentional vector [B, (T,) H] and the
        attention weights [B, (T,) S]. Takes one step or all steps at once."""
        context, weights = self.attention(hidden, keys, values, mask)
        attentional = torch.tanh(self.combine(torch.cat([hidden, context], dim=-1)))
        return attentional, weights

    def run_all(self, emb: torch.Tensor, state: State) -> torch.Tensor:
        """Fast path: the decoder RNN over all target steps at once [B, T, H], one fused RNN
        call (`fast.fused_rnn`) in place of `recur` at every step. Only for decoders without
        input feeding, whose recurrence needs no attention."""
        c = self.config
        weights = [w for cell in self.cells
                   for w in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
        dropout = c.dropout if self.training else 0.0
        if c.rnn == "lstm":
            h0 = torch.stack([h for h, _ in state])
            c0 = torch.stack([m for _, m in state])
            return fast.fused_rnn(emb, (h0, c0), weights, len(self.cells), dropout,
                                  self.training)
        return fast.fused_rnn(emb, torch.stack(state), weights, len(self.cells), dropout,
                              self.training)


class Translator(nn.Module):
    def __init__(self, config: TranslatorConfig):
        super().__init__()
        c = self.config = config
        src_emb = nn.Embedding(c.src_vocab_size, c.embed_dim, padding_idx=PAD)
        if c.shared_embeddings:
            if c.src_vocab_size != c.tgt_vocab_size:
                raise ValueError("shared embeddings need one joint vocabulary")
            tgt_emb = src_emb
        else:
            tgt_emb = nn.Embedding(c.tgt_vocab_size, c.embed_dim, padding_idx=PAD)
        self.encoder = Encoder(c, src_emb)
        self.decoder = Decoder(c, tgt_emb)
        # Joey NMT's finding, confirmed here: small uniform init lets this RNN learn quickly.
        for p in self.parameters():
            nn.init.uniform_(p, -0.1, 0.1)
        with torch.no_grad():
            src_emb.weight[PAD].zero_()
            tgt_emb.weight[PAD].zero_()

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor) -> dict[str, Any]:
        """Everything the decoder needs about a batch of source sentences."""
        with fp32_recurrence(src):
            values, final = self.encoder(src, src_lengths)
            return {
                "values": values,
                "keys": self.decoder.attention.precompute(values),
                "mask": length_mask(src_lengths, src.size(1)),
                "state": self.decoder.initial_state(final),
                "attentional": values.new_zeros(src.size(0), self.config.hidden_dim),
            }

    def decode_step(self, memory: dict[str, Any], prev_tokens: torch.Tensor, group: int = 1):
        """Advance every sentence by one token; returns log-probs [B, V], new memory, weights.

        With `group` = k, the B rows are k hypotheses per sentence (sentence-major), and the
        source side of `memory` (SOURCE_KEYS: keys, values, mask) holds one row per sentence
        (B / k) instead of one per row: beam search then neither copies nor reorders it, and
        each sentence's k queries attend over its one copy (`Attention` with T = k). Each
        row gets what a one-row-per-hypothesis memory gives it (tests/test_search_fast.py)."""
        emb = self.decoder.embedding(prev_tokens)
        with fp32_recurrence(emb):
            if group == 1:
                attentional, state, weights = self.decoder.step(
                    emb, memory["state"], memory["attentional"], memory["keys"],
                    memory["values"], memory["mask"],
                )
            else:
                x = (torch.cat([emb, memory["attentional"]], dim=-1)
                     if self.config.input_feeding else emb)
                hidden, state = self.decoder.recur(x, memory["state"])
                rows = hidden.size(0)
                attentional, weights = self.decoder.attend(
                    hidden.view(rows // group, group, -1), memory["keys"], memory["values"],
                    memory["mask"])
                attentional, weights = attentional.reshape(rows, -1), weights.reshape(rows, -1)
        logits = self.decoder.output(attentional)
        memory = {**memory, "state": state, "attentional": attentional}
        return torch.log_softmax(logits.float(), dim=-1), memory, weights

    def forward(
        self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor
    ) -> torch.Tensor:
        """Teacher-forced attentional vectors [B, T, H]: the decoder reads the reference c(t-1)
        at step t; `decoder.output` turns them into logits."""
        memory = self.encode(src, src_lengths)
        emb = self.decoder.dropout(self.decoder.embedding(tgt_in))
        with fp32_recurrence(emb):
            return self._decode_all(memory, emb)

    def _decode_all(self, memory: dict[str, Any], emb: torch.Tensor) -> torch.Tensor:
        if fast.enabled():
            if not self.config.input_feeding:
                return self.decoder.dropout(self._decode_parallel(memory, emb))
            if self.config.rnn == "gru" and self.config.decoder_layers == 1:
                return self.decoder.dropout(self._decode_fused(memory, emb))
        return self.decoder.dropout(self._decode_steps(memory, emb))

    def _decode_steps(self, memory: dict[str, Any], emb: torch.Tensor) -> torch.Tensor:
        """The plain path: `Decoder.step` at every target step [B, T, H]."""
        state, attentional = memory["state"], memory["attentional"]
        outputs = []
        # unbind, not emb[:, t]: indexing would cost a full-size zero gradient at every step.
        for emb_t in emb.unbind(1):
            attentional, state, _ = self.decoder.step(
                emb_t, state, attentional, memory["keys"], memory["values"], memory["mask"]
            )
            outputs.append(attentional)
        return torch.stack(outputs, dim=1)

    def _decode_parallel(self, memory: dict[str, Any], emb: torch.Tensor) -> torch.Tensor:
        """Fast path without input feeding: everything in parallel over time, the RNN
        (`Decoder.run_all`), then attention and the combination (`Decoder.attend`)."""
        hidden = self.decoder.run_all(emb, memory["state"])
        attentional, _ = self.decoder.attend(
            hidden, memory["keys"], memory["values"], memory["mask"])
        return attentional

    def _decode_fused(self, memory: dict[str, Any], emb: torch.Tensor) -> torch.Tensor:
        """Fast path for a one-layer GRU decoder with input feeding (`fast.input_feeding_gru`)."""
        attention = self.decoder.attention
        return fast.input_feeding_gru(
            attention.kind, emb, memory["state"][0], memory["attentional"], memory["keys"],
            memory["values"], memory["mask"], self.decoder.cells[0], self.decoder.combine,
            getattr(attention, "query_proj", None), getattr(attention, "energy", None))

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        hidden = self(batch["src"], batch["src_lengths"], batch["tgt_in"])
        targets = batch["tgt_out"]
        real = targets != PAD
        # One output projection for all real target tokens at once: the vocabulary-sized
        # logits are the largest tensors of a step, so padding rows are dropped before them.
        # The vocabulary-sized logits are the largest tensors of a step: padding rows are
        # dropped before them, and they are made 512 rows at a time, so that each piece stays
        # under glibc's 32 MB mmap threshold and reuses freed memory (one piece for the whole
        # batch page-faulted through fresh memory at every step, which cost more than the
        # arithmetic on it).
        hidden, targets = hidden[real], targets[real]
        loss = sum(
            F.cross_entropy(self.decoder.output(h), y, reduction="sum",
                            label_smoothing=self.config.label_smoothing)
            for h, y in zip(hidden.split(512), targets.split(512))
        )
        return loss, int(real.sum())
