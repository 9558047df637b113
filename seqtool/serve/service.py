"""What each endpoint answers, checked field by field, and the batching of requests that
wait at the same moment. No HTTP here: `seqtool.serve.http` carries the requests."""

from __future__ import annotations

import math
import threading
from typing import Any

from seqtool.config import MAX_INPUT_LENGTH, ServerLimits
from seqtool.config import SamplingConfig as S
from seqtool.config import SearchConfig as B

MAX_BEAM = 32
MAX_OUTPUT_LENGTH = 512  # pieces per generated sample
DISCARD_AT_MOST = 64_000_000  # bytes of a refused body read and dropped; more: hang up
BATCH_TEXTS = 512  # texts answered together in one batch at most


Limits = ServerLimits  # the server's limits, declared once as options (seqtool.config)


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


class _Waiting:
    def __init__(self, key: Any, texts: list[str]):
        self.key, self.texts = key, texts
        self.done = threading.Event()
        self.result: list[Any] | None = None
        self.error: BaseException | None = None


class Batcher:
    """Answers `fn(key, texts)` for concurrent callers, in batches of the callers that wait
    at the same moment with the same `key`; `lock` is the model's (one batch at a time)."""

    def __init__(self, fn, lock: threading.Lock, max_texts: int = BATCH_TEXTS):
        self.fn, self.lock, self.max_texts = fn, lock, max_texts
        self.queue: list[_Waiting] = []
        self.queue_lock = threading.Lock()

    def __call__(self, key: Any, texts: list[str]) -> list[Any]:
        me = _Waiting(key, texts)
        with self.queue_lock:
            self.queue.append(me)
        while not me.done.is_set():
            with self.lock:  # whoever holds the model answers what waits, maybe not itself
                if not me.done.is_set():
                    self._answer(self._take(me.key))
        if me.error is not None:
            raise me.error
        return me.result

    def _take(self, key: Any) -> list[_Waiting]:
        with self.queue_lock:
            batch, size, rest = [], 0, []
            for w in self.queue:
                if w.key == key and (not batch or size + len(w.texts) <= self.max_texts):
                    batch.append(w)
                    size += len(w.texts)
                else:
                    rest.append(w)
            self.queue = rest
        return batch

    def _answer(self, batch: list[_Waiting]) -> None:
        try:
            results = self.fn(batch[0].key, [t for w in batch for t in w.texts])
            start = 0
            for w in batch:
                w.result = results[start:start + len(w.texts)]
                start += len(w.texts)
        except BaseException as e:  # noqa: BLE001 - handed to every caller of the batch
            for w in batch:
                w.error = e
        for w in batch:
            w.done.set()


