"""The HTTP side of `seqtool serve`: a Starlette application over the `Service`.

Every answer is one line of JSON: {"results": [...]} or {"error": "..."}. A body is read
whole within `--read-timeout` (408 otherwise) and at most `--max-body` bytes (413), parsed
as strict JSON (no NaN), and validated by the endpoint's request model (`schema`); then the
request waits for its worker, or for its client to leave, which drops it from the queue."""

from __future__ import annotations

import asyncio
import hmac
import json
import sys
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from seqtool import __version__
from seqtool.report import json_line
from seqtool.serve.schema import RequestError, parse
from seqtool.serve.service import Service

ENDPOINTS = ("classify", "embed", "generate", "translate")
READ_DEADLINE = "seqtool.read_deadline"  # set in the scope by seqtool.serve.server's protocol
CLOSE = {"Connection": "close"}  # the rest of the request is not read: hang up after answering


def json_response(status: int, value: dict, headers: dict[str, str] | None = None) -> Response:
    """Strict JSON (a non-finite number is null), one line."""
    return Response((json_line(value) + "\n").encode("utf-8"), status,
                    headers=headers, media_type="application/json; charset=utf-8")


def error_response(error: RequestError) -> Response:
    return json_response(error.status, {"error": str(error)}, error.headers)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


async def read_json(request: Request, max_body: int, read_timeout: float) -> Any:
    """The body as JSON: whole within `read_timeout` seconds, at most `max_body` bytes."""
    length = request.headers.get("content-length")
    chunked = "chunked" in request.headers.get("transfer-encoding", "").lower()
    if length is None and not chunked:
        raise RequestError("a Content-Length header is required", 411, CLOSE)
    if length is not None and int(length) > max_body:  # h11 checked it is a number
        raise RequestError(f"request body over {max_body} bytes", 413, CLOSE)

    async def read() -> bytes:
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body:
                raise RequestError(f"request body over {max_body} bytes", 413, CLOSE)
        return bytes(body)

    deadline = request.scope.get(READ_DEADLINE)  # counted from the request's first byte
    left = read_timeout if deadline is None else \
        max(deadline - asyncio.get_running_loop().time(), 0.05)  # a body already in passes
    try:
        raw = await asyncio.wait_for(read(), left)
    except asyncio.TimeoutError:
        raise RequestError(f"the request was not received within {read_timeout:g} s", 408,
                           CLOSE) from None
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError) as e:
        message = " ".join(str(e).split())
        raise RequestError(f"the body is not valid JSON: {message[:200]}") from None
    except RecursionError:
        raise RequestError("the body is not valid JSON: nested too deeply") from None


async def until_disconnected(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


def build_app(service: Service, token: str | None = None) -> Any:
    """The ASGI application: Starlette's routes, behind a bearer token when `token` is
    given (every path but /health)."""
    limits = service.limits

    async def health(_request: Request) -> Response:
        return json_response(200, {"status": "ok"})

    async def models(_request: Request) -> Response:
        return json_response(200, {"models": service.describe()})

    async def openapi(_request: Request) -> Response:
        return json_response(200, openapi_document(service))

    def endpoint(name: str):
        async def answer(request: Request) -> Response:
            try:
                body = await read_json(request, limits.max_body, limits.read_timeout)
                job = service.submit(name, parse(service.requests[name], body))
                waiting = asyncio.wrap_future(job.future)
                gone = asyncio.ensure_future(until_disconnected(request))
                try:
                    await asyncio.wait({waiting, gone}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    gone.cancel()
                if not waiting.done():  # the client left: drop its work, answer nobody
                    job.leave()
                    return json_response(499, {"error": "the client went away"})
                return json_response(200, {"results": waiting.result()})
            except RequestError as e:
                return error_response(e)
            except ClientDisconnect:
                return json_response(499, {"error": "the client went away"})
            except Exception as e:  # noqa: BLE001 - the server lives on; the client learns why
                print(f"seqtool serve: POST /{name}: {type(e).__name__}: {e}", file=sys.stderr,
                      flush=True)
                return json_response(500, {"error": f"internal error: {type(e).__name__}"})

        return answer

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        path = request.url.path[:100]
        message = {404: f"no such endpoint: {path}",
                   405: f"method {request.method} not allowed for {path}"}.get(
                       error.status_code, error.detail)
        return json_response(error.status_code, {"error": message}, error.headers)

    routes = [Route("/health", health, methods=["GET"]),
              Route("/models", models, methods=["GET"]),
              Route("/openapi.json", openapi, methods=["GET"]),
              *(Route(f"/{name}", endpoint(name), methods=["POST"]) for name in ENDPOINTS)]
    app = Starlette(routes=routes, exception_handlers={HTTPException: http_error})
    return BearerToken(app, token) if token else app


class BearerToken:
    """Every request but GET /health needs `Authorization: Bearer TOKEN` (401 otherwise),
    compared in constant time."""

    def __init__(self, app: Any, token: str):
        self.app, self.expected = app, f"Bearer {token}".encode()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] != "/health":
            given = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
            if not hmac.compare_digest(given, self.expected):
                response = json_response(401, {"error": "this server needs an "
                                               "'Authorization: Bearer TOKEN' header"},
                                         {"WWW-Authenticate": "Bearer", **CLOSE})
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)


def openapi_document(service: Service) -> dict[str, Any]:
    """An OpenAPI 3.1 description: each endpoint's request schema is its pydantic model's."""
    error = {"description": "one line: {\"error\": ...}"}
    paths: dict[str, Any] = {
        "/health": {"get": {"responses": {"200": {"description": "{\"status\": \"ok\"}"}}}},
        "/models": {"get": {"responses": {"200": {
            "description": "{\"models\": [{task, name, labels, default}]}"}}}}}
    for name in ENDPOINTS:
        paths[f"/{name}"] = {"post": {
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": service.requests[name].model_json_schema()}}},
            "responses": {"200": {"description": "{\"results\": [a record per input]}"},
                          **{str(s): error for s in (400, 401, 404, 408, 411, 413, 503, 504)}}}}
    return {"openapi": "3.1.0", "info": {"title": "seqtool serve", "version": __version__},
            "paths": paths}
