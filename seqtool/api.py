"""The public Python API: `seqtool.load(task, model)` and `seqtool.train(task, **options)`.

The command line, the server and the benchmarks stand on this layer, so a Python program gets
the same answers as `seqtool classify|embed|generate|translate`:

    import seqtool
    classifier = seqtool.load("classify")                  # the shipped default
    classifier.classify("A gorgeous film.").label          # one text in, one result out
    [r.label for r in classifier.classify(["A gorgeous film.", "Dull."])]   # a list: a list

torch is imported when a model is loaded, not before.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from seqtool.config import MAX_INPUT_LENGTH, InferenceConfig, SamplingConfig, SearchConfig
from seqtool.errors import SeqtoolError
from seqtool.results import AttentionMap, Candidate, ClassifyResult, GenerateResult, TranslateResult
from seqtool.text.blank import is_blank

if TYPE_CHECKING:
    import numpy as np

    from seqtool.inference.predict import Loaded

TASKS = ("classify", "generate", "translate", "pretrain")
# Defaults are the configurations' (seqtool.config), declared once for the CLI and the API.
S, B = SamplingConfig, SearchConfig


def as_texts(texts: str | Iterable[str]) -> tuple[list[str], bool]:
    """The texts as a list, and whether one string was given (then one result comes back,
    as from fastText's predict or a Hugging Face pipeline): a string is never read as its
    characters."""
    if isinstance(texts, str):
        return [texts], True
    if isinstance(texts, (bytes, bytearray)):
        raise TypeError("texts are str, not bytes: decode them first")
    items = list(texts)
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"each text must be a str, not {type(item).__name__}")
    return items, False


class LoadedModel:
    """A checkpoint loaded for one task; `name` is what it was loaded as (None = default)."""

    task = ""

    backend = InferenceConfig.backend  # as asked for; `loaded.backend` is what runs

    def __init__(self, loaded: Loaded, name: str | Path | None, device: str):
        self.loaded, self.name, self.device = loaded, name, device
        self.summary: dict[str, Any] | None = None  # seqtool.train's: best, steps, seconds

    def __repr__(self) -> str:
        from seqtool.device import model_device
        from seqtool.shipped import SHIPPED

        name = self.name or next((m.name for m in SHIPPED if m.task == self.task
                                  and m.file == Path(self.path).name), None)
        parts = [f"{self.task!r}", f"{str(name)!r}" if name else None]
        labels = self.labels
        if labels:
            more = f", … {len(labels)} in all" if len(labels) > 4 else ""
            parts.append(f"labels=[{', '.join(map(repr, labels[:4]))}{more}]")
        device = "cpu" if self.loaded.backend == "numpy" else str(model_device(self.loaded.model))
        parts += [f"path={self.path!r}", f"backend={self.loaded.backend!r}",
                  f"device={device!r}"]
        return f"<{type(self).__name__} {' '.join(p for p in parts if p)}>"

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

    @overload
    def classify(self, texts: str, max_input_length: int = ...) -> ClassifyResult: ...
    @overload
    def classify(self, texts: Iterable[str], max_input_length: int = ...
                 ) -> list[ClassifyResult]: ...

    def classify(self, texts: str | Iterable[str], max_input_length: int = MAX_INPUT_LENGTH
                 ) -> ClassifyResult | list[ClassifyResult]:
        """A label and the class probabilities: one result for one text, a list (in input
        order) for a list of texts."""
        texts, one = as_texts(texts)
        results = self._classify(texts, max_input_length)
        return results[0] if one else results

    def _classify(self, texts: list[str], max_input_length: int) -> list[ClassifyResult]:
        from seqtool.decoding.scoring import classify_probabilities

        # An empty line gets no label (as translate leaves it empty): it holds no evidence.
        results = [ClassifyResult(None, None, text, {}) for text in texts]
        todo = [i for i, text in enumerate(texts) if not is_blank(text)]
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

    def embed(self, texts: str | Iterable[str], max_input_length: int = MAX_INPUT_LENGTH
              ) -> np.ndarray:
        """One sentence vector per text: a float32 matrix [texts, encoding size]; for one
        text, its vector [encoding size]."""
        import numpy as np

        from seqtool.decoding.scoring import classify_outputs

        texts, one = as_texts(texts)
        if one:
            return self.embed(texts, max_input_length)[0]
        if not texts:
            return np.zeros((0, self.loaded.model.encoding_dim), np.float32)
        vectors = classify_outputs(self.loaded.model, self.loaded.tokenizer, list(texts),
                                   encode_only=True, max_length=max_input_length)
        return vectors


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
            self._others[other] = load(other, "generate", self.device, self.backend)
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

    @overload
    def translate(self, texts: str, beam: int = ..., length_penalty: float = ...,
                  n_best: int = ..., max_length_ratio: float = ..., max_input_length: int = ...,
                  batch_size: int = ..., precision: str = ..., attention: bool = ...
                  ) -> TranslateResult: ...
    @overload
    def translate(self, texts: Iterable[str], beam: int = ..., length_penalty: float = ...,
                  n_best: int = ..., max_length_ratio: float = ..., max_input_length: int = ...,
                  batch_size: int = ..., precision: str = ..., attention: bool = ...
                  ) -> list[TranslateResult]: ...

    def translate(self, texts: str | Iterable[str], beam: int = B.beam,
                  length_penalty: float = B.length_penalty, n_best: int = B.n_best,
                  max_length_ratio: float = B.max_length_ratio,
                  max_input_length: int = MAX_INPUT_LENGTH, batch_size: int = B.batch_size,
                  precision: str = B.precision, attention: bool = False
                  ) -> TranslateResult | list[TranslateResult]:
        """The best translation and the `n_best` best hypotheses (at most `beam`) per text;
        with `attention`, also the best hypothesis's attention weights. One result for one
        text, a list for a list."""
        texts, one = as_texts(texts)
        if n_best > beam:
            raise ValueError(f"n_best ({n_best}) cannot exceed beam ({beam})")
        self._backend_for(len(texts))
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
        return out[0] if one else out

    def _backend_for(self, count: int) -> None:
        """Under `backend="auto"`, move to torch for a job of many texts where torch decodes
        faster enough to repay importing it (`inference.predict.auto_switch`); the same
        translations either way."""
        from seqtool.inference.predict import auto_switch, load

        if self.backend == "auto" and auto_switch(self.task, self.loaded.backend, count):
            self.loaded = load(self.loaded.path, self.task, self.device, "torch")
            self._engines.clear()

    def _engine(self, precision: str):
        if precision not in self._engines:
            from seqtool.decoding.translation import Translation

            self._engines[precision] = Translation(
                self.loaded.model, self.loaded.tokenizer, self.loaded.target_tokenizer,
                precision)
        return self._engines[precision]


class LoadedLanguageModel(LoadedModel):
    """A language model from `seqtool pretrain`: what `train classify|generate --init`
    starts from (`seqtool.train(..., init=model)` takes it)."""

    task = "pretrain"


HANDLES = {"classify": LoadedClassifier, "generate": LoadedGenerator,
           "translate": LoadedTranslator, "pretrain": LoadedLanguageModel}


def models() -> list[dict[str, Any]]:
    """The shipped models, as `seqtool models` lists them: name, task, labels, languages,
    domain, score, file and its size in bytes. Loads none of them."""
    from seqtool.shipped import listing

    return listing()


def load(task: str, model: str | Path | None = None, device: str = "auto",
         backend: str = InferenceConfig.backend) -> LoadedModel:
    """A model for `task` ("classify", "generate" or "translate"): the task's shipped default
    when `model` is None, else a shipped name (`brown-genre`) or a checkpoint path. `device` is
    "auto" (cuda when available), "cpu" or "cuda"; `backend` "auto", "numpy" (no torch
    needed) or "torch". Errors are `SeqtoolError`s."""
    from seqtool.inference.predict import load as load_checkpoint

    if task not in HANDLES:
        raise SeqtoolError(f"unknown task {task!r}: {', '.join(TASKS)}")
    handle = HANDLES[task](load_checkpoint(model, task, device, backend), model, device)
    handle.backend = backend
    return handle


def evaluate(task: str, data: str | Path, model: str | Path | None = None,
             device: str = "auto", backend: str = InferenceConfig.backend,
             **options: Any) -> dict[str, Any]:
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
        return evaluation.evaluate_classifier(model, str(data), device, o["max_input_length"],
                                              backend)
    if task == "generate":
        o = take({"judge": None, "train_path": None, "seed": 0, "wordlist": None,
                  "samples": GenerationReportConfig.samples,
                  **{k: getattr(S, k) for k in ("temperature", "top_p", "guidance", "lexicon")}})
        return evaluation.evaluate_generator(
            model, str(data), o["judge"], o["train_path"], o["samples"], o["temperature"],
            o["seed"], o["guidance"], device, o["wordlist"], top_p=o["top_p"],
            lexicon=o["lexicon"], backend=backend)
    if task == "translate":
        o = take({"ref": None, "out": None, "max_input_length": MAX_INPUT_LENGTH,
                  **{k: getattr(B, k) for k in ("beam", "length_penalty", "batch_size",
                                                  "precision")}})
        if not o["ref"]:
            raise SeqtoolError("evaluate translate: give the references, ref=FILE")
        return evaluation.evaluate_translator(
            model, str(data), str(o["ref"]), o["beam"], o["length_penalty"], o["batch_size"],
            o["out"], o["precision"], device, o["max_input_length"], backend)
    raise SeqtoolError(f"unknown task {task!r}: {', '.join(TASKS)}")


# Keywords of `train` named as the command line's flags (--train), not its parameters.
TRAIN_KEYWORDS = {"train": "train_path", "dev": "dev_path", "tokenizer": "tokenizer_path"}


def train(task: str, **options: Any) -> LoadedModel:
    """Train a model as `seqtool train TASK` does (`seqtool pretrain` for task="pretrain"),
    with its options as keywords, dashes as underscores: train="train.tsv", dev="dev.tsv",
    out="model.pt", epochs=3, embed_dim=64, ... Options left out take the command's defaults;
    a loaded model stands for its file (init=seqtool.train("pretrain", ...)).
    Returns the trained model (`out`), loaded as `seqtool.load` would; its `summary` holds
    the run's best dev score ("best"), "steps" and "seconds"."""
    from seqtool.training.run import options_for

    if task not in HANDLES:
        raise SeqtoolError(f"unknown task {task!r}: {', '.join(TASKS)}")
    defaults = options_for(task)
    options = {k: v.path if isinstance(v, LoadedModel) else v for k, v in options.items()}
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
    summary = run_training(task, {**defaults, **given}, set(given), f"seqtool.train({call})")
    trained = load(task, given["out"], given.get("device", "auto"))
    trained.summary = summary
    return trained


def run_training(task: str, options: dict[str, Any], given: set[str],
                 command: str) -> dict[str, Any]:
    """What `train` and the command line run: every option given (by parameter name),
    `given` naming those the caller set, `command` the line to record in the checkpoint."""
    from seqtool.training.run import train as run

    return run(task, options, given, command)


def convert(source: str | Path, out: str | Path | None = None,
            half: bool | None = None) -> Path:
    """Write the model file (`.seqtool`) of the torch checkpoint `source` (`seqtool convert`),
    with the same weights (float16 where `source` stores them so, unless `half` says
    otherwise), signed by a digest over every byte; returns its path."""
    from seqtool import modelfile
    from seqtool.checkpoint import Checkpoint, refuse_overwriting_input

    source = Path(source)
    target = Path(out) if out else source.with_suffix(modelfile.SUFFIX)
    if target.suffix != modelfile.SUFFIX:
        raise SeqtoolError(f"a model file's name ends in {modelfile.SUFFIX}", str(target))
    refuse_overwriting_input(target, [source])
    ckpt = Checkpoint.load(source)
    if ckpt.train_state is not None:
        ckpt.train_state = None  # a model file holds the model, not a training state
    if half is None:
        half = _stores_half(source)
    ckpt.save(target, half=half)
    return target


def _stores_half(path: Path) -> bool:
    """Whether a torch checkpoint stores its floating-point weights as float16."""
    import torch

    payload = torch.load(path, map_location="cpu", weights_only=True)
    return any(v.dtype == torch.float16 for v in payload["weights"].values())
