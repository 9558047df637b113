"""The three recurrent models, in the course's notation.

- S1 `Classifier`: y_h(t) = GRU(y_h(t-1), x(t)); y = softmax(W_o pool(y_h)).
- S2 `Generator`: y_h(0) = tanh(W_i x) from the class x; an LSTM predicts c(t) from c(t-1).
- S3 `Translator`: a bidirectional RNN encoder and an RNN decoder that attends over all
  encoder states at every step, with input feeding (the previous attentional vector is part of
  the next input).
- `LanguageModel`: pretraining on unlabelled text; its embedding and RNN initialise S1 and S2.

Every model has `loss(batch) -> (summed loss, number of units)`, which is all the training
loop needs. Padding never enters a recurrence as data: encoders read each sentence within its
own length (`run_padded`) and the causal decoders only see padding after the last real token,
where the loss is masked. Every tensor a model makes follows the device of its input.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import _VF, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from seqtool.config import (
    ClassifierConfig,
    CombinedClassifierConfig,
    GeneratorConfig,
    LanguageModelConfig,
    TranslatorConfig,
)
from seqtool.nn.attention import Attention
from seqtool.nn.recurrence import input_feeding_gru
from seqtool.text.tokenizer import PAD

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

    run = _VF.lstm if isinstance(rnn, nn.LSTM) else _VF.gru
    for layer in range(rnn.num_layers):
        if layer > 0:
            x = F.dropout(x, rnn.dropout, rnn.training)
        outputs = []
        for direction in ["", "_reverse"][: 2 if rnn.bidirectional else 1]:
            weights = [getattr(rnn, f"{name}_l{layer}{direction}")
                       for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
            h0 = x.new_zeros(1, B, rnn.hidden_size)
            state = (h0, h0) if run is _VF.lstm else h0
            out = run(reorder(x) if direction else x, state, weights, True, 1, 0.0,
                      rnn.training, False, True)[0]
            outputs.append(reorder(out) if direction else out)
        x = torch.cat(outputs, -1) if len(outputs) > 1 else outputs[0]
    x = x * real[:, :, None]
    H = rnn.hidden_size
    final = x[torch.arange(B, device=x.device), lengths - 1, :H]
    if rnn.bidirectional:
        final = torch.cat([final, x[:, 0, H:]], -1)
    return x, final


def fp32_recurrence(x: torch.Tensor):
    """Keep recurrent states in fp32 under bf16 autocast: rounding a state to bf16 at every
    step compounds over a sentence and slowed learning in our runs. The vocabulary-sized
    output projection, where most of the arithmetic is, stays in bf16."""
    return torch.autocast(x.device.type, enabled=False)


def length_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, max_len] True at real positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


# ----------------------------------------------------------------------------- S1


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


class ClassifierCombination(nn.Module):
    """S1 classifiers trained apart, each reading the text through its own tokenizer (one
    started from word vectors, one from a language model, say). The prediction is the mean
    class distribution over all their GRUs: models started differently make different
    mistakes, which is what averaging needs. `seqtool ensemble` builds one; prediction
    (`predict.classify_outputs`) runs each part on its own pieces and calls `combine`."""

    def __init__(self, config: CombinedClassifierConfig):
        super().__init__()
        self.config = config
        self.parts = nn.ModuleList(Classifier(ClassifierConfig.from_dict(p))
                                   for p in config.parts)
        if len({p.config.num_classes for p in self.parts}) != 1:
            raise ValueError("combined classifiers must have the same number of classes")
        self.tokenizers: list[Any] = []  # one per part, set when loaded (predict.load)

    @property
    def encoding_dim(self) -> int:
        return sum(p.encoding_dim for p in self.parts)

    def combine(self, part_probabilities: list[torch.Tensor]) -> torch.Tensor:
        """[N, C] class distributions of the parts -> their mean, each weighted by its GRUs."""
        weights = [len(p.members) for p in self.parts]
        return sum(w * q for w, q in zip(weights, part_probabilities, strict=True)) / sum(weights)


# ----------------------------------------------------------------------------- S2


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


# ----------------------------------------------------------------------------- S3


State = Any  # list per layer of h [B, H] (GRU) or (h, c) (LSTM)


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

    def run_all(self, emb: torch.Tensor, state: State) -> torch.Tensor:
        """The decoder RNN over all target steps at once [B, T, H]: without input feeding
        the recurrence needs no attention, so one fused RNN call replaces the step loop."""
        c = self.config
        weights = [w for cell in self.cells
                   for w in (cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)]
        dropout = c.dropout if self.training else 0.0
        if c.rnn == "lstm":
            h0 = torch.stack([h for h, _ in state])
            c0 = torch.stack([m for _, m in state])
            return _VF.lstm(emb, (h0, c0), weights, True, len(self.cells), dropout,
                            self.training, False, True)[0]
        return _VF.gru(emb, torch.stack(state), weights, True, len(self.cells), dropout,
                       self.training, False, True)[0]

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

        Returns the attentional vector [B, H], the new state and the attention weights [B, S].
        """
        x = torch.cat([emb, prev_attentional], dim=-1) if self.config.input_feeding else emb
        new_state = []
        for i, cell in enumerate(self.cells):
            s = cell(x, state[i])
            new_state.append(s)
            x = s[0] if isinstance(s, tuple) else s
            if i + 1 < len(self.cells):
                x = self.dropout(x)
        context, weights = self.attention(x, keys, values, mask)
        attentional = torch.tanh(self.combine(torch.cat([x, context], dim=-1)))
        return attentional, new_state, weights


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

    def decode_step(self, memory: dict[str, Any], prev_tokens: torch.Tensor):
        """Advance every sentence by one token; returns log-probs [B, V], new memory, weights."""
        emb = self.decoder.embedding(prev_tokens)
        with fp32_recurrence(emb):
            attentional, state, weights = self.decoder.step(
                emb, memory["state"], memory["attentional"], memory["keys"], memory["values"],
                memory["mask"],
            )
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
        if not self.config.input_feeding:
            # Everything in parallel over time: RNN, then attention, then the combination.
            hidden = self.decoder.run_all(emb, memory["state"])
            context, _ = self.decoder.attention(
                hidden, memory["keys"], memory["values"], memory["mask"])
            attentional = torch.tanh(self.decoder.combine(torch.cat([hidden, context], -1)))
            return self.decoder.dropout(attentional)
        if self.config.rnn == "gru" and self.config.decoder_layers == 1:
            return self.decoder.dropout(self._decode_fused(memory, emb))
        return self.decoder.dropout(self._decode_steps(memory, emb))

    def _decode_fused(self, memory: dict[str, Any], emb: torch.Tensor) -> torch.Tensor:
        attention = self.decoder.attention
        return input_feeding_gru(
            attention.kind, emb, memory["state"][0], memory["attentional"], memory["keys"],
            memory["values"], memory["mask"], self.decoder.cells[0], self.decoder.combine,
            getattr(attention, "query_proj", None), getattr(attention, "energy", None))

    def _decode_steps(self, memory: dict[str, Any], emb: torch.Tensor) -> torch.Tensor:
        state, attentional = memory["state"], memory["attentional"]
        outputs = []
        # unbind, not emb[:, t]: indexing would cost a full-size zero gradient at every step.
        for emb_t in emb.unbind(1):
            attentional, state, _ = self.decoder.step(
                emb_t, state, attentional, memory["keys"], memory["values"], memory["mask"]
            )
            outputs.append(attentional)
        return torch.stack(outputs, dim=1)

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


# ----------------------------------------------------------------------------- pretraining


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


MODELS = {
    "pretrain": (LanguageModel, LanguageModelConfig),
    "classify": (Classifier, ClassifierConfig),
    "generate": (Generator, GeneratorConfig),
    "translate": (Translator, TranslatorConfig),
}


def build_model(task: str, config: dict[str, Any]) -> nn.Module:
    if task == "classify" and "parts" in config:
        return ClassifierCombination(CombinedClassifierConfig.from_dict(config))
    model_cls, config_cls = MODELS[task]
    return model_cls(config_cls.from_dict(config))
