"""Using trained models: load a checkpoint, classify, embed, score, generate, translate.

Prediction streams: input is read in chunks, each chunk is sorted by length into batches (little
padding), and results come back in input order before the next chunk is read.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from seqtool.checkpoint import Checkpoint
from seqtool.errors import SeqtoolError
from seqtool.lexicon import Lexicon
from seqtool.models import ClassifierCombination, build_model
from seqtool.search import Hypothesis, beam_search, greedy, sample
from seqtool.shipped import DEFAULT_MODELS, SHIPPED_MODELS, checkpoints_folder
from seqtool.tokenizer import Tokenizer
from seqtool.training import autocast

DEFAULT_MAX_LENGTH = 512  # pieces per input line at prediction time (--max-length)


def resolve_path(path: str | Path | None, task: str) -> Path:
    """The checkpoint to use: a file, the name of a shipped model (`brown-genre`), or the
    task's default; a missing shipped file says how to point at it."""
    if path and (Path(path).exists() or str(path) not in SHIPPED_MODELS[task]):
        return Path(path)
    file = SHIPPED_MODELS[task][str(path)] if path else DEFAULT_MODELS[task]
    shipped = checkpoints_folder() / file
    if not shipped.is_file():
        raise SeqtoolError(
            f"no shipped {task} model here; set SEQTOOL_CHECKPOINTS to the folder holding "
            f"{file} (the repository's checkpoints/) or pass -m FILE", str(shipped))
    return shipped


def shipped_generator_for(label: str) -> str | None:
    """The name of the first shipped generator other than the default (which the caller has
    already loaded) that knows `label` (`generate --label news` needs no -m), or None."""
    for name, file in SHIPPED_MODELS["generate"].items():
        if file == DEFAULT_MODELS["generate"]:
            continue
        path = checkpoints_folder() / file
        if path.is_file() and label in Checkpoint.load(path).labels:
            return name
    return None


@dataclass
class Loaded:
    checkpoint: Checkpoint
    model: nn.Module
    tokenizer: Tokenizer  # source side (the only one for S1 and S2)
    target_tokenizer: Tokenizer


def load(path: str | Path | None, task: str, device: str = "cpu") -> Loaded:
    """A checkpoint's model, ready for inference on `device` ("auto", "cpu" or "cuda").

    A file that passes the format check but does not fit its own configuration (edited or
    damaged) ends in one SeqtoolError naming it."""
    from seqtool.training import resolve_device

    path = resolve_path(path, task)
    ckpt = Checkpoint.load(path)
    if ckpt.task != task:
        raise SeqtoolError(f"this is a {ckpt.task} model, not a {task} model", str(path))
    try:
        model = build_model(task, ckpt.model_config)
        model.load_state_dict(ckpt.weights)
    except SeqtoolError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure here means the file was edited
        detail = " ".join(str(e).split()) or type(e).__name__
        raise SeqtoolError(f"damaged checkpoint: weights do not fit its model configuration "
                           f"({detail[:200]})", str(path)) from None
    parts = model.parts if isinstance(model, ClassifierCombination) else [model]
    try:
        tokenizers = [Tokenizer(ckpt.tokenizers[part_tokenizer_key(i)])
                      for i in range(len(parts))]
        tgt = Tokenizer(ckpt.tokenizers["tgt"]) if "tgt" in ckpt.tokenizers else tokenizers[0]
    except KeyError as e:
        raise SeqtoolError(f"damaged checkpoint: no tokenizer {e}", str(path)) from None
    except SeqtoolError as e:
        raise SeqtoolError(f"damaged checkpoint: tokenizer is {e.message}", str(path)) from None
    for part, tokenizer in zip(parts, tokenizers, strict=True):
        _check_sizes(part.config, ckpt.labels, tokenizer, tgt if part is model else tokenizer,
                     str(path))
    if isinstance(model, ClassifierCombination):
        model.tokenizers = tokenizers
    stored = ckpt.meta.get("lexicon")
    if stored is not None and not (isinstance(stored, list)
                                   and all(isinstance(w, str) for w in stored)):
        raise SeqtoolError("damaged checkpoint: 'lexicon' is not a list of words", str(path))
    model.to(resolve_device(device)).eval()
    return Loaded(ckpt, model, tokenizers[0], tgt)


def part_tokenizer_key(index: int) -> str:
    """Where a checkpoint keeps the tokenizer of its `index`-th part (one part but for
    classifiers combined by `seqtool ensemble`)."""
    return "src" if index == 0 else f"src{index}"


