"""The three tasks as the training loop sees them: examples -> batches, and a dev metric.

`setup_*` reads the data, trains (or reuses) a tokenizer, builds the model and returns a
`training.Task`. The tasks differ only here: in the model and in the batch they consume.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from seqtool.checkpoint import Checkpoint
from seqtool.config import ClassifierConfig, GeneratorConfig, LanguageModelConfig, TranslatorConfig
from seqtool.decoding.lexicon import words_of
from seqtool.errors import SeqtoolError, warn_once
from seqtool.nn.batches import classify_batch, generate_batch, pretrain_batch, translate_batch
from seqtool.nn.classifier import Classifier
from seqtool.nn.generator import Generator
from seqtool.nn.language_model import LanguageModel
from seqtool.nn.translator import Translator
from seqtool.text.data import LabeledText, TextPair, check_labels
from seqtool.text.tokenizer import Tokenizer, cap_characters
from seqtool.training.loop import Task


@dataclass
class TokenizerOptions:
    vocab_size: int = 8000
    model_type: str = "unigram"
    character_coverage: float = 1.0
    path: str | None = None  # reuse a trained sentencepiece model instead
    lowercase: bool = False
    trained: dict[str, bytes] | None = None  # a resumed run's tokenizers, by side

    def build(self, sentences: Sequence[str], seed: int, side: str = "src") -> Tokenizer:
        if self.trained:
            return Tokenizer(self.trained[side])
        if self.path:
            return Tokenizer.load(self.path)
        return Tokenizer.train(
            sentences, self.vocab_size, self.model_type, self.character_coverage, seed,
            self.lowercase,
        )


def run_meta(command: str, seed: int, train_config: dict[str, Any]) -> dict[str, Any]:
    return {"command": command, "seed": seed, "train_config": train_config}


def encode_capped(tokenizer: Tokenizer, texts: Sequence[str], max_length: int,
                  sample_alpha: float = 0.0, seed: int = 0) -> list[list[int]]:
    """Piece ids of training texts, each cut to at most `max_length` + 1 pieces first (and to
    the characters those can cover), so that one huge line can never stall training: the
    caller truncates or drops what is longer than `max_length`."""
    return tokenizer.encode_batch([cap_characters(t, max_length + 1) for t in texts],
                                  sample_alpha, seed)


def report_long(kept: int, total: int, max_length: int, action: str) -> None:
    if kept < total:
        warn_once("train-max-length", f"{action} {total - kept} training example(s) longer "
                  f"than {max_length} pieces (--max-train-length)")


# ----------------------------------------------------------------------------- S1


@dataclass
class LabeledData:
    """Labelled training data made ready for S1 and S2: labels, tokenizer and piece ids."""

    labels: list[str]
    tokenizer: Tokenizer
    ids: list[list[int]]
    y: list[int]
    texts: list[str]
    max_length: int

    @classmethod
    def prepare(
        cls, train: Sequence[LabeledText], dev: Sequence[LabeledText], dev_path: str,
        tokenizer_options: TokenizerOptions, seed: int, min_labels: int = 1,
        max_length: int = 256, drop_long: bool = False,
    ) -> LabeledData:
        """Labels, tokenizer and piece ids; examples over `max_length` pieces are cut to it
        (S1: the start of a text carries its class) or dropped (`drop_long`, S2: a cut
        sentence would teach the generator to end mid-sentence)."""
        labels = sorted({r.label for r in train})
        if len(labels) < min_labels:
            raise SeqtoolError(
                f"training data has {len(labels)} label(s); need at least {min_labels}")
        check_labels(dev, labels, dev_path)
        tokenizer = tokenizer_options.build([r.text for r in train], seed)
        index = {label: i for i, label in enumerate(labels)}
        ids = encode_capped(tokenizer, [r.text for r in train], max_length)
        y = [index[r.label] for r in train]
        keep = [i for i, s in enumerate(ids) if len(s) <= max_length or not drop_long]
        report_long(sum(len(s) <= max_length for s in ids), len(ids), max_length,
                    "dropped" if drop_long else "cut")
        return cls(labels, tokenizer, [ids[i][:max_length] for i in keep], [y[i] for i in keep],
                   [train[i].text for i in keep], max_length)

    def encode(self, records: Sequence[LabeledText]) -> tuple[list[list[int]], list[int]]:
        index = {label: i for i, label in enumerate(self.labels)}
        ids = encode_capped(self.tokenizer, [r.text for r in records], self.max_length)
        return ([s[: self.max_length] for s in ids],
                [index[r.label] for r in records])

    def checkpoint(self, task: str, meta: dict) -> Callable[[nn.Module], Checkpoint]:
        return lambda m: Checkpoint(task, m.config.to_dict(), m.state_dict(),
                                    {"src": self.tokenizer.model_bytes}, self.labels, dict(meta))


def setup_classify(
    train: Sequence[LabeledText], dev: Sequence[LabeledText], dev_path: str,
    model_options: dict[str, Any], tokenizer_options: TokenizerOptions, seed: int, meta: dict,
    subword_alpha: float = 0.0, max_length: int = 256,
) -> tuple[nn.Module, Task]:
    from seqtool.decoding.scoring import classify_probabilities

    data = LabeledData.prepare(train, dev, dev_path, tokenizer_options, seed, min_labels=2,
                               max_length=max_length)
    torch.manual_seed(seed)
    model = Classifier(ClassifierConfig(data.tokenizer.vocab_size, len(data.labels),
                                        **model_options))
    dev_texts = [r.text for r in dev]
    dev_gold = torch.tensor(data.encode(dev)[1])

    def evaluate(m: nn.Module) -> dict[str, float]:
        probs = torch.from_numpy(classify_probabilities(m, data.tokenizer, dev_texts))
        return {"accuracy": float((probs.argmax(-1) == dev_gold).float().mean())}

    def collate(idx: Sequence[int]) -> dict[str, torch.Tensor]:
        if subword_alpha > 0:
            # A fresh segmentation per batch; seeded by the batch so runs and resumes repeat.
            batch_seed = zlib.crc32(f"{seed}:{','.join(map(str, idx))}".encode())
            ids = [s[:max_length] for s in encode_capped(
                data.tokenizer, [data.texts[i] for i in idx], max_length, subword_alpha,
                batch_seed)]
        else:
            ids = [data.ids[i] for i in idx]
        return classify_batch(ids, [data.y[i] for i in idx])

    # A constant answer's accuracy: the most frequent class's share of dev.
    chance = float(torch.bincount(dev_gold).max()) / len(dev_gold) if len(dev_gold) else None
    task = Task(
        lengths=[len(s) + 1 for s in data.ids], collate=collate, evaluate=evaluate,
        metric="accuracy", higher_is_better=True, checkpoint=data.checkpoint("classify", meta),
        chance=chance, dev_size=len(dev_gold),
    )
    return model, task


# ----------------------------------------------------------------------------- S2


def setup_generate(
    train: Sequence[LabeledText], dev: Sequence[LabeledText], dev_path: str,
    model_options: dict[str, Any], tokenizer_options: TokenizerOptions, seed: int, meta: dict,
    max_length: int = 256,
) -> tuple[nn.Module, Task]:
    from seqtool.decoding.scoring import corpus_perplexity

    data = LabeledData.prepare(train, dev, dev_path, tokenizer_options, seed,
                               max_length=max_length, drop_long=True)
    # The words samples may use (`generate --lexicon model`): those of the training text and
    # of a language model it starts from (put in meta by `--init`).
    meta["lexicon"] = sorted(words_of(r.text for r in train) | set(meta.get("lexicon", [])))
    torch.manual_seed(seed)
    model = Generator(GeneratorConfig(data.tokenizer.vocab_size, len(data.labels),
                                      **model_options))
    dev_ids, dev_y = data.encode(dev)

    def evaluate(m: nn.Module) -> dict[str, float]:
        return {"perplexity": corpus_perplexity(m, dev_y, dev_ids)}

    task = Task(
        lengths=[len(s) + 1 for s in data.ids],
        collate=lambda idx: generate_batch([data.y[i] for i in idx], [data.ids[i] for i in idx]),
        evaluate=evaluate, metric="perplexity", higher_is_better=False,
        checkpoint=data.checkpoint("generate", meta),
    )
    return model, task


# ----------------------------------------------------------------------------- S3


def setup_translate(
    train: Sequence[TextPair], dev: Sequence[TextPair], model_options: dict[str, Any],
    tokenizer_options: TokenizerOptions, joint_vocab: bool, max_length: int, seed: int,
    meta: dict,
) -> tuple[nn.Module, Task]:
    from seqtool.decoding.translation import Translation

    src_texts, tgt_texts = [p.src for p in train], [p.tgt for p in train]
    if joint_vocab:
        src_tok = tgt_tok = tokenizer_options.build(src_texts + tgt_texts, seed)
    else:
        src_tok = tokenizer_options.build(src_texts, seed, "src")
        tgt_tok = tokenizer_options.build(tgt_texts, seed, "tgt")
    src_ids = encode_capped(src_tok, src_texts, max_length)
    tgt_ids = encode_capped(tgt_tok, tgt_texts, max_length)
    keep = [i for i in range(len(train)) if len(src_ids[i]) <= max_length
            and len(tgt_ids[i]) < max_length]
    report_long(len(keep), len(train), max_length, "dropped")
    src_ids, tgt_ids = [src_ids[i] for i in keep], [tgt_ids[i] for i in keep]
    meta = {**meta, "train_pairs": len(keep), "dropped_too_long": len(train) - len(keep)}
    torch.manual_seed(seed)
    model = Translator(TranslatorConfig(
        src_tok.vocab_size, tgt_tok.vocab_size, shared_embeddings=joint_vocab, **model_options
    ))
    tokenizers = {"src": src_tok.model_bytes}
    if not joint_vocab:
        tokenizers["tgt"] = tgt_tok.model_bytes

    def evaluate(m: nn.Module) -> dict[str, float]:
        from seqtool.metrics import corpus_scores

        translator = Translation(m, src_tok, tgt_tok)
        hyps = [h.text for h in translator.translate([p.src for p in dev], beam=1)]
        scores = corpus_scores(hyps, [p.tgt for p in dev])
        return {"bleu": scores["bleu"], "chrf": scores["chrf"]}

    def checkpoint(m: nn.Module) -> Checkpoint:
        return Checkpoint("translate", m.config.to_dict(), m.state_dict(), tokenizers, [],
                          dict(meta))

    task = Task(
        lengths=[max(len(s), len(t) + 1) for s, t in zip(src_ids, tgt_ids, strict=True)],
        collate=lambda idx: translate_batch([src_ids[i] for i in idx], [tgt_ids[i] for i in idx]),
        evaluate=evaluate, metric="bleu", higher_is_better=True, checkpoint=checkpoint,
    )
    return model, task


# ----------------------------------------------------------------------------- pretraining


def setup_pretrain(
    train: Sequence[str], dev: Sequence[str], model_options: dict[str, Any],
    tokenizer_options: TokenizerOptions, seed: int, meta: dict, max_length: int = 128,
) -> tuple[nn.Module, Task]:
    """A language model on unlabelled lines (blank ones skipped); lines over `max_length`
    pieces are dropped."""
    from seqtool.decoding.scoring import language_model_nll
    from seqtool.metrics import bits_per_character

    train = [t for t in train if t.strip()]
    dev = [t for t in dev if t.strip()]
    if not train or not dev:
        raise SeqtoolError("pretraining needs non-empty --train and --dev text")
    tokenizer = tokenizer_options.build(train, seed)
    ids = encode_capped(tokenizer, train, max_length)
    ids = [s for s in ids if len(s) <= max_length]
    report_long(len(ids), len(train), max_length, "dropped")
    dev_ids = tokenizer.encode_batch(dev)  # whole lines: bits per character cover them all
    # Handed on to generators (--init), with the words of the model it goes on from.
    meta = {**meta, "lexicon": sorted(words_of(train) | set(meta.get("lexicon", [])))}
    torch.manual_seed(seed)
    model = LanguageModel(LanguageModelConfig(tokenizer.vocab_size, **model_options))

    def evaluate(m: nn.Module) -> dict[str, float]:
        nll, pieces = language_model_nll(m, dev_ids)  # per direction
        return {"perplexity": float(torch.exp(nll.sum() / (pieces * len(nll)))),
                "bits_per_character": bits_per_character(float(nll[0]), dev)}

    def checkpoint(m: nn.Module) -> Checkpoint:
        return Checkpoint("pretrain", m.config.to_dict(), m.state_dict(),
                          {"src": tokenizer.model_bytes}, [], dict(meta))

    task = Task(lengths=[len(s) + 2 for s in ids],
                collate=lambda idx: pretrain_batch([ids[i] for i in idx]), evaluate=evaluate,
                metric="perplexity", higher_is_better=False, checkpoint=checkpoint)
    return model, task