class Service:
    """The loaded models and the answer to each endpoint, as JSON-ready records."""

    def __init__(self, models: dict[str, Any], limits: Limits | None = None):
        self.models, self.limits = models, limits or Limits()
        self.locks = {task: threading.Lock() for task in models}
        self.batchers: dict[str, Batcher] = {}
        if "classify" in models:
            c = models["classify"]
            self.batchers["classify"] = Batcher(
                lambda key, texts: [r.to_record() for r in c.classify(texts, key)],
                self.locks["classify"])
            self.batchers["embed"] = Batcher(
                lambda key, texts: [[round(x, 5) for x in v] for v in
                                    c.embed(texts, key).tolist()], self.locks["classify"])
        if "translate" in models:
            t = models["translate"]
            self.batchers["translate"] = Batcher(
                lambda key, texts: [r.to_record(attention=key[-1]) for r in
                                    t.translate(texts, *key[:-1], attention=key[-1])],
                self.locks["translate"])

    def describe(self) -> list[dict[str, Any]]:
        return [d for m in self.models.values() for d in m.describe_all()]

    def _model(self, task: str):
        if task not in self.models:
            raise BadRequest(f"no {task} model is loaded (see GET /models)", 404)
        return self.models[task]

    def classify(self, body: dict) -> list[dict]:
        self._model("classify")
        texts, max_length = self._texts(body, set())
        return self.batchers["classify"](max_length, texts)

    def embed(self, body: dict) -> list[dict]:
        self._model("classify")
        texts, max_length = self._texts(body, set())
        vectors = self.batchers["embed"](max_length, texts)
        return [{"text": t, "vector": v} for t, v in zip(texts, vectors)]

    def translate(self, body: dict) -> list[dict]:
        self._model("translate")
        texts, max_length = self._texts(body, {"beam", "n_best", "length_penalty",
                                               "max_length_ratio", "attention", "precision"})
        beam = _int(body, "beam", B.beam, 1, MAX_BEAM)
        n_best = _int(body, "n_best", B.n_best, 1, beam)
        length_penalty = _number(body, "length_penalty", B.length_penalty, 0)
        ratio = _number(body, "max_length_ratio", B.max_length_ratio, 0, open_min=True,
                        most=10)
        attention = _get(body, "attention", False, bool)
        precision = _get(body, "precision", B.precision, str)
        if precision not in ("fp32", "bf16"):
            raise BadRequest("'precision' must be \"fp32\" or \"bf16\"")
        key = (beam, length_penalty, n_best, ratio, max_length, B.batch_size, precision,
               attention)
        return self.batchers["translate"](key, texts)

    def generate(self, body: dict) -> list[dict]:
        self._model("generate")
        _known(body, {"label", "n", "prompt", "seed", "temperature", "top_k", "top_p",
                      "max_output_length", "guidance", "lexicon"})
        if "label" not in body:
            raise BadRequest("missing field 'label'")
        label = _get(body, "label", "", str)
        n = _int(body, "n", 1, 1, self.limits.max_samples)
        prompt = _get(body, "prompt", "", str)
        if len(prompt) > self.limits.max_chars:
            raise BadRequest(f"'prompt' is longer than {self.limits.max_chars} characters",
                             413)
        seed = _int(body, "seed", 0, -2**63, 2**63 - 1)
        options = dict(
            temperature=_number(body, "temperature", S.temperature, 0),
            top_k=_int(body, "top_k", S.top_k, 0, 1_000_000),
            top_p=_number(body, "top_p", S.top_p, 0, open_min=True, most=1),
            max_output_length=_int(body, "max_output_length", S.max_output_length, 1,
                                   MAX_OUTPUT_LENGTH),
            guidance=_number(body, "guidance", S.guidance, 0),
            lexicon=_get(body, "lexicon", S.lexicon, str))
        if options["lexicon"] not in ("model", "none"):  # a server reads no file a client names
            raise BadRequest("'lexicon' must be \"model\" or \"none\"")
        with self.locks["generate"]:  # the API hands a label of another shipped generator on
            results = self.models["generate"].generate(label, n, prompt, seed, **options)
        return [r.to_record() for r in results]

    def _texts(self, body: dict, other_fields: set[str]) -> tuple[list[str], int]:
        _known(body, {"texts", "max_input_length"} | other_fields)
        if "texts" not in body:
            raise BadRequest("missing field 'texts' (a list of strings)")
        texts = body["texts"]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise BadRequest("'texts' must be a list of strings")
        if not texts:
            raise BadRequest("'texts' is empty")
        if len(texts) > self.limits.max_texts:
            raise BadRequest(f"too many texts: {len(texts)} (at most {self.limits.max_texts} "
                             "a request)", 413)
        for i, t in enumerate(texts):
            if len(t) > self.limits.max_chars:
                raise BadRequest(f"texts[{i}] is longer than {self.limits.max_chars} characters",
                                 413)
        return texts, _int(body, "max_input_length", MAX_INPUT_LENGTH, 0, 1_000_000)


def _known(body: dict, fields: set[str]) -> None:
    unknown = sorted(set(body) - fields)
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r} (known: {', '.join(sorted(fields))})")


def _get(body: dict, name: str, default: Any, kind: type) -> Any:
    value = body.get(name, default)
    if kind is not bool and isinstance(value, bool) or not isinstance(value, kind):
        what = {str: "a string", bool: "true or false", int: "an integer"}[kind]
        raise BadRequest(f"'{name}' must be {what}")
    return value


def _int(body: dict, name: str, default: int, least: int, most: int) -> int:
    value = _get(body, name, default, int)
    if not least <= value <= most:
        raise BadRequest(f"'{name}' must be from {least} to {most}, not {value}")
    return value


def _number(body: dict, name: str, default: float, least: float, open_min: bool = False,
            most: float = math.inf) -> float:
    value = body.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadRequest(f"'{name}' must be a number")
    try:
        value = float(value)
    except OverflowError:
        raise BadRequest(f"'{name}' is too large") from None
    if not math.isfinite(value) or value < least or (open_min and value == least) \
            or value > most:
        bound = f"above {least}" if open_min else f"at least {least}"
        bound += f" and at most {most}" if math.isfinite(most) else ""
        raise BadRequest(f"'{name}' must be {bound}, not {value}")
    return float(value)