def _check_sizes(config: Any, labels: list[str], src: Tokenizer, tgt: Tokenizer,
                 name: str) -> None:
    """Labels and vocabularies must match the model's own sizes (else indexing fails later)."""
    sizes = [("labels", len(labels), getattr(config, "num_classes", len(labels))),
             ("tokenizer pieces", src.vocab_size,
              getattr(config, "vocab_size", getattr(config, "src_vocab_size", 0))),
             ("target tokenizer pieces", tgt.vocab_size,
              getattr(config, "tgt_vocab_size", tgt.vocab_size))]
    for what, have, model_size in sizes:
        if have > model_size or (what == "labels" and have != model_size):
            raise SeqtoolError(f"damaged checkpoint: {have} {what} for a model of {model_size}",
                               name)


def _length_sorted(lengths: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


# ----------------------------------------------------------------------------- S1


@torch.no_grad()
def classify_outputs(
    model: nn.Module, tokenizer: Tokenizer, texts: Sequence[str], batch_size: int = 128,
    encode_only: bool = False, max_length: int = DEFAULT_MAX_LENGTH,
) -> torch.Tensor:
    """Class probabilities [N, C] (or sentence vectors with `encode_only`) in input order.

    Inputs longer than `max_length` pieces are cut (0 = no limit; a warning on stderr)."""
    from seqtool.tasks import classify_batch

    if isinstance(model, ClassifierCombination):  # each part reads its own pieces
        outputs = [classify_outputs(part, part_tokenizer, texts, batch_size, encode_only,
                                    max_length)
                   for part, part_tokenizer in zip(model.parts, model.tokenizers, strict=True)]
        return torch.cat(outputs, -1) if encode_only else model.combine(outputs)
    model.eval()
    ids = tokenizer.encode_batch(list(texts), max_length=max_length)
    dim = model.encoding_dim if encode_only else model.config.num_classes
    out = torch.zeros(len(ids), dim)
    device = _device(model)
    for idx in _length_sorted([len(s) for s in ids], batch_size):
        batch = classify_batch([ids[i] for i in idx])
        tokens, lengths = batch["tokens"].to(device), batch["lengths"].to(device)
        if encode_only:
            out[idx] = model.encode(tokens, lengths).float().cpu()
        else:
            out[idx] = torch.softmax(model(tokens, lengths).float(), -1).cpu()
    return out


def classify_probabilities(
    model, tokenizer, texts, batch_size: int = 128, max_length: int = DEFAULT_MAX_LENGTH
) -> torch.Tensor:
    return classify_outputs(model, tokenizer, texts, batch_size, max_length=max_length)


def classify_stream(
    loaded: Loaded, chunks: Iterable[Sequence[str]], max_length: int = DEFAULT_MAX_LENGTH
) -> Iterator[list[tuple[str, torch.Tensor]]]:
    """Per chunk of texts (as `data.read_text_chunks` hands them out), (text, probabilities)
    pairs in order; each chunk is answered before the next is read."""
    for part in chunks:
        probs = classify_probabilities(loaded.model, loaded.tokenizer, part,
                                       max_length=max_length)
        yield list(zip(part, probs, strict=True))


# ----------------------------------------------------------------------------- S2


@torch.no_grad()
def sentence_nll(
    model: nn.Module, labels: Sequence[int], ids: Sequence[Sequence[int]], batch_size: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sentence summed NLL [N] and token counts [N] (including <end>)."""
    from seqtool.tasks import generate_batch

    model.eval()
    nll = torch.zeros(len(ids), dtype=torch.float64)
    device = _device(model)
    for idx in _length_sorted([len(s) for s in ids], batch_size):
        batch = generate_batch([labels[i] for i in idx], [ids[i] for i in idx])
        batch = {k: v.to(device) for k, v in batch.items()}
        nll[idx] = model.sentence_nll(batch["labels"], batch).double().cpu()
    return nll, torch.tensor([len(s) + 1 for s in ids], dtype=torch.float64)


def language_model_nll(
    model: nn.Module, ids: Sequence[Sequence[int]], batch_size: int = 128
) -> tuple[torch.Tensor, int]:
    """Summed NLL per direction [directions] of sentences under a pretrained language model
    (forward first), and the number of pieces each direction predicts (<end> or <start>
    included)."""
    from seqtool.tasks import pretrain_batch

    model.eval()
    device = _device(model)
    total = torch.zeros(2 if model.config.bidirectional else 1, dtype=torch.float64)
    with torch.no_grad():
        for idx in _length_sorted([len(s) for s in ids], batch_size):
            batch = {k: v.to(device) for k, v in pretrain_batch([ids[i] for i in idx]).items()}
            total += model.piece_nll(batch["tokens"], batch["lengths"]).double().sum((1, 2)).cpu()
    return total, sum(len(s) + 1 for s in ids)


def corpus_perplexity(model, labels, ids) -> float:
    nll, counts = sentence_nll(model, labels, ids)
    return float(torch.exp(nll.sum() / counts.sum()))


def generate(
    loaded: Loaded, label: str, n: int, prompt: str = "", max_tokens: int = 60,
    temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
    batch_size: int = 256, guidance: float = 0.0, lexicon: Lexicon | None = None,
) -> list[dict[str, Any]]:
    """N samples for a class, generated in parallel batches; deterministic for a seed. With a
    `lexicon` (`lexicon_for`) every word of a sample is one of its words."""
    labels = loaded.checkpoint.labels
    if label not in labels:
        raise SeqtoolError(f"unknown label {label!r} (known: {', '.join(labels)})")
    device = _device(loaded.model)
    generator = torch.Generator(device=device).manual_seed(seed)
    prompt_ids = loaded.tokenizer.encode(prompt) if prompt else []
    results = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            count = min(batch_size, n - start)
            ys = torch.full((count,), labels.index(label), dtype=torch.long, device=device)
            for h in sample(loaded.model, ys, prompt_ids, max_tokens, temperature, top_k,
                            top_p, generator, guidance, lexicon):
                text = loaded.tokenizer.decode(prompt_ids + h.tokens)
                results.append({"label": label, "text": text, "tokens": len(h.tokens),
                                "logprob": round(h.score, 4)})
    return results


def lexicon_for(loaded: Loaded, option: str = "model") -> Lexicon | None:
    """The words samples may use (`generate --lexicon`): "model" = those stored in the
    checkpoint, the words of its training text (older checkpoints store none: no limit);
    "none" = no limit; else a file of words (a word list or any text)."""
    from seqtool.lexicon import resolve_lexicon

    words = resolve_lexicon(option, loaded.checkpoint.meta.get("lexicon"))  # checked by load
    return Lexicon(words, loaded.tokenizer) if words is not None else None


# ----------------------------------------------------------------------------- S3


@dataclass
class TranslationResult:
    text: str
    score: float
    hypotheses: list[Hypothesis]
    source_pieces: list[str]
    target_pieces: list[str]


class Translation:
    """Translate lists of sentences with a `Translator` in length-sorted batches."""

    def __init__(
        self, model: nn.Module, src_tok: Tokenizer, tgt_tok: Tokenizer, precision: str = "fp32"
    ):
        self.model, self.src_tok, self.tgt_tok = model, src_tok, tgt_tok
        self.precision = precision

    @torch.no_grad()
    def translate(
        self, texts: Sequence[str], beam: int = 5, alpha: float = 1.0, n_best: int = 1,
        max_length_ratio: float = 2.0, batch_size: int = 64, with_attention: bool = False,
        max_source_tokens: int = DEFAULT_MAX_LENGTH,
    ) -> list[TranslationResult]:
        """Best translation (and `n_best` hypotheses) per text, in input order. Sources
        longer than `max_source_tokens` pieces are cut (0 = no limit; a warning on stderr)."""
        from seqtool.tasks import translate_batch

        self.model.eval()
        device = _device(self.model)
        ids = self.src_tok.encode_batch(list(texts), max_length=max_source_tokens)
        results: list[TranslationResult | None] = [None] * len(ids)
        for i, s in enumerate(ids):
            if not s:  # an empty line translates to an empty line
                results[i] = TranslationResult("", 0.0, [Hypothesis([], 0.0, [])], [], [])
        todo = [i for i, s in enumerate(ids) if s]
        for idx in _length_sorted([len(ids[i]) for i in todo], batch_size):
            rows = [todo[j] for j in idx]
            batch = translate_batch([ids[i] for i in rows])
            src = batch["src"].to(device)
            lengths = batch["src_lengths"].to(device)
            limits = (lengths.double() * max_length_ratio + 5).long()
            with autocast(device, self.precision):
                if beam <= 1:
                    hyps = [[h] for h in greedy(self.model, src, lengths, limits,
                                                with_attention)]
                else:
                    hyps = beam_search(self.model, src, lengths, limits, beam, alpha, n_best,
                                       with_attention)
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
