"""`seqtool.distill()`: one student classifier learns a teacher classifier (issue 24).

Knowledge distillation (Hinton, Vinyals & Dean 2015): the teacher, any S1 checkpoint (an
ensemble of `seqtool ensemble` included), labels a transfer set once with its class
distributions; the student learns those, softened by a temperature, mixed with the gold label
where there is one (`seqtool.training.distill`). The transfer set is the labelled training
text plus unlabelled lines (Tang et al. 2019 distilled BERT into BiLSTMs over such text).

This layer sits where `seqtool.api` does: it uses inference (the teacher) and training (the
student), which never import each other. The teacher's probabilities are computed here, once,
and kept beside the output (OUT.teacher.pt), so a resumed run learns exactly the same targets.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from seqtool.errors import SeqtoolError

LABEL_CHUNK = 2048  # texts the teacher labels between two progress lines


def soft_targets_path(out: str | Path) -> Path:
    """Where a run keeps its teacher's class distributions: model.pt -> model.teacher.pt."""
    out = Path(out)
    return out.with_name(out.stem + ".teacher" + out.suffix)


def texts_digest(texts: Sequence[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\n")
    return digest.hexdigest()


def read_unlabelled(paths: Sequence[str | Path], exclude: Collection[str] = ()) -> list[str]:
    """The non-blank lines of each unlabelled file, stripped, each kept once and none of
    `exclude` (the labelled texts: they are in the transfer set already). A file that is
    missing or holds no text is an error."""
    from seqtool.text.data import iter_lines

    seen = set(exclude)
    texts: list[str] = []
    for path in paths:
        found = 0
        for _, line in iter_lines(path):  # a missing file: "PATH: cannot open: ..."
            text = line.strip()
            if not text:
                continue
            found += 1
            if text not in seen:
                seen.add(text)
                texts.append(text)
        if not found:
            raise SeqtoolError("unlabelled file is empty: no text", str(path))
    return texts


def teacher_probabilities(loaded, texts: Sequence[str], cache: Path | None = None,
                          key: Mapping[str, Any] | None = None, quiet: bool = False):
    """The teacher's class distributions [N, C] (float32) over `texts`, in order.

    With `cache`, they are read from it when it was written for the same teacher and texts
    (`key`), else computed and written there: a resumed run reuses them bit for bit."""
    import torch

    from seqtool.decoding.scoring import classify_probabilities

    key = dict(key or {}, texts=texts_digest(texts), count=len(texts))
    if cache is not None and cache.is_file():
        try:
            stored = torch.load(cache, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged cache is recomputed
            stored = None
        if isinstance(stored, dict) and stored.get("key") == key:
            return stored["probabilities"]
    out = []
    for start in range(0, len(texts), LABEL_CHUNK):
        chunk = list(texts[start:start + LABEL_CHUNK])
        out.append(torch.from_numpy(classify_probabilities(loaded.model, loaded.tokenizer,
                                                           chunk)))
        if not quiet:
            print(f"teacher: labelled {min(len(texts), start + LABEL_CHUNK)}/{len(texts)}",
                  file=sys.stderr, flush=True)
    probabilities = torch.cat(out) if out else torch.zeros(0, len(loaded.checkpoint.labels))
    if cache is not None:
        import io

        from seqtool.checkpoint import atomic_write_bytes

        buffer = io.BytesIO()
        torch.save({"key": key, "probabilities": probabilities}, buffer)
        atomic_write_bytes(cache, buffer.getvalue())
    return probabilities


def default_options() -> dict[str, Any]:
    """Every option of `seqtool distill` at its default, by the command line's names: those
    of `train classify`, plus the distillation's own (`config.DistillConfig`)."""
    from dataclasses import fields

    from seqtool.config import DistillConfig
    from seqtool.training.run import options_for

    return {**options_for("classify"), **{f.name: f.default for f in fields(DistillConfig)}}


def distill(teacher: str | Path | None, train: str | Path, dev: str | Path, out: str | Path,
            unlabelled: Sequence[str | Path] = (), command: str | None = None,
            **options: Any) -> dict[str, Any]:
    """Train one student classifier on the class distributions of `teacher` (a classify
    checkpoint or shipped name; None = the shipped default) over `train` (labelled) and the
    lines of each `unlabelled` file, choosing on `dev`; write it to `out` as `seqtool train
    classify` does (OUT.last.pt to resume, `resume=True`). Options are those of `train
    classify` plus `temperature`, `alpha` and `augment` (copies of each labelled text added
    to the transfer set), dashes as underscores. Returns the loop's
    summary (best, steps, seconds). Errors are SeqtoolErrors."""
    from seqtool.text.data import read_labeled
    from seqtool.training import run as training_run
    from seqtool.training.resume import file_digest

    unknown = sorted(set(options) - set(default_options()))
    if unknown:
        raise SeqtoolError(f"unknown option(s) of distill: {', '.join(unknown)}")
    opts = {**default_options(), **options, "out": str(out), "train_path": str(train),
            "dev_path": str(dev), "teacher": str(teacher) if teacher else None,
            "unlabelled": [str(p) for p in unlabelled]}
    teacher_path = _teacher_path(teacher)
    if command is None:
        command = "seqtool.distill(" + ", ".join(
            f"{k}={v!r}" for k, v in {"teacher": opts["teacher"], "train": str(train),
                                      "dev": str(dev), "out": str(out),
                                      "unlabelled": opts["unlabelled"], **options}.items()) + ")"

    def make_setup(opts: dict[str, Any], model_opts: dict[str, Any]):
        """Run by `training.run.train` once --out is checked: the teacher labels the
        transfer set (and its digest joins the run's fingerprint), then the recipe."""
        _refuse_overwriting(opts, teacher_path)
        loaded = _load_teacher(teacher_path, opts["device"])
        train_data, dev_data = list(read_labeled(train)), list(read_labeled(dev))
        labels = _student_labels(loaded.checkpoint.labels, train_data, str(train),
                                 teacher_path)
        texts = [r.text for r in train_data]
        extra = read_unlabelled(opts["unlabelled"], exclude=texts)
        augmented = _augmented(texts, extra, opts["augment"], opts["seed"])
        extra += augmented
        # The run's fingerprint holds option values; these make it hold the teacher's and
        # the unlabelled files' contents too (a resumed run refuses other ones).
        opts["teacher_digest"] = file_digest(str(teacher_path))
        opts["unlabelled_digests"] = [file_digest(p) for p in opts["unlabelled"]]
        quiet = bool(opts["quiet"])
        column = [loaded.checkpoint.labels.index(label) for label in labels]

        def setup(tok, meta):
            from seqtool.training.distill import setup_distill

            key = {"teacher": opts["teacher_digest"]}
            soft = teacher_probabilities(loaded, texts + extra, soft_targets_path(out), key,
                                         quiet)
            dev_soft = teacher_probabilities(loaded, [r.text for r in dev_data], quiet=True)
            meta["distill"] = {"teacher": str(teacher_path),
                               "unlabelled_files": opts["unlabelled"],
                               "augmented": len(augmented)}
            return setup_distill(
                train_data, extra, soft[:, column], labels, dev_data, str(dev), model_opts,
                tok, opts["seed"], meta, opts["temperature"], opts["alpha"],
                dev_soft[:, column], opts["subword_sampling"], opts["max_train_length"])

        return setup

    return training_run.train("classify", opts, set(options), command, make_setup)


def _augmented(texts: list[str], unlabelled: list[str], copies: int, seed: int) -> list[str]:
    """`copies` augmented copies of each labelled text (`seqtool.text.augment`), those not
    in the transfer set yet, each once."""
    from seqtool.text.augment import augmented_copies

    if copies <= 0:
        return []
    seen, out = {*texts, *unlabelled}, []
    for text in augmented_copies(texts, copies, seed):
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


def _teacher_path(teacher: str | Path | None) -> Path:
    from seqtool.inference.predict import resolve_path

    path = resolve_path(teacher, "classify")
    if not path.is_file():
        raise SeqtoolError("teacher: no such checkpoint", str(path))
    return path


def _load_teacher(path: Path, device: str):
    """The teacher, which must be a classifier (`seqtool ensemble`'s combinations too)."""
    from seqtool.checkpoint import Checkpoint
    from seqtool.inference.predict import load

    task = Checkpoint.load(path).task
    if task != "classify":
        raise SeqtoolError(f"the teacher is a {task} model; distill needs a classify model",
                           str(path))
    return load(path, "classify", device)


def _student_labels(teacher_labels: Sequence[str], train_data, train_path: str,
                    teacher_path: Path) -> list[str]:
    """The student's labels: the training data's, which must be the teacher's (in any order)."""
    labels = sorted({r.label for r in train_data})
    if set(labels) != set(teacher_labels):
        raise SeqtoolError(f"the teacher's labels are {', '.join(teacher_labels)}; the "
                           f"training data's are {', '.join(labels)}", train_path)
    return labels


def _refuse_overwriting(opts: dict[str, Any], teacher_path: Path) -> None:
    """--out, OUT.last.pt and OUT.teacher.pt must be none of the run's input files."""
    from seqtool.checkpoint import refuse_overwriting_input
    from seqtool.training.resume import last_path

    inputs = [teacher_path, opts["train_path"], opts["dev_path"], *opts["unlabelled"],
              opts.get("init"), opts.get("tokenizer_path"), opts.get("embeddings")]
    out = Path(opts["out"])
    for target in (out, last_path(out), soft_targets_path(out)):
        refuse_overwriting_input(target, inputs)
