"""uvicorn under `seqtool serve`: the socket, the time a client has to send its request,
the signals and the exit code, and `Running`, a server in a background thread."""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from seqtool.config import ServerLimits
from seqtool.errors import SeqtoolError
from seqtool.serve.app import READ_DEADLINE, build_app
from seqtool.serve.service import Service, model_name

BACKLOG = 2048  # connections the kernel holds before the server accepts them
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open


def load_models(choices: Any, device: str = "auto",
                backend: str = "auto") -> dict[str, dict[str, Any]]:
    """{task: model, or a list of models, or {name: model}} -> {task: {name: loaded model}},
    in the order of seqtool's tasks; a model is a shipped name, a checkpoint path, or None
    (the task's shipped default), named as `model_name` says unless named."""
    import seqtool

    loaded: dict[str, dict[str, Any]] = {}
    for task in ("classify", "generate", "translate"):
        if task not in choices:
            continue
        wanted = choices[task]
        if not isinstance(wanted, dict):
            wanted = {model_name(m): m for m in (wanted if isinstance(wanted, list)
                                                 else [wanted])}
        loaded[task] = {name: seqtool.load(task, m, device, backend=backend)
                        for name, m in wanted.items()}
    return loaded


def as_named(models: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{task: loaded model} (the older form) or {task: {name: loaded model}}."""
    return {task: m if isinstance(m, dict) else {model_name(m.name): m}
            for task, m in models.items()}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(BACKLOG)
    except OSError as e:
        raise SeqtoolError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    return sock


def read_deadline_protocol(seconds: float) -> type:
    """uvicorn's HTTP/1.1 protocol, but a request must come whole within `seconds` of the
    connection (or of the previous answer): a client that sends one byte now and then gets
    408 and the connection closes. Its line and headers are timed here; the app reads the
    body by the deadline this puts in the request's scope."""

    class ReadDeadline(H11Protocol):
        timer: Any = None
        armed_at = 0.0

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._arm()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.timer is not None and self.conn.their_state is not h11.IDLE:
                if self.cycle is not None:
                    self.cycle.scope[READ_DEADLINE] = self.armed_at + seconds  # type: ignore
                self._disarm()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            super().connection_lost(exc)

        def _arm(self) -> None:
            self._disarm()
            self.armed_at = self.loop.time()
            self.timer = self.loop.call_later(seconds, self._too_slow)

        def _disarm(self) -> None:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None

        def _too_slow(self) -> None:
            self.timer = None
            if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
                return
            body = (b'{"error": "the request was not received within %g s"}\n' % seconds)
            self.transport.write(b"HTTP/1.1 408 Request Timeout\r\nContent-Type: application/"
                                 b"json; charset=utf-8\r\nContent-Length: %d\r\nConnection: "
                                 b"close\r\n\r\n%s" % (len(body), body))
            self.transport.close()

    return ReadDeadline


def uvicorn_config(app: Any, limits: ServerLimits, verbose: bool) -> uvicorn.Config:
    line = {"format": "seqtool serve: %(message)s"}
    logging = {"version": 1, "disable_existing_loggers": False, "formatters": {"line": line},
               "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "line",
                                       "stream": "ext://sys.stderr"}},
               "loggers": {"uvicorn.error": {"handlers": ["stderr"], "propagate": False,
                                             "level": "INFO" if verbose else "WARNING"},
                           "uvicorn.access": {"handlers": ["stderr"], "propagate": False,
                                              "level": "INFO"}}}
    return uvicorn.Config(
        app, http=read_deadline_protocol(limits.read_timeout), ws="none", lifespan="off",
        loop="asyncio", log_config=logging, access_log=verbose, server_header=False,
        limit_concurrency=limits.max_connections, backlog=BACKLOG,
        timeout_keep_alive=KEEP_ALIVE, h11_max_incomplete_event_size=64 * 1024,
        # the requests in flight end by their deadline; this is the last resort
        timeout_graceful_shutdown=int(limits.request_timeout + limits.read_timeout) + 5)


class Server(uvicorn.Server):
    """uvicorn's server, whose signals end it with an exit code: the first SIGINT or
    SIGTERM stops new connections and lets the requests in flight finish; a second answers
    them 503 at their next turn. `exit_code` is 128 + the first signal (130, 143)."""

    def __init__(self, config: uvicorn.Config, service: Service):
        super().__init__(config)
        self.service = service
        self.signals: list[int] = []

    @property
    def exit_code(self) -> int:
        return 128 + self.signals[0] if self.signals else 0

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self.on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def on_signal(self, signum: int, _frame: Any) -> None:
        # os.write, not print: a handler that writes to a stream the main thread is writing
        # to would raise; and no lock is taken here
        self.signals.append(signum)
        if len(self.signals) == 1:
            os.write(2, b"seqtool serve: stopping; answering the requests in flight\n")
            self.should_exit = True
        else:
            os.write(2, b"seqtool serve: stopping now; requests in flight get 503\n")
            for worker in self.service.all_workers():
                worker.stop(abort=True)


def describe_models(service: Service) -> str:
    return ", ".join(f"{task}: {', '.join(workers)}" for task, workers in
                     service.workers.items())


def run(models: dict[str, Any], host: str = "127.0.0.1", port: int = 8765,
        limits: ServerLimits | None = None, verbose: bool = False,
        token: str | None = None) -> int:
    """Serve until SIGINT or SIGTERM, answer the requests in flight, and return the exit
    code: 130 for SIGINT (Ctrl-C), 143 for SIGTERM. The bound address goes to stderr
    ("seqtool serve: listening on http://HOST:PORT ...")."""
    limits = limits or ServerLimits()
    sock = listen(host, port)
    service = Service(as_named(models), limits)
    server = Server(uvicorn_config(build_app(service, token), limits, verbose), service)
    bound_host, bound_port = sock.getsockname()[:2]
    shown = f"[{bound_host}]" if ":" in bound_host else bound_host
    try:
        with server.capture_signals():  # from the line on, a signal ends the server cleanly
            print(f"seqtool serve: listening on http://{shown}:{bound_port} "
                  f"({describe_models(service)})", file=sys.stderr, flush=True)
            server.run(sockets=[sock])
    finally:
        service.close(abort=True)  # nobody waits for an answer any more
        sock.close()
    return server.exit_code


def serve(choices: Any, device: str = "auto", backend: str = "auto", **options: Any) -> int:
    """`seqtool serve`: load the models (`load_models`), then `run` with `options`. A signal
    while the models load ends the process at once, with the same exit code (130, 143)."""

    def stop_loading(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    previous = {s: signal.signal(s, stop_loading) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        models = load_models(choices, device, backend)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return run(models, **options)


class Running:
    """A server answering in a background thread (tests, benchmarks, a notebook):
    `with Running(models) as server: ... server.url ...`."""

    def __init__(self, models: dict[str, Any], host: str = "127.0.0.1", port: int = 0,
                 limits: ServerLimits | None = None, token: str | None = None,
                 verbose: bool = False):
        self.limits = limits or ServerLimits()
        self.socket = listen(host, port)
        self.service = Service(as_named(models), self.limits)
        config = uvicorn_config(build_app(self.service, token), self.limits, verbose)
        self.server = Server(config, self.service)
        self.port = self.socket.getsockname()[1]
        self.url = f"http://{host}:{self.port}"
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]},
                                       name="seqtool-serve", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 60) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.service.close(abort=True, timeout=timeout)
        self.socket.close()

    def __enter__(self) -> Running:
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.stop()
