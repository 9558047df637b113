"""Using trained models: load a checkpoint, classify, embed, score, generate, translate.

Prediction streams: input is read in chunks, each chunk is sorted by length into batches (little
padding), and results come back in input order before the next chunk is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from seqtool.checkpoint import Checkpoint, one_thread
from seqtool.device import model_device, resolve_device
from seqtool.errors import SeqtoolError
from seqtool.nn.ensemble import ClassifierCombination
from seqtool.nn.registry import build_model
from seqtool.shipped import DEFAULT_MODELS, SHIPPED_MODELS, checkpoints_folder
from seqtool.text.tokenizer import Tokenizer

if TYPE_CHECKING:  # imported where used: `seqtool classify` needs neither
    from seqtool.decoding.lexicon import Lexicon
    from seqtool.decoding.search import Hypothesis


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


def other_shipped_generators() -> dict[str, list[str]]:
    """The labels of each shipped generator other than the default, by name (those whose
    file is there): `generate --label news` needs no -m."""
    found = {}
    for name, file in SHIPPED_MODELS["generate"].items():
        path = checkpoints_folder() / file
        if file != DEFAULT_MODELS["generate"] and path.is_file():
            found[name] = list(Checkpoint.load(path).labels)
    return found


@dataclass
class Loaded:
    checkpoint: Checkpoint
    model: nn.Module
    tokenizer: Tokenizer  # source side (the only one for S1 and S2)
    target_tokenizer: Tokenizer
    path: Path | None = None  # the file it was loaded from


def load(path: str | Path | None, task: str, device: str = "cpu") -> Loaded:
    """A checkpoint's model, ready for inference on `device` ("auto", "cpu" or "cuda").

    A file that passes the format check but does not fit its own configuration (edited or
    damaged) ends in one SeqtoolError naming it."""

    path = resolve_path(path, task)
    ckpt = Checkpoint.load(path)
    if ckpt.task != task:
        raise SeqtoolError(f"this is a {ckpt.task} model, not a {task} model", str(path))
    try:
        model = _build_loaded(task, ckpt.model_config, ckpt.weights)
    except SeqtoolError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure here means the file was edited
        detail = " ".join(str(e).split()) or type(e).__name__
        raise SeqtoolError(f"damaged checkpoint: weights do not fit its model configuration "
                           f"({detail[:200]})", str(path)) from None
    parts = model.parts if isinstance(model, ClassifierCombination) else [model]
    made: dict[bytes, Tokenizer] = {}  # parts that share a vocabulary share its tokenizer

    def tokenizer(key: str) -> Tokenizer:
        data = ckpt.tokenizers[key]
        if data not in made:
            made[data] = Tokenizer(data)
        return made[data]

    try:
        tokenizers = [tokenizer(part_tokenizer_key(i)) for i in range(len(parts))]
        tgt = tokenizer("tgt") if "tgt" in ckpt.tokenizers else tokenizers[0]
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
    return Loaded(ckpt, model, tokenizers[0], tgt, path)


def _build_loaded(task: str, config: dict[str, Any], weights: dict[str, torch.Tensor]) -> nn.Module:
    """The model with `weights` as its parameters: the loaded tensors themselves, each in the
    dtype the model declares, take the place of the fresh ones (no copy into them).

    (Building on the meta device would also skip the random initialisation, but its first
    use imports torch's reference implementations: 829 modules, seconds.)"""
    with one_thread():  # its random initialisation, overwritten at once: many small passes
        model = build_model(task, config)
    declared = model.state_dict(keep_vars=True)
    fitted = {}
    for key, value in weights.items():
        want = declared.get(key)
        if want is not None and value.is_floating_point() and value.dtype != want.dtype:
            value = value.to(want.dtype)
        fitted[key] = value
    model.load_state_dict(fitted, assign=True)
    return model


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


# ----------------------------------------------------------------------------- S1


# ----------------------------------------------------------------------------- S2


def generate(loaded: Loaded, label: str, n: int, *args: Any, **kwargs: Any
             ) -> list[dict[str, Any]]:
    """`generate_stream`'s samples as a list."""
    return list(generate_stream(loaded, label, n, *args, **kwargs))


def generate_stream(
    loaded: Loaded, label: str, n: int, prompt: str = "", max_tokens: int = 60,
    temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, seed: int = 0,
    batch_size: int = 256, guidance: float = 0.0, lexicon: Lexicon | None = None,
    no_repeat_ngram: int = 0,
) -> Iterator[dict[str, Any]]:
    """N samples for a class, generated in parallel batches; deterministic for a seed. With a
    `lexicon` (`lexicon_for`) every word of a sample is one of its words.

    Samples come in order, each as soon as it and those before it have ended, so a caller
    shows them while the rest are still being drawn."""
    from seqtool.decoding.sampling import sample_stream

    labels = loaded.checkpoint.labels
    if label not in labels:
        raise SeqtoolError(f"unknown label {label!r} (known: {', '.join(labels)})")
    device = model_device(loaded.model)
    generator = torch.Generator(device=device).manual_seed(seed)
    prompt_ids = loaded.tokenizer.encode(prompt) if prompt else []
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        ys = torch.full((count,), labels.index(label), dtype=torch.long, device=device)
        ready: dict[int, Hypothesis] = {}
        following = 0
        with torch.no_grad():
            stream = sample_stream(loaded.model, ys, prompt_ids, max_tokens, temperature,
                                   top_k, top_p, generator, guidance, lexicon,
                                   no_repeat_ngram)
            for row, hypothesis in stream:
                ready[row] = hypothesis
                while following in ready:
                    h = ready.pop(following)
                    following += 1
                    yield {"label": label, "text": loaded.tokenizer.decode(prompt_ids + h.tokens),
                           "tokens": len(h.tokens), "logprob": round(h.score, 4)}


def lexicon_for(loaded: Loaded, option: str = "model") -> Lexicon | None:
    """The words samples may use (`generate --lexicon`): "model" = those stored in the
    checkpoint, the words of its training text (older checkpoints store none: no limit);
    "none" = no limit; else a file of words (a word list or any text)."""
    from seqtool.decoding.lexicon import Lexicon, resolve_lexicon

    words = resolve_lexicon(option, loaded.checkpoint.meta.get("lexicon"))  # checked by load
    return Lexicon(words, loaded.tokenizer) if words is not None else None


# ----------------------------------------------------------------------------- S3


