"""The `evaluate` commands: run a model over a labelled file and collect its scores."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from seqtool.errors import SeqtoolError
from seqtool.metrics import (
    bits_per_character,
    classification_report,
    corpus_scores,
    distinct_n,
    non_word_rates,
)
from seqtool.text.data import read_labeled, read_parallel
from seqtool.words import words

CORPORA = Path(__file__).resolve().parents[2] / "corpora"
# The English text the repository ships, every split: a reference vocabulary of real words.
ENGLISH_CORPORA = ("generation/brown/*.tsv", "sentiment/movie-snippets/*.tsv",
                   "translation/bible-fr-en/*.en")


def reference_vocabulary(wordlist: str | None) -> tuple[set[str], str]:
    """The words a generated word must be one of, and where they come from: a --wordlist
    (any text, e.g. /usr/share/dict/words), else the English corpora of the repository."""
    if wordlist:
        files = [Path(wordlist)]
    else:
        files = sorted(f for pattern in ENGLISH_CORPORA for f in CORPORA.glob(pattern))
        if not files:
            raise SeqtoolError("no corpora/ folder next to the package to take real words "
                               "from; pass --wordlist FILE", str(CORPORA))
    vocabulary: set[str] = set()
    for f in files:
        try:
            text = f.read_text(encoding="utf-8", errors="replace")
        except OSError as e:
            raise SeqtoolError(f"cannot read: {e.strerror or e}", str(f)) from None
        if f.suffix == ".tsv":  # label<TAB>text: the label is no word of the text
            text = "\n".join(line.partition("\t")[2] for line in text.splitlines())
        vocabulary.update(words(text))
    source = wordlist or f"the words of corpora/{{{','.join(ENGLISH_CORPORA)}}}"
    return vocabulary, f"{source} ({len(vocabulary)} words)"


def evaluate_classifier(
    model_path: str | None, data: str, device: str = "cpu", max_length: int = 512,
    backend: str = "auto",
) -> dict[str, Any]:
    from seqtool.decoding.scoring import classify_probabilities
    from seqtool.inference.predict import load
    from seqtool.text.data import check_labels

    loaded = load(model_path, "classify", device, backend)
    labels = loaded.checkpoint.labels
    records = list(read_labeled(data))
    check_labels(records, labels, data)
    start = time.perf_counter()
    probs = classify_probabilities(loaded.model, loaded.tokenizer, [r.text for r in records],
                                   max_length=max_length)
    seconds = time.perf_counter() - start
    predicted = [labels[i] for i in probs.argmax(-1).tolist()]
    report = classification_report([r.label for r in records], predicted, labels)
    report["sentences_per_s"] = round(len(records) / seconds, 1)
    report["data"] = data
    return report


def evaluate_generator(
    model_path: str | None, data: str, judge: str | None, train_path: str | None,
    samples: int, temperature: float, seed: int, guidance: float = 0.0, device: str = "cpu",
    wordlist: str | None = None, top_p: float = 1.0, lexicon: str = "model",
    backend: str = "auto",
) -> dict[str, Any]:
    import numpy as np

    from seqtool.decoding.scoring import sentence_nll
    from seqtool.inference.predict import generate, lexicon_for, load, resolve_path
    from seqtool.text.data import check_labels

    loaded = load(model_path, "generate", device, backend)
    labels = loaded.checkpoint.labels
    records = list(read_labeled(data))
    check_labels(records, labels, data)
    vocabulary, vocabulary_source = reference_vocabulary(wordlist)  # fail before the work
    sampling_lexicon = lexicon_for(loaded, lexicon)
    index = {label: i for i, label in enumerate(labels)}
    ids = loaded.tokenizer.encode_batch([r.text for r in records])
    right = [index[r.label] for r in records]
    # -log p(x|c) of every sentence under every class [N, C], and its pieces [N].
    per_class = [sentence_nll(loaded.model, [c] * len(ids), ids) for c in range(len(labels))]
    table, counts = np.stack([nll for nll, _ in per_class], 1), per_class[0][1]
    nll = table[np.arange(len(ids)), right]
    # The wrong class: for every sentence, the class it is most easily mistaken for would
    # flatter the gap less; every other class on average is the fair, simple choice.
    wrong_nll = (table.sum(1) - nll) / max(1, len(labels) - 1)
    report: dict[str, Any] = {
        "data": data,
        "bits_per_character": bits_per_character(float(nll.sum()), [r.text for r in records]),
        "perplexity": float(np.exp(nll.sum() / counts.sum())),
        "perplexity_wrong_class": float(np.exp(wrong_nll.sum() / counts.sum())),
        # The generator read as a classifier by Bayes' rule (uniform prior): argmax_c p(x|c).
        "bayes_accuracy": float((table.argmin(1) == np.asarray(right)).mean()),
        "per_class": {},
    }
    for label, i in index.items():
        rows = [j for j, y in enumerate(right) if y == i]
        if rows:
            report["per_class"][label] = {
                "perplexity": float(np.exp(nll[rows].sum() / counts[rows].sum())),
                "perplexity_wrong_class": float(
                    np.exp(wrong_nll[rows].sum() / counts[rows].sum())),
            }
    # Samples: diversity, copying, class consistency.
    if train_path:
        train_file, note = train_path, ""
    else:
        train_file, note = recorded_train_file(loaded.checkpoint.meta,
                                               resolve_path(model_path, "generate"))
    train_texts = set()
    if train_file:
        train_texts = {r.text.strip().lower() for r in read_labeled(train_file)}
    judge_model = load(judge, "classify", device, backend)
    unknown = sorted(set(labels) - set(judge_model.checkpoint.labels))
    if unknown:
        raise SeqtoolError(f"the judge does not know the label(s) {', '.join(unknown)}", judge)
    all_samples, start = [], time.perf_counter()
    generated_tokens = 0
    for label in labels:
        out = generate(loaded, label, samples, temperature=temperature, top_p=top_p, seed=seed,
                       guidance=guidance, lexicon=sampling_lexicon)
        generated_tokens += sum(s["tokens"] for s in out)
        all_samples.extend(out)
    seconds = time.perf_counter() - start
    from seqtool.decoding.scoring import classify_probabilities

    texts = [s["text"] for s in all_samples]
    probs = classify_probabilities(judge_model.model, judge_model.tokenizer, texts)
    judged = [judge_model.checkpoint.labels[i] for i in probs.argmax(-1).tolist()]
    tokenized = [t.lower().split() for t in texts]
    report["samples"] = {
        "per_class": samples,
        "temperature": temperature,
        "top_p": top_p,
        "guidance": guidance,
        "lexicon": (f"{lexicon} ({len(sampling_lexicon.words)} words)"
                    if sampling_lexicon else "none"),
        "distinct_1": distinct_n(tokenized, 1),
        "distinct_2": distinct_n(tokenized, 2),
        **non_word_rates(texts, vocabulary),
        "reference_vocabulary": vocabulary_source,
        "copied_from_train": (sum(t.strip().lower() in train_texts for t in texts) / len(texts)
                              if train_texts else None),
        "train_file": str(train_file) if train_file else None,
        "copied_note": note,
        "class_consistency": sum(j == s["label"] for j, s in zip(judged, all_samples))
        / len(all_samples),
        "generated_tokens_per_s": round(generated_tokens / seconds, 1),
        "examples": {label: [s["text"] for s in all_samples if s["label"] == label][:3]
                     for label in labels},
    }
    return report


def recorded_train_file(meta: dict[str, Any], checkpoint: Path) -> tuple[Path | None, str]:
    """The `--train` file of the command recorded in a checkpoint, looked up as written, then
    next to the checkpoint and in the folder above (a repository's checkpoints/ holds models
    trained from its root); else None and why."""
    import shlex

    try:
        words = shlex.split(str(meta.get("command", "")))
    except ValueError:
        words = []
    given = next((b for a, b in zip(words, words[1:]) if a == "--train"), None)
    if given is None:
        given = next((w.split("=", 1)[1] for w in words if w.startswith("--train=")), None)
    if not given:
        return None, "the checkpoint records no --train file; pass --train"
    folder = checkpoint.resolve().parent
    for candidate in (Path(given), folder / given, folder.parent / given):
        if candidate.is_file():
            return candidate, ""
    return None, f"training file {given} (recorded in the checkpoint) not found; pass --train"


def evaluate_translator(
    model_path: str | None, src: str, ref: str, beam: int, alpha: float, batch_size: int,
    out: str | None, precision: str = "fp32", device: str = "cpu", max_length: int = 512,
    backend: str = "auto",
) -> dict[str, Any]:
    from seqtool.decoding.translation import Translation
    from seqtool.inference.predict import auto_switch, load

    start = time.perf_counter()
    loaded = load(model_path, "translate", device, backend)
    lines = read_parallel(src, ref, keep_blank=True)  # blank on both sides: kept for --out
    if backend == "auto" and auto_switch("translate", loaded.backend, len(lines)):
        loaded = load(model_path, "translate", device, "torch")
    translation = Translation(loaded.model, loaded.tokenizer, loaded.target_tokenizer, precision)
    results = translation.translate([p.src for p in lines], beam, alpha, batch_size=batch_size,
                                    max_source_tokens=max_length)
    seconds = time.perf_counter() - start
    if out:
        from seqtool.checkpoint import atomic_write_bytes

        text = "".join(r.text + "\n" for r in results)
        atomic_write_bytes(Path(out), text.encode("utf-8"))
    scored = [i for i, p in enumerate(lines) if p.src]
    pairs = [lines[i] for i in scored]
    results = [results[i] for i in scored]
    report = corpus_scores([r.text for r in results], [p.tgt for p in pairs])
    tokens = sum(len(r.target_pieces) for r in results)
    report.update({
        "src": src, "ref": ref, "beam": beam, "length_penalty": alpha, "precision": precision,
        "sentences": len(pairs), "seconds": round(seconds, 2),
        "sentences_per_s": round(len(pairs) / seconds, 2),
        "tokens_per_s": round(tokens / seconds, 1),
    })
    return report
