"""Using trained models: load a checkpoint, classify, embed, score, generate, translate.

Prediction streams: input is read in chunks, each chunk is sorted by length into batches (little
padding), and results come back in input order before the next chunk is read.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from seqtool.checkpoint import Checkpoint
from seqtool.errors import SeqtoolError
from seqtool.shipped import DEFAULT_MODELS, SHIPPED_MODELS, checkpoints_folder, resolve_model
from seqtool.text.tokenizer import Tokenizer

if TYPE_CHECKING:  # imported where used: `seqtool classify` needs neither
    from seqtool.decoding.lexicon import Lexicon
    from seqtool.decoding.search import Hypothesis


def resolve_path(path: str | Path | None, task: str | tuple[str, ...]) -> Path:
    """The checkpoint to use: a file, the name of a shipped model (`brown-genre`) or its file
    name, or the task's default; a missing shipped file says how to point at it, and a
    shipped model of another task names the task's models (`seqtool.shipped`)."""
    return resolve_model(path, task)


def other_shipped_generators() -> dict[str, list[str]]:
    """The labels of each shipped generator other than the default, by name (those whose
    file is there): `generate --label news` needs no -m."""
    found = {}
    for name, file in SHIPPED_MODELS["generate"].items():
        path = checkpoints_folder() / file
        if file != DEFAULT_MODELS["generate"] and path.is_file():
            found[name] = list(Checkpoint.load(path).labels)
    return found


BACKENDS = ("auto", "numpy", "torch")
# What `--backend auto` runs on the CPU, per task, chosen by measurement (benchmarks/instant.py,
# benchmarks/results/instant.md): numpy answers a one-line call in a fraction of
# `import torch`, and classifies and samples as fast as torch; torch's decoding steps are
# faster (18.5 s against 15.6 s on the 987 Bible test sentences, beam 5, in one process), so
# a translation job of AUTO_TORCH_FROM texts or more moves to torch, whose import (about
# 1.5 s) it then repays.
AUTO_BACKEND = {"classify": "numpy", "generate": "numpy", "translate": "numpy"}
AUTO_TORCH_FROM = {"translate": 512}  # texts in one call (a full chunk of `seqtool translate`)


def torch_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def gpu_visible() -> bool:
    """Whether an NVIDIA GPU may be here (its driver's files), without importing torch."""
    return Path("/proc/driver/nvidia/gpus").is_dir() or Path("/dev/nvidia0").exists()


def choose_backend(backend: str, task: str, device: str = "auto") -> str:
    """"numpy" or "torch" for `--backend` and `--device`: auto takes torch where it can use
    a GPU, numpy where torch is missing, else the measured choice of `AUTO_BACKEND`."""
    if backend not in BACKENDS:
        raise SeqtoolError(f"unknown backend {backend!r} (known: {', '.join(BACKENDS)})")
    if backend == "numpy" and device == "cuda":
        raise SeqtoolError("the numpy backend runs on the CPU; use --backend torch with "
                           "--device cuda")
    if backend == "torch" or (backend == "auto" and device == "cuda"):
        if not torch_installed():
            raise SeqtoolError("the torch backend needs PyTorch: pip install 'seqtool[torch]'")
        return "torch"
    if backend == "numpy" or not torch_installed():
        return "numpy"
    if device == "auto" and gpu_visible():
        return "torch"
    return AUTO_BACKEND.get(task, "torch")


def auto_switch(task: str, running: str, count: int) -> bool:
    """Whether a model loaded with `--backend auto` on numpy should move to torch for a job
    of `count` inputs (`AUTO_TORCH_FROM`)."""
    return running == "numpy" and count >= AUTO_TORCH_FROM.get(task, float("inf")) \
        and torch_installed()


@dataclass
class Loaded:
    checkpoint: Checkpoint
    model: Any  # a torch module, or a numpy model of `seqtool.engine`
    tokenizer: Tokenizer  # source side (the only one for S1 and S2)
    target_tokenizer: Tokenizer
    path: Path | None = None  # the file it was loaded from
    backend: str = "torch"


def load(path: str | Path | None, task: str, device: str = "cpu",
         backend: str = "auto") -> Loaded:
    """A checkpoint's model, ready for inference on `device` ("auto", "cpu" or "cuda") with
    `backend` ("auto", "numpy" or "torch"; `choose_backend`).

    A file that passes the format check but does not fit its own configuration (edited or
    damaged) ends in one SeqtoolError naming it."""
    chosen = choose_backend(backend, task, device)
    path = resolve_path(path, task)
    ckpt = Checkpoint.load(path)
    if ckpt.task != task:
        raise SeqtoolError(f"this is a {ckpt.task} model, not a {task} model", str(path))
    try:
        if chosen == "numpy":
            from seqtool.engine import build as build_numpy

            model = build_numpy(task, ckpt.model_config, ckpt.numpy_weights())
        else:
            model = _build_loaded(task, ckpt.model_config, ckpt.torch_weights())
    except SeqtoolError:
        raise
    except Exception as e:  # noqa: BLE001 - any failure here means the file was edited
        detail = " ".join(str(e).split()) or type(e).__name__
        raise SeqtoolError(f"damaged checkpoint: weights do not fit its model configuration "
                           f"({detail[:200]})", str(path)) from None
    parts = getattr(model, "parts", None) or [model]
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
    if getattr(model, "parts", None):
        model.tokenizers = tokenizers
    stored = ckpt.meta.get("lexicon")
    if stored is not None and not (isinstance(stored, list)
                                   and all(isinstance(w, str) for w in stored)):
        raise SeqtoolError("damaged checkpoint: 'lexicon' is not a list of words", str(path))
    if chosen == "torch":
        from seqtool.device import resolve_device

        model.to(resolve_device(device)).eval()
    return Loaded(ckpt, model, tokenizers[0], tgt, path, chosen)


def _build_loaded(task: str, config: dict[str, Any], weights: dict[str, Any]) -> Any:
    """The torch model with `weights` as its parameters: the loaded tensors themselves, each
    in the dtype the model declares, take the place of the fresh ones (no copy into them).

    (Building on the meta device would also skip the random initialisation, but its first
    use imports torch's reference implementations: 829 modules, seconds.)"""
    from seqtool.checkpoint import one_thread
    from seqtool.nn.registry import build_model

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
    from seqtool.decoding.sampling import random_generator, sample_stream

    labels = loaded.checkpoint.labels
    if label not in labels:
        raise SeqtoolError(f"unknown label {label!r} (known: {', '.join(labels)})")
    rng = random_generator(seed)
    prompt_ids = loaded.tokenizer.encode(prompt) if prompt else []
    for start in range(0, n, batch_size):
        count = min(batch_size, n - start)
        ys = np.full(count, labels.index(label), np.int64)
        ready: dict[int, Hypothesis] = {}
        following = 0
        stream = sample_stream(loaded.model, ys, prompt_ids, max_tokens, temperature, top_k,
                               top_p, rng, guidance, lexicon, no_repeat_ngram)
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


