"""The public Python API: `seqtool.load(task, model)` and `seqtool.train(task, **options)`.

The command line, the server and the benchmarks stand on this layer, so a Python program gets
the same answers as `seqtool classify|embed|generate|translate`:

    import seqtool
    classifier = seqtool.load("classify")                  # the shipped default
    [r.label for r in classifier.classify(["A gorgeous film.", "Dull."])]

torch is imported when a model is loaded, not before.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seqtool.errors import SeqtoolError
from seqtool.results import AttentionMap, Candidate, ClassifyResult, GenerateResult, TranslateResult

if TYPE_CHECKING:
    import numpy as np

    from seqtool.inference.predict import Loaded

TASKS = ("classify", "generate", "translate")
MAX_INPUT_LENGTH = 512  # pieces per input line; longer inputs are cut (one warning on stderr)


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

    def classify_stream(self, chunks: Iterable[Sequence[str]],
                        max_input_length: int = MAX_INPUT_LENGTH
                        ) -> Iterator[list[ClassifyResult]]:
        """Results per chunk of texts; each chunk is answered before the next is read."""
        for chunk in chunks:
            yield self.classify(chunk, max_input_length)

    def _result(self, text: str, probs) -> ClassifyResult:
        labels = self.loaded.checkpoint.labels
        best = int(probs.argmax())
        return ClassifyResult(
            label=labels[best], probability=round(float(probs[best]), 6), text=text,
            probabilities={lab: round(float(q), 6) for lab, q in zip(labels, probs)})

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
        self._other_names: dict[str, str | None] = {}
        self._others: dict[str, Loaded] = {}
        self._lexicons: dict[tuple[int, str], Any] = {}

    def generate(self, label: str, n: int = 1, prompt: str = "", seed: int = 0,
                 temperature: float = 0.8, top_k: int = 0, top_p: float = 1.0,
                 max_output_length: int = 60, guidance: float = 1.0,
                 lexicon: str = "model") -> list[GenerateResult]:
        """`n` samples for `label` (continuing `prompt`); the same seed gives the same text.
        The shipped default generator hands a label it does not know (`news`) to the shipped
        generator that knows it."""
        from seqtool.inference.predict import generate

        loaded = self._for_label(label)
        samples = generate(loaded, label, n, prompt, max_output_length, temperature, top_k,
                           top_p, seed, guidance=guidance, lexicon=self._lexicon(loaded, lexicon))
        return [GenerateResult(**s) for s in samples]

    def _for_label(self, label: str) -> Loaded:
        """This model, or for a label only another shipped generator knows (when this one
        is the shipped default), that one, loaded once and kept beside this one."""
        if self.name is not None or label in self.loaded.checkpoint.labels:
            return self.loaded
        from seqtool.inference.predict import load, shipped_generator_for

        if label not in self._other_names:
            self._other_names[label] = shipped_generator_for(label)
        other = self._other_names[label]
        if other is None:
            return self.loaded  # generate() names the labels this model knows
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

    def translate(self, texts: Sequence[str], beam: int = 5, length_penalty: float = 1.0,
                  n_best: int = 1, max_length_ratio: float = 2.0,
                  max_input_length: int = MAX_INPUT_LENGTH, batch_size: int = 64,
                  precision: str = "fp32", attention: bool = False) -> list[TranslateResult]:
        """The best translation and the `n_best` best hypotheses (at most `beam`) per text;
        with `attention`, also the best hypothesis's attention weights."""
        if n_best > beam:
            raise SeqtoolError("--n-best cannot exceed --beam")
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
    from seqtool.inference import evaluation

    model = str(model) if model else None
    if task == "classify":
        return evaluation.evaluate_classifier(
            model, str(data), device, options.get("max_input_length", MAX_INPUT_LENGTH))
    if task == "generate":
        return evaluation.evaluate_generator(
            model, str(data), options.get("judge"), options.get("train_path"),
            options.get("samples", 200), options.get("temperature", 0.8),
            options.get("seed", 0), options.get("guidance", 1.0), device,
            options.get("wordlist"), top_p=options.get("top_p", 1.0),
            lexicon=options.get("lexicon", "model"))
    if task == "translate":
        return evaluation.evaluate_translator(
            model, str(data), str(options["ref"]), options.get("beam", 5),
            options.get("length_penalty", 1.0), options.get("batch_size", 64),
            options.get("out"), options.get("precision", "fp32"), device,
            options.get("max_input_length", MAX_INPUT_LENGTH))
    raise SeqtoolError(f"unknown task {task!r}: {', '.join(TASKS)}")
