"""The HTTP side of `seqtool serve`: a handler per request, a server that counts the
requests in flight so that a signal lets them finish, and `run`."""

from __future__ import annotations

import json
import signal
import sys
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from seqtool.errors import SeqtoolError
from seqtool.report import json_line
from seqtool.serve.service import DISCARD_AT_MOST, BadRequest, Limits, Service


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def to_json(value: Any) -> bytes:
    """Strict JSON (a non-finite number is null), one line."""
    return (json_line(value) + "\n").encode("utf-8")


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
        except SeqtoolError as e:  # an unknown label, a model that cannot answer this
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
        if int(length) > self.server.service.limits.max_body:
            self._discard()
            limit = self.server.service.limits.max_body
            raise BadRequest(f"request body over {limit} bytes", 413)
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
