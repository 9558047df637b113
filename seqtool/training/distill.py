"""Knowledge distillation for S1: a student classifier learns a teacher's class distributions.

Hinton, Vinyals & Dean (2015): each example of the transfer set carries the teacher's class
distribution q, computed once before training by the caller (`seqtool.api_distill`: training
never imports inference), and, where the text is labelled, a gold class y. Softened by a
temperature T (q_T = softmax(log q / T): for an ensemble the log of its mean distribution
plays the logits' part), the loss per example is

    labelled:    alpha * T^2 * KL(q_T || p_T) + (1 - alpha) * CE(p, y)
    unlabelled:          T^2 * KL(q_T || p_T)

where p is the student's distribution (p_T at temperature T). T^2 keeps the soft term's
gradients at the scale of the hard one as T changes. An unlabelled text has nothing to mix
with, so it learns the teacher alone, at full weight. With `--adversarial` every batch is also
learned with each text's embeddings shifted the way that raises this loss most.

The student is an ordinary `Classifier`; only its loss differs (`DistillClassifier`), so its
checkpoint is a plain `classify` checkpoint. The dev metric is accuracy on the labelled dev
set; with the teacher's dev distributions, agreement with the teacher and KL(q || p) on dev
are reported beside it.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from seqtool.checkpoint import Checkpoint
from seqtool.config import ClassifierConfig
from seqtool.errors import SeqtoolError
from seqtool.nn.batches import classify_batch
from seqtool.nn.classifier import Classifier, adversarial_shift
from seqtool.text.data import LabeledText, check_labels
from seqtool.training.loop import Task
from seqtool.training.recipes import TokenizerOptions, encode_capped, report_long

NO_LABEL = -1  # gold class of an unlabelled text


def soften(probabilities: torch.Tensor, temperature: float) -> torch.Tensor:
    """A distribution [B, C] at temperature T: softmax(log q / T)."""
    return torch.softmax(probabilities.float().clamp_min(1e-12).log() / temperature, -1)


def distillation_loss(logits: torch.Tensor, teacher: torch.Tensor, gold: torch.Tensor,
                      temperature: float, alpha: float) -> torch.Tensor:
    """Summed loss of a batch: student scores [B, C], teacher distributions [B, C], gold
    classes [B] (NO_LABEL where there is none); see the module's docstring."""
    logits = logits.float()
    target = soften(teacher, temperature)
    log_student = torch.log_softmax(logits / temperature, -1)
    kl = (torch.xlogy(target, target) - target * log_student).sum(-1)
    labelled = gold != NO_LABEL
    ce = F.cross_entropy(logits, gold.clamp_min(0), reduction="none")
    soft_weight = torch.where(labelled, torch.full_like(kl, alpha), torch.ones_like(kl))
    loss = soft_weight * (temperature ** 2) * kl + (1 - alpha) * ce * labelled
    return loss.sum()


class DistillClassifier(Classifier):
    """A `Classifier` (same parameters, same checkpoint) that learns by `distillation_loss`."""

    def __init__(self, config: ClassifierConfig, temperature: float, alpha: float):
        super().__init__(config)
        self.temperature, self.alpha = temperature, alpha

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, int]:
        tokens, lengths = batch["tokens"], batch["lengths"]
        teacher, gold = batch["teacher"], batch["labels"]
        radius = self.config.adversarial if self.training else 0.0
        total = torch.zeros((), device=tokens.device)
        for member in self.members:
            embedded = member.embedding(tokens)
            loss = distillation_loss(member.scores(embedded, lengths), teacher, gold,
                                     self.temperature, self.alpha)
            if radius > 0:
                shift = adversarial_shift(loss, embedded, lengths, radius)
                loss = loss + distillation_loss(member.scores(embedded + shift, lengths),
                                                teacher, gold, self.temperature, self.alpha)
            total = total + loss
        return total, tokens.size(0)


