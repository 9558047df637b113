"""The public Python API: `seqtool.load(task, model)` and `seqtool.train(task, **options)`.

The command line, the server and the benchmarks stand on this layer, so a Python program gets
the same answers as `seqtool classify|embed|generate|translate`:

    import seqtool
    classifier = seqtool.load("classify")                  # the shipped default
    [r.label for r in classifier.classify(["A gorgeous film.", "Dull."])]

torch is imported when a model is loaded, not before.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqtool.config import MAX_INPUT_LENGTH, SamplingConfig, SearchConfig
from seqtool.errors import SeqtoolError
from seqtool.results import AttentionMap, Candidate, ClassifyResult, GenerateResult, TranslateResult

if TYPE_CHECKING:
    import numpy as np

    from seqtool.inference.predict import Loaded

TASKS = ("classify", "generate", "translate")
# Defaults are the configurations' (seqtool.config), declared once for the CLI and the API.
S, B = SamplingConfig, SearchConfig


class LoadedModel:
    """A checkpoint loaded for one task; `name` is what it was loaded as (None = default)."""

    task = ""

    def __init__(self, loaded: Loaded, name: str | Path | None, device: str):
        self.loaded, self.name, self.device = loaded, name, device

    @property
    def labels(self) -> list[str]:
        return list(self.loaded.checkpoint.labels)

    @property
    def path(self) -> str:
        return str(self.loaded.path)

    def describe(self) -> dict[str, Any]:
        """What is loaded: task, name, file and labels (the server's `GET /models`)."""
        return {"task": self.task, "name": str(self.name) if self.name else "default",
                "path": self.path, "labels": self.labels}

    def describe_all(self) -> list[dict[str, Any]]:
        """`describe`, and that of every model loaded on its behalf since."""
        return [self.describe()]


class LoadedClassifier(LoadedModel):
    """S1: label texts, or turn them into the encoder's sentence vectors."""

    task = "classify"

    def classify(self, texts: Sequence[str],
                 max_input_length: int = MAX_INPUT_LENGTH) -> list[ClassifyResult]:
        """A label and the class probabilities per text, in input order."""
        from seqtool.decoding.scoring import classify_probabilities

        # An empty line gets no label (as translate leaves it empty): it holds no evidence.
        results = [ClassifyResult(None, None, text, {}) for text in texts]
        todo = [i for i, text in enumerate(texts) if text.strip()]
        probabilities = classify_probabilities(self.loaded.model, self.loaded.tokenizer,
                                               [texts[i] for i in todo],
                                               max_length=max_input_length)
        for i, probs in zip(todo, probabilities, strict=True):
            results[i] = self._result(texts[i], probs)
        return results

    def _result(self, text: str, probs) -> ClassifyResult:
        labels = self.loaded.checkpoint.labels
        best = int(probs.argmax())
        return ClassifyResult(
            label=labels[best], probability=round(float(probs[best]), 6), text=text,
            probabilities={lab: round(float(q), 6) for lab, q in zip(labels, probs)})

    @property
    def embedding_size(self) -> int:
        """The length of `embed`'s vectors."""
        return self.loaded.model.encoding_dim

    def embed(self, texts: Sequence[str], max_input_length: int = MAX_INPUT_LENGTH
              ) -> np.ndarray:
        """One sentence vector per text: a float32 matrix [texts, encoding size]."""
        import numpy as np

        from seqtool.decoding.scoring import classify_outputs

        if not texts:
            return np.zeros((0, self.loaded.model.encoding_dim), np.float32)
        vectors = classify_outputs(self.loaded.model, self.loaded.tokenizer, list(texts),
                                   encode_only=True, max_length=max_input_length)
        return vectors.numpy()


class LoadedGenerator(LoadedModel):
    """S2: sentences for a class, sampled from the model's own previous output."""

    task = "generate"

    def __init__(self, loaded: Loaded, name: str | Path | None, device: str):
        super().__init__(loaded, name, device)
        self._other_labels: dict[str, list[str]] | None = None  # other shipped generators
        self._others: dict[str, Loaded] = {}
        self._lexicons: dict[tuple[int, str], Any] = {}

    def generate(self, label: str, n: int = 1, prompt: str = "", seed: int = 0,
                 temperature: float = S.temperature, top_k: int = S.top_k,
                 top_p: float = S.top_p, max_output_length: int = S.max_output_length,
                 guidance: float = S.guidance, lexicon: str = S.lexicon,
                 no_repeat_ngram: int = S.no_repeat_ngram) -> list[GenerateResult]:
        """`n` samples for `label` (continuing `prompt`); the same seed gives the same text.
        The shipped default generator hands a label it does not know (`news`) to the shipped
        generator that knows it. `no_repeat_ngram` N > 0: no sample repeats an N-gram of
        pieces."""
        return list(self.generate_stream(label, n, prompt, seed, temperature, top_k, top_p,
                                         max_output_length, guidance, lexicon, no_repeat_ngram))

    def generate_stream(self, label: str, n: int = 1, prompt: str = "", seed: int = 0,
                        temperature: float = S.temperature, top_k: int = S.top_k,
                        top_p: float = S.top_p, max_output_length: int = S.max_output_length,
                        guidance: float = S.guidance, lexicon: str = S.lexicon,
                        no_repeat_ngram: int = S.no_repeat_ngram) -> Iterator[GenerateResult]:
        """`generate`'s samples in order, each as soon as it (and those before it) ended."""
        from seqtool.inference.predict import generate_stream

        loaded = self._for_label(label)
        for record in generate_stream(loaded, label, n, prompt, max_output_length, temperature,
                                      top_k, top_p, seed, guidance=guidance,
                                      lexicon=self._lexicon(loaded, lexicon),
                                      no_repeat_ngram=no_repeat_ngram):
            yield GenerateResult(**record)

    def describe_all(self) -> list[dict[str, Any]]:
        return [self.describe()] + [
            {"task": self.task, "name": name, "path": str(loaded.path),
             "labels": list(loaded.checkpoint.labels)} for name, loaded in self._others.items()]

    def _for_label(self, label: str) -> Loaded:
        """This model, or for a label only another shipped generator knows (when this one
        is the shipped default), that one, loaded once and kept beside this one."""
        if self.name is not None or label in self.loaded.checkpoint.labels:
            return self.loaded
        from seqtool.inference.predict import load, other_shipped_generators

        if self._other_labels is None:
            self._other_labels = other_shipped_generators()
        other = next((name for name, labels in self._other_labels.items() if label in labels),
                     None)
        if other is None:
            known = [*self.loaded.checkpoint.labels,
                     *(x for labels in self._other_labels.values() for x in labels)]
            raise SeqtoolError(f"unknown label {label!r} (known: {', '.join(known)})")
        if other not in self._others:
            self._others[other] = load(other, "generate", self.device)
        return self._others[other]

    def _lexicon(self, loaded: Loaded, option: str):
        """The words samples may use (built once per model and option: it takes a while)."""
        from seqtool.inference.predict import lexicon_for

        key = (id(loaded), option)
        if key not in self._lexicons:
            self._lexicons[key] = lexicon_for(loaded, option)
        return self._lexicons[key]


class LoadedTranslator(LoadedModel):
    """S3: one translation per sentence; an empty sentence translates to an empty one."""

    task = "translate"

    def __init__(self, loaded: Loaded, name: str | Path | None, device: str):
        super().__init__(loaded, name, device)
        self._engines: dict[str, Any] = {}

    def translate(self, texts: Sequence[str], beam: int = B.beam,
                  length_penalty: float = B.length_penalty, n_best: int = B.n_best,
                  max_length_ratio: float = B.max_length_ratio,
                  max_input_length: int = MAX_INPUT_LENGTH, batch_size: int = B.batch_size,
                  precision: str = B.precision, attention: bool = False
                  ) -> list[TranslateResult]:
        """The best translation and the `n_best` best hypotheses (at most `beam`) per text;
        with `attention`, also the best hypothesis's attention weights."""
        if n_best > beam:
            raise ValueError(f"n_best ({n_best}) cannot exceed beam ({beam})")
        engine = self._engine(precision)
        results = engine.translate(list(texts), beam, length_penalty, n_best, max_length_ratio,
                                   batch_size, attention, max_input_length)
        out = []
        for source, r in zip(texts, results, strict=True):
            attention_map = None
            if attention and r.source_pieces and r.hypotheses[0].attention is not None:
                targets = r.target_pieces
                weights = [row[: len(r.source_pieces)]
                           for row in r.hypotheses[0].attention[: len(targets)]]
                attention_map = AttentionMap(r.source_pieces, targets, weights)
            out.append(TranslateResult(
                source=source, translation=r.text, score=round(r.score, 4),
                n_best=[Candidate(engine.text(h), round(h.score, 4)) for h in r.hypotheses],
                attention=attention_map))
        return out

    def _engine(self, precision: str):
        if precision not in self._engines:
            from seqtool.decoding.translation import Translation

            self._engines[precision] = Translation(
                self.loaded.model, self.loaded.tokenizer, self.loaded.target_tokenizer,
                precision)
        return self._engines[precision]


HANDLES = {"classify": LoadedClassifier, "generate": LoadedGenerator,
           "translate": LoadedTranslator}


def load(task: str, model: str | Path | None = None, device: str = "auto") -> LoadedModel:
    """A model for `task` ("classify", "generate" or "translate"): the task's shipped default
    when `model` is None, else a shipped name (`brown-genre`) or a checkpoint path. `device` is
    "auto" (cuda when available), "cpu" or "cuda". Errors are `SeqtoolError`s."""
    from seqtool.inference.predict import load as load_checkpoint

    if task not in HANDLES:
        raise SeqtoolError(f"unknown task {task!r}: {', '.join(TASKS)}")
    return HANDLES[task](load_checkpoint(model, task, device), model, device)


def evaluate(task: str, data: str | Path, model: str | Path | None = None,
             device: str = "auto", **options: Any) -> dict[str, Any]:
    """Score a model on held-out data as `seqtool evaluate TASK` does, and return its report
    (the keys of `--format json`). `data` is the labelled file (classify, generate) or the
    source file (translate, with `ref=`). Options are the command's, dashes as underscores:
    classify: max_input_length; generate: judge, train_path, samples, temperature, top_p,
    guidance, lexicon, seed, wordlist; translate: ref, beam, length_penalty, batch_size,
    max_input_length, out, precision."""
    from seqtool.config import GenerationReportConfig
    from seqtool.inference import evaluation

    model = str(model) if model else None
    given = dict(options)

    def take(defaults: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(given) - set(defaults))
        if unknown:
            raise SeqtoolError(f"evaluate {task}: unknown option(s) {', '.join(unknown)}")
        return {**defaults, **given}

    if task == "classify":
        o = take({"max_input_length": MAX_INPUT_LENGTH})
        return evaluation.evaluate_classifier(model, str(data), device, o["max_input_length"])
    if task == "generate":
        o = take({"judge": None, "train_path": None, "seed": 0, "wordlist": None,
                  "samples": GenerationReportConfig.samples,
                  **{k: getattr(S, k) for k in ("temperature", "top_p", "guidance", "lexicon")}})
        return evaluation.evaluate_generator(
            model, str(data), o["judge"], o["train_path"], o["samples"], o["temperature"],
            o["seed"], o["guidance"], device, o["wordlist"], top_p=o["top_p"],
            lexicon=o["lexicon"])
    if task == "translate":
        o = take({"ref": None, "out": None, "max_input_length": MAX_INPUT_LENGTH,
                  **{k: getattr(B, k) for k in ("beam", "length_penalty", "batch_size",
                                                  "precision")}})
        if not o["ref"]:
            raise SeqtoolError("evaluate translate: give the references, ref=FILE")
        return evaluation.evaluate_translator(
            model, str(data), str(o["ref"]), o["beam"], o["length_penalty"], o["batch_size"],
            o["out"], o["precision"], device, o["max_input_length"])
    raise SeqtoolError(f"unknown task {task!r}: {', '.join(TASKS)}")


# Keywords of `train` named as the command line's flags (--train), not its parameters.
TRAIN_KEYWORDS = {"train": "train_path", "dev": "dev_path", "tokenizer": "tokenizer_path"}


def train(task: str, **options: Any) -> dict[str, Any]:
    """Train a model as `seqtool train TASK` does (`seqtool pretrain` for task="pretrain"),
    with its options as keywords, dashes as underscores: train="train.tsv", dev="dev.tsv",
    out="model.pt", epochs=3, embed_dim=64, ... Options left out take the command's defaults.
    Returns the run's summary: the best dev score ("best"), "steps" and "seconds"."""
    from seqtool.training.run import options_for

    defaults = options_for(task)
    given = {TRAIN_KEYWORDS.get(k, k): v for k, v in options.items()}
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        known = sorted({k: None for k in defaults} | {v: None for v in TRAIN_KEYWORDS.values()})
        flags = {v: k for k, v in TRAIN_KEYWORDS.items()}
        raise SeqtoolError(f"train {task}: unknown option(s) {', '.join(unknown)} (known: "
                           f"{', '.join(sorted(flags.get(k, k) for k in known))})")
    for required in ("out",) + (() if task == "translate" else ("train_path", "dev_path")):
        if not given.get(required):
            raise SeqtoolError(f"train {task}: give {required.removesuffix('_path')}=FILE")
    if task == "pretrain" and isinstance(given["train_path"], (str, Path)):
        given["train_path"] = (given["train_path"],)
    call = ", ".join([repr(task), *(f"{k}={v!r}" for k, v in options.items())])
    return run_training(task, {**defaults, **given}, set(given), f"seqtool.train({call})")


def run_training(task: str, options: dict[str, Any], given: set[str],
                 command: str) -> dict[str, Any]:
    """What `train` and the command line run: every option given (by parameter name),
    `given` naming those the caller set, `command` the line to record in the checkpoint."""
    from seqtool.training.run import train as run

    return run(task, options, given, command)
