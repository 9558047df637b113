"""Translate lists of sentences with a translator: batching, search, detokenizing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seqtool.config import MAX_INPUT_LENGTH
from seqtool.decoding.search import Hypothesis, beam_search_batches, greedy
from seqtool.decoding.steps import translator_steps
from seqtool.text.batching import length_sorted, pad_ids
from seqtool.text.blank import is_blank
from seqtool.text.tokenizer import END, Tokenizer


@dataclass
class TranslationResult:
    text: str
    score: float
    hypotheses: list[Hypothesis]
    source_pieces: list[str]
    target_pieces: list[str]


def native_bf16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AVX512-BF16 or AMX), where bf16
    runs the output projection, most of a decoding step's arithmetic, about twice as fast."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split()
                    return "avx512_bf16" in flags or "amx_bf16" in flags
    except OSError:
        pass
    return False


def resolve_precision(precision: str, device_type: str) -> str:
    """"auto" = bf16 on a CPU that multiplies bfloat16 natively (`native_bf16`), else fp32."""
    if precision != "auto":
        return precision
    return "bf16" if device_type == "cpu" and native_bf16() else "fp32"


class Translation:
    """Translate lists of sentences with a translator of either backend in length-sorted
    batches.

    precision (torch): fp32, bf16 (the output projection in bfloat16 under autocast; the
    recurrence and attention stay fp32) or auto (`resolve_precision`)."""

    def __init__(
        self, model: Any, src_tok: Tokenizer, tgt_tok: Tokenizer, precision: str = "fp32"
    ):
        self.model, self.src_tok, self.tgt_tok = model, src_tok, tgt_tok
        self.precision = resolve_precision(precision, _device_type(model))
        self.steps = translator_steps(model, precision=self.precision)

    def translate(
        self, texts: Sequence[str], beam: int = 5, alpha: float = 1.0, n_best: int = 1,
        max_length_ratio: float = 2.0, batch_size: int = 64, with_attention: bool = False,
        max_source_tokens: int = MAX_INPUT_LENGTH,
    ) -> list[TranslationResult]:
        """Best translation (and `n_best` hypotheses) per text, in input order. Sources
        longer than `max_source_tokens` pieces are cut (0 = no limit; a warning on stderr)."""

        ids = self.src_tok.encode_batch(list(texts), max_length=max_source_tokens)
        ids = [[] if is_blank(text) else s for text, s in zip(texts, ids, strict=True)]
        results: list[TranslationResult | None] = [None] * len(ids)
        for i, s in enumerate(ids):
            if not s:  # an empty line translates to an empty line
                results[i] = TranslationResult("", 0.0, [Hypothesis([], 0.0, [])], [], [])
        todo = [i for i, s in enumerate(ids) if s]
        order, batches = [], []
        for idx in length_sorted([len(ids[i]) for i in todo], batch_size):
            order.append([todo[j] for j in idx])
            src, lengths = pad_ids([ids[i] for i in order[-1]], empty=END)
            limits = (lengths.astype(np.float64) * max_length_ratio + 5).astype(np.int64)
            batches.append((src, lengths, limits))
        if beam <= 1:
            found = [[[h] for h in greedy(self.steps, *batch, with_attention)]
                     for batch in batches]
        else:
            found = beam_search_batches(self.steps, batches, beam, alpha, n_best,
                                        with_attention)
        for rows, hyps in zip(order, found, strict=True):
            for i, hs in zip(rows, hyps, strict=True):
                best = hs[0]
                results[i] = TranslationResult(
                    self.tgt_tok.decode(best.tokens), best.score, hs,
                    self.src_tok.id_to_piece(ids[i]),
                    self.tgt_tok.id_to_piece(best.tokens),
                )
        return results  # type: ignore[return-value]

    def text(self, hypothesis: Hypothesis) -> str:
        return self.tgt_tok.decode(hypothesis.tokens)



def _device_type(model: Any) -> str:
    """"cpu" for a numpy model, else the device type of a torch model's parameters."""
    parameters = getattr(model, "parameters", None)
    if parameters is None:
        return "cpu"
    return next(parameters()).device.type