def setup_distill(
    train: Sequence[LabeledText], unlabelled: Sequence[str], teacher: torch.Tensor,
    labels: Sequence[str], dev: Sequence[LabeledText], dev_path: str,
    model_options: dict[str, Any], tokenizer_options: TokenizerOptions, seed: int, meta: dict,
    temperature: float = 2.0, alpha: float = 0.5, dev_teacher: torch.Tensor | None = None,
    subword_alpha: float = 0.0, max_length: int = 256,
) -> tuple[nn.Module, Task]:
    """The student and its task. The transfer set is `train` (gold labels) followed by
    `unlabelled`; `teacher` [len(train) + len(unlabelled), len(labels)] holds the teacher's
    distribution of each, over `labels` (the student's labels, in that order)."""
    from seqtool.decoding.scoring import classify_probabilities

    if temperature <= 0:
        raise SeqtoolError(f"--temperature must be above 0, not {temperature}")
    if not 0 <= alpha <= 1:
        raise SeqtoolError(f"--alpha must be between 0 and 1, not {alpha}")
    texts = [r.text for r in train] + list(unlabelled)
    if tuple(teacher.shape) != (len(texts), len(labels)):
        raise SeqtoolError(f"the teacher's distributions are {tuple(teacher.shape)}; the "
                           f"transfer set needs ({len(texts)}, {len(labels)})")
    index = {label: i for i, label in enumerate(labels)}
    check_labels(train, labels, "training data")
    check_labels(dev, labels, dev_path)
    gold = [index[r.label] for r in train] + [NO_LABEL] * len(unlabelled)
    tokenizer = tokenizer_options.build(texts, seed)
    ids = encode_capped(tokenizer, texts, max_length)
    report_long(sum(len(s) <= max_length for s in ids), len(ids), max_length, "cut")
    ids = [s[:max_length] for s in ids]
    targets = teacher.float().cpu()
    meta = {**meta, "distill": {**meta.get("distill", {}), "temperature": temperature,
                                "alpha": alpha, "labelled": len(train),
                                "unlabelled": len(unlabelled)}}
    torch.manual_seed(seed)
    model = DistillClassifier(ClassifierConfig(tokenizer.vocab_size, len(labels),
                                               **model_options), temperature, alpha)
    dev_texts = [r.text for r in dev]
    dev_gold = torch.tensor([index[r.label] for r in dev])

    def evaluate(m: nn.Module) -> dict[str, float]:
        probs = torch.from_numpy(classify_probabilities(m, tokenizer, dev_texts))
        scores = {"accuracy": float((probs.argmax(-1) == dev_gold).float().mean())}
        if dev_teacher is not None:
            scores.update(teacher_agreement(probs, dev_teacher))
        return scores

    def collate(idx: Sequence[int]) -> dict[str, torch.Tensor]:
        if subword_alpha > 0:  # a fresh segmentation per batch, seeded by the batch
            batch_seed = zlib.crc32(f"{seed}:{','.join(map(str, idx))}".encode())
            batch_ids = [s[:max_length] for s in encode_capped(
                tokenizer, [texts[i] for i in idx], max_length, subword_alpha, batch_seed)]
        else:
            batch_ids = [ids[i] for i in idx]
        batch = classify_batch(batch_ids, [gold[i] for i in idx])
        batch["teacher"] = targets[list(idx)]
        return batch

    def checkpoint(m: nn.Module):
        return Checkpoint("classify", m.config.to_dict(), m.state_dict(),
                          {"src": tokenizer.model_bytes}, list(labels), dict(meta))

    task = Task(lengths=[len(s) + 1 for s in ids], collate=collate, evaluate=evaluate,
                metric="accuracy", higher_is_better=True, checkpoint=checkpoint)
    return model, task


def teacher_agreement(student: torch.Tensor, teacher: torch.Tensor) -> dict[str, float]:
    """How close the student's distributions [N, C] are to the teacher's: the share of
    texts where both pick the same class, and the mean KL(teacher || student)."""
    teacher = teacher.float()
    kl = (torch.xlogy(teacher, teacher) - teacher * student.float().clamp_min(1e-12).log())
    return {"agreement": float((student.argmax(-1) == teacher.argmax(-1)).float().mean()),
            "teacher_kl": float(kl.sum(-1).mean())}
