"""`seqtool serve`: the loaded models answer HTTP requests with JSON.

Built on the standard library's `http.server.ThreadingHTTPServer` (a thread per connection):
no new dependency, and it is meant for the loopback address (127.0.0.1 by default), not for
the open internet. Each answer is {"results": [...]}, every record the CLI's `--format jsonl`
record for the same input; errors are {"error": "one line"} with a 4xx status.

Thread safety: each model has one lock, so a model runs one batch at a time. Requests that
arrive while a model is busy wait in a queue and are then answered together in one batch
(classify, embed, translate with the same options), each request getting its own slice:
batching costs nothing when the server is idle and happens exactly when it helps.
Generation is not batched: its samples depend only on the request's own seed, as the CLI's.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from seqtool.errors import SeqtoolError

MAX_BODY = 1_000_000  # bytes per request body
MAX_TEXTS = 256  # texts per request
MAX_CHARS = 10_000  # characters per text (and per prompt)
MAX_SAMPLES = 100  # n of /generate
MAX_BEAM = 32
MAX_OUTPUT_LENGTH = 512  # pieces per generated sample
DISCARD_AT_MOST = 64_000_000  # bytes of a refused body read and dropped; more: hang up
BATCH_TEXTS = 512  # texts answered together in one batch at most


@dataclass
class Limits:
    body: int = MAX_BODY
    texts: int = MAX_TEXTS
    chars: int = MAX_CHARS
    samples: int = MAX_SAMPLES


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
        self._others: dict[str, Any] = {}  # other shipped generators, by name
        self._other_labels: dict[str, str] | None = None  # label -> shipped generator name

    def describe(self) -> list[dict[str, Any]]:
        return [m.describe() for m in self.models.values()] + [
            m.describe() for m in list(self._others.values())]

    def _model(self, task: str):
        if task not in self.models:
            raise BadRequest(f"no {task} model is loaded (see GET /models)", 404)
        return self.models[task]

    def classify(self, body: dict) -> list[dict]:
        self._model("classify")
        texts, max_length = self._texts(body, {"max_length"})
        return self.batchers["classify"](max_length, texts)

    def embed(self, body: dict) -> list[dict]:
        self._model("classify")
        texts, max_length = self._texts(body, {"max_length"})
        vectors = self.batchers["embed"](max_length, texts)
        return [{"text": t, "vector": v} for t, v in zip(texts, vectors)]

    def translate(self, body: dict) -> list[dict]:
        self._model("translate")
        texts, max_length = self._texts(body, {"beam", "n_best", "length_penalty",
                                               "max_length_ratio", "attention", "precision"})
        beam = _int(body, "beam", 5, 1, MAX_BEAM)
        n_best = _int(body, "n_best", 1, 1, beam)
        length_penalty = _number(body, "length_penalty", 1.0, 0)
        ratio = _number(body, "max_length_ratio", 2.0, 0, open_min=True, most=10)
        attention = _get(body, "attention", False, bool)
        precision = _get(body, "precision", "fp32", str)
        if precision not in ("fp32", "bf16"):
            raise BadRequest("'precision' must be \"fp32\" or \"bf16\"")
        key = (beam, length_penalty, n_best, ratio, max_length, 64, precision, attention)
        return self.batchers["translate"](key, texts)

    def generate(self, body: dict) -> list[dict]:
        self._model("generate")
        _known(body, {"label", "n", "prompt", "seed", "temperature", "top_k", "top_p",
                      "max_length", "guidance", "lexicon"})
        if "label" not in body:
            raise BadRequest("missing field 'label'")
        label = _get(body, "label", "", str)
        n = _int(body, "n", 1, 1, self.limits.samples)
        prompt = _get(body, "prompt", "", str)
        if len(prompt) > self.limits.chars:
            raise BadRequest(f"'prompt' is longer than {self.limits.chars} characters", 413)
        seed = _int(body, "seed", 0, -2**63, 2**63 - 1)
        options = dict(
            temperature=_number(body, "temperature", 0.8, 0),
            top_k=_int(body, "top_k", 0, 0, 1_000_000),
            top_p=_number(body, "top_p", 1.0, 0, open_min=True, most=1),
            max_output_length=_int(body, "max_length", 60, 1, MAX_OUTPUT_LENGTH),
            guidance=_number(body, "guidance", 1.0, 0),
            lexicon=_get(body, "lexicon", "model", str))
        if options["lexicon"] not in ("model", "none"):  # a server reads no file a client names
            raise BadRequest("'lexicon' must be \"model\" or \"none\"")
        task, model = self._generator_for(label)
        with self.locks[task]:
            results = model.generate(label, n, prompt, seed, **options)
        return [r.to_record() for r in results]

    def _generator_for(self, label: str) -> tuple[str, Any]:
        """The generator that knows `label`: the loaded one, or (when it is the shipped
        default, as the CLI does) the other shipped generator that knows it, loaded once.
        Done here, not by LoadedGenerator._for_label, which swaps the handle's model for
        good (a later request for the first generator's labels would then fail)."""
        primary = self.models["generate"]
        if label in primary.labels:
            return "generate", primary
        if primary.name is None:
            with self.locks["generate"]:
                if self._other_labels is None:
                    self._other_labels = _other_generator_labels()
                name = self._other_labels.get(label)
                if name is not None:
                    if name not in self._others:
                        import seqtool

                        self._others[name] = seqtool.load("generate", name, primary.device)
                        self.locks[name] = threading.Lock()
                    return name, self._others[name]
        known = list(primary.labels) + sorted(set(self._other_labels or ()))
        raise BadRequest(f"unknown label {label!r} (known: {', '.join(known)})")

    def _texts(self, body: dict, other_fields: set[str]) -> tuple[list[str], int]:
        _known(body, {"texts", "max_length"} | other_fields)
        if "texts" not in body:
            raise BadRequest("missing field 'texts' (a list of strings)")
        texts = body["texts"]
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            raise BadRequest("'texts' must be a list of strings")
        if not texts:
            raise BadRequest("'texts' is empty")
        if len(texts) > self.limits.texts:
            raise BadRequest(f"too many texts: {len(texts)} (at most {self.limits.texts} "
                             "a request)", 413)
        for i, t in enumerate(texts):
            if len(t) > self.limits.chars:
                raise BadRequest(f"texts[{i}] is longer than {self.limits.chars} characters",
                                 413)
        return texts, _int(body, "max_length", 512, 0, 1_000_000)


def _other_generator_labels() -> dict[str, str]:
    from seqtool.checkpoint import Checkpoint
    from seqtool.shipped import DEFAULT_MODELS, SHIPPED_MODELS, checkpoints_folder

    labels: dict[str, str] = {}
    for name, file in SHIPPED_MODELS["generate"].items():
        path = checkpoints_folder() / file
        if file != DEFAULT_MODELS["generate"] and path.is_file():
            for label in Checkpoint.load(path).labels:
                labels.setdefault(label, name)
    return labels


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


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(value: Any) -> Any:
    """`value` with NaN and infinities as null, so the answer is valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def to_json(value: Any) -> bytes:
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(value), ensure_ascii=False, allow_nan=False)
    return (text + "\n").encode("utf-8")


ROUTES = {"/classify": "classify", "/embed": "embed", "/generate": "generate",
          "/translate": "translate"}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a client may send many requests on one socket
    server_version = "seqtool-serve"
    default_request_version = "HTTP/1.0"  # a malformed request still gets a status line
    timeout = 60  # seconds a connection may stay silent (a stalled client frees its thread)
    server: Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._send(200, {"status": "ok"})
        elif path == "/models":
            self._send(200, {"models": self.server.service.describe()})
        elif path in ROUTES:
            self._send(405, {"error": f"use POST for {path}"}, allow="POST")
        else:
            self._send(404, {"error": f"no such endpoint: {path[:100]}"})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        if path not in ROUTES:
            if path in ("/health", "/models"):
                self._send(405, {"error": f"use GET for {path}"}, allow="GET", discard=True)
            else:
                self._send(404, {"error": f"no such endpoint: {path[:100]}"}, discard=True)
            return
        if not self.server.begin():
            self._send(503, {"error": "the server is shutting down"})
            self.close_connection = True
            return
        try:
            body = self._body()
            results = getattr(self.server.service, ROUTES[path])(body)
            self._send(200, {"results": results})
        except BadRequest as e:
            self._send(e.status, {"error": str(e)})
        except SeqtoolError as e:
            self._send(400, {"error": " ".join(str(e).split())})
        except Exception as e:  # noqa: BLE001 - the server lives on; the client learns why
            print(f"seqtool serve: {self.command} {path}: {type(e).__name__}: {e}",
                  file=sys.stderr, flush=True)
            self._send(500, {"error": f"internal error: {type(e).__name__}"})
        finally:
            self.server.end()

    def do_PUT(self) -> None:
        self._not_allowed()

    do_DELETE = do_PATCH = do_PUT

    def _not_allowed(self) -> None:
        path = self.path.split("?", 1)[0]
        allow = "POST" if path in ROUTES else "GET"
        self._send(405, {"error": f"method {self.command} not allowed"}, allow=allow,
                   discard=True)

    def _discard(self) -> None:
        """Read and drop the body (a socket closed with unread data may lose the answer)."""
        length = (self.headers.get("Content-Length") or "").strip()
        if not length.isdigit() or int(length) > DISCARD_AT_MOST:
            self.close_connection = True
            return
        left = int(length)
        while left > 0:
            chunk = self.rfile.read(min(left, 1 << 16))
            if not chunk:
                self.close_connection = True
                return
            left -= len(chunk)

    def _body(self) -> dict:
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            raise BadRequest("a Content-Length header is required", 411)
        if not length.strip().isdigit():
            self.close_connection = True
            raise BadRequest("bad Content-Length header")
        if int(length) > self.server.service.limits.body:
            self._discard()
            raise BadRequest(f"request body over {self.server.service.limits.body} bytes", 413)
        raw = self.rfile.read(int(length))
        try:
            body = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
        except (UnicodeDecodeError, ValueError) as e:
            message = " ".join(str(e).split())
            raise BadRequest(f"the body is not valid JSON: {message[:200]}") from None
        except RecursionError:
            raise BadRequest("the body is not valid JSON: nested too deeply") from None
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object")
        return body

    def _send(self, status: int, value: dict, allow: str | None = None,
              discard: bool = False) -> None:
        if discard:
            self._discard()
        data = to_json(value)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        if allow:
            self.send_header("Allow", allow)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None):
        """Errors http.server finds itself (bad request line, headers too long) as JSON."""
        self.close_connection = True
        try:
            self._send(code, {"error": message or HTTPStatus(code).phrase})
        except (OSError, ValueError):
            pass

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)


class Server(ThreadingHTTPServer):
    """Counts the requests in flight, so a shutdown can let them finish."""

    daemon_threads = True  # idle keep-alive connections do not hold the process at exit

    def __init__(self, address: tuple[str, int], service: Service, verbose: bool = False):
        self.service, self.verbose = service, verbose
        self.in_flight = 0
        self.stopping = False
        self.idle = threading.Condition()
        super().__init__(address, Handler)

    def begin(self) -> bool:
        with self.idle:
            if self.stopping:
                return False
            self.in_flight += 1
            return True

    def end(self) -> None:
        with self.idle:
            self.in_flight -= 1
            self.idle.notify_all()

    def drain(self, timeout: float | None = None) -> bool:
        """Refuse new requests and wait for those in flight; False if some are still going."""
        with self.idle:
            self.stopping = True
            return self.idle.wait_for(lambda: self.in_flight == 0, timeout)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


def build_server(models: dict[str, Any], host: str = "127.0.0.1", port: int = 0,
                 limits: Limits | None = None, verbose: bool = False) -> Server:
    """A server for loaded models ({task: seqtool.load(task, ...)}); port 0 = any free one.
    Call `serve_forever()` (e.g. in a thread), then `shutdown()`, `drain()` and
    `server_close()`."""
    return Server((host, port), Service(models, limits), verbose)


def load_models(choices: dict[str, str | None], device: str = "auto") -> dict[str, Any]:
    """{task: model} -> {task: loaded model}, in the order of seqtool's tasks."""
    import seqtool

    return {task: seqtool.load(task, choices[task], device)
            for task in ("classify", "generate", "translate") if task in choices}


def run(models: dict[str, Any], host: str = "127.0.0.1", port: int = 8765,
        limits: Limits | None = None, verbose: bool = False) -> int:
    """Serve until SIGINT or SIGTERM, let the requests in flight finish, and return the exit
    code: 130 for SIGINT (Ctrl-C), 143 for SIGTERM."""
    try:
        server = build_server(models, host, port, limits, verbose)
    except OSError as e:
        raise SeqtoolError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    stop = threading.Event()
    code = [0]

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: do not wait any longer
            print("seqtool serve: stopped", file=sys.stderr, flush=True)
            raise SystemExit(128 + signum)
        code[0] = 128 + signum
        stop.set()

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    loop = threading.Thread(target=server.serve_forever, name="seqtool-serve", daemon=True)
    loop.start()
    names = ", ".join(f"{task}: {Path(m.path).name}" for task, m in models.items())
    print(f"seqtool serve: listening on {server.url} ({names})", file=sys.stderr, flush=True)
    if host not in ("127.0.0.1", "localhost", "::1"):
        print(f"Warning: {host} is not the loopback address; whoever reaches it can use the "
              "models (there is no authentication)", file=sys.stderr, flush=True)
    try:
        while not stop.wait(0.5):
            pass
        print("seqtool serve: stopping; answering the requests in flight", file=sys.stderr,
              flush=True)
        server.shutdown()  # no new connections
        server.drain()  # open connections get 503; requests in flight finish
        server.server_close()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return code[0]


if __name__ == "__main__":
    from seqtool.cli.serve import serve

    serve.main(prog_name="python -m seqtool.serve")
