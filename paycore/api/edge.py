"""Edge concerns: request ids, error bodies, body size, a per-merchant rate limit, and
the shadow-traffic marker (:data:`SHADOW_HEADER`).

Every error leaves as ``{"error": {"code", "message", "request_id"}}``; nothing
from a stack trace, a driver or SQL ever reaches a response.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from urllib.parse import unquote

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stability.errors import DependencyFailed, RateLimited, StabilityError
from stability.limits import MemoryLimitStore

from ..errors import InvalidCharacters, MalformedRequest, PayCoreError
from ..models import has_hostile_chars
from ..tracing import server_span, valid_request_id
from .schemas import INVALID_CHARACTERS

log = logging.getLogger("paycore.api")
#: the largest request body, however it arrives (Content-Length or chunked): 413 beyond
MAX_BODY_BYTES = 64 * 1024
#: ASCII control bytes in a header value or raw query (HTAB is allowed whitespace there)
_CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_HTTP_CODES = {
    400: "malformed_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    503: "unavailable",
}


#: ``X-Paywatch-Shadow: 1`` marks a request as shadow (pressure-test) traffic; ``0`` or no
#: header is real traffic; any other value is refused with 400 ``invalid_shadow_header``.
SHADOW_HEADER = "X-Paywatch-Shadow"
#: channel callbacks of shadow orders come back to ``...?shadow=1`` (channels cannot be
#: asked to send our header; the notify URL is ours to choose)
SHADOW_QUERY = "shadow"
_SHADOW_VALUES = {"1": True, "0": False}


class InvalidShadowMarker(MalformedRequest):
    """The shadow header (or a callback's ``shadow`` parameter) is neither 1 nor 0."""

    code = "invalid_shadow_header"


def is_shadow(request: Request, *, allow_query: bool = False) -> bool:
    """True when ``request`` is marked as shadow traffic; :class:`InvalidShadowMarker`
    (400) for a value other than ``1``/``0``, or for repeated markers that disagree."""
    values = [v.strip() for v in request.headers.getlist(SHADOW_HEADER)]
    if allow_query:
        values += [v.strip() for v in request.query_params.getlist(SHADOW_QUERY)]
    if not values:
        return False
    if len(set(values)) > 1 or values[0] not in _SHADOW_VALUES:
        raise InvalidShadowMarker(f"{SHADOW_HEADER} must be 1 (shadow traffic) or 0 (real)")
    return _SHADOW_VALUES[values[0]]


def request_id(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", "-"))


def error_response(
    request: Request, status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "request_id": request_id(request)}}
    return JSONResponse(body, status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Add request-id and body-size middleware and the error handlers to ``app``."""

    app.add_middleware(EdgeMiddleware)

    @app.exception_handler(PayCoreError)
    async def _paycore(request: Request, exc: PayCoreError) -> JSONResponse:
        if exc.http_status >= 500:
            log.warning("%s (request %s): %s", exc.code, request_id(request), exc.message)
        return error_response(request, exc.http_status, exc.code, exc.message)

    @app.exception_handler(StabilityError)
    async def _stability(request: Request, exc: StabilityError) -> JSONResponse:
        if isinstance(exc, RateLimited):
            return _rate_limited(request, exc)
        if isinstance(exc, DependencyFailed):
            log.warning(
                "dependency %s failed fast: %s (request %s)",
                exc.resource,
                exc.reason,
                request_id(request),
            )
            return error_response(
                request, 503, exc.public_code, f"{exc.resource} is unavailable ({exc.reason})"
            )
        return error_response(request, exc.http_status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") in ("json_invalid", "model_attributes_type") for e in errors) or (
            errors and errors[0].get("loc") == ("body",)
        ):
            return error_response(request, 400, "malformed_request", "body must be a JSON object")
        hostile = next((e for e in errors if e.get("type") == INVALID_CHARACTERS), None)
        if hostile is not None:
            where = ".".join(str(p) for p in hostile.get("loc", ()) if p != "body")
            return error_response(
                request, 400, InvalidCharacters.code, f"{where}: {hostile.get('msg')}"[:300]
            )
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error_response(
            request, 422, "invalid_request", f"{where}: {first.get('msg', 'invalid')}"[:300]
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return error_response(request, exc.status_code, code, str(exc.detail)[:200])


def _rate_limited(request: Request, exc: RateLimited) -> JSONResponse:
    """429 with ``Retry-After`` in whole seconds (at least 1). A guard limit names its
    resource only (rule names stay inside); the merchant limit has none."""
    message = f"rate limit on {exc.resource}" if exc.resource else exc.message
    retry = str(max(1, int(exc.retry_after + 0.999)))
    return error_response(request, 429, RateLimited.code, message, {"Retry-After": retry})


class EdgeMiddleware:
    """Request id, hostile characters in the path, query and headers (400
    ``invalid_characters``), the body-size cap (413 ``request_too_large``) and a
    last-resort JSON 500, as plain ASGI (the decorator-style HTTP middleware costs about
    a third of a small request's CPU).

    The body is read here, before any route, authentication or parsing, counting bytes
    as they arrive: a declared ``Content-Length`` over the cap is refused unread, a
    chunked body as soon as it passes the cap (the rest is never read: the connection
    closes). The app then gets the body from memory (:func:`_replay`)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = valid_request_id(incoming) or uuid.uuid4().hex  # it goes on in ASCII headers
        scope.setdefault("state", {})["request_id"] = rid
        # the request id and trace follow the request into the channel front, callbacks
        # and notifications (paycore.tracing)
        trace_headers = {
            k.decode("latin-1"): v.decode("latin-1")
            for k, v in headers.items()
            if k in (b"traceparent", b"tracestate")
        }
        name = f"{scope.get('method', 'HTTP')} {scope.get('path', '')}"
        with server_span(name, trace_headers, request_id=rid) as span:
            await self._serve(scope, receive, send, headers, rid)
            span.set_attribute("http.response.status_code", scope["state"].get("status", 0))

    async def _serve(
        self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes], rid: str
    ) -> None:
        rid_header = (b"x-request-id", rid.encode("latin-1"))
        where = _hostile_part(scope)
        if where:
            await _send_error(
                send,
                400,
                InvalidCharacters.code,
                f"{where} holds control or invisible characters",
                rid,
                unread=True,
            )
            return
        length = headers.get(b"content-length", b"0").decode("latin-1")
        body = None
        if length.isdigit() and int(length) <= MAX_BODY_BYTES:
            body = await _read_body(receive)
        if body is None:
            await _send_error(
                send, 413, "request_too_large", "request body too large", rid, unread=True
            )
            return
        if body is _GONE:
            return
        receive = _replay(body, receive)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                scope["state"]["status"] = message.get("status", 0)
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:  # noqa: BLE001 - last line: never leak a trace
            log.exception("unhandled error (request %s)", rid)
            if not started:
                await _send_error(send, 500, "internal_error", "internal error", rid)


_GONE = b"<client disconnected>"  # a sentinel: compared by identity


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or None as soon as it passes :data:`MAX_BODY_BYTES` (:data:`_GONE`
    if the client went away first)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return _GONE
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands the app ``body`` in one message, then the real one
    (which then tells of a disconnect)."""
    pending = True

    async def replay() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def _hostile_part(scope: Scope) -> str:
    """Which part of the request line or headers holds hostile characters ('' if none):
    a path parameter, query parameter or header-derived value is refused before any
    route sees it."""
    path = scope.get("path", "")
    if has_hostile_chars(path):
        return "path"
    query: bytes = scope.get("query_string", b"")
    if query and (
        _CONTROL_BYTES.search(query)
        or (b"%" in query and has_hostile_chars(unquote(query.decode("latin-1"))))
    ):
        return "query"
    for _name, value in scope.get("headers") or ():
        if _CONTROL_BYTES.search(value):
            return "header"
    return ""


async def _send_error(
    send: Send, status: int, code: str, message: str, rid: str, *, unread: bool = False
) -> None:
    """An error body from the edge. ``unread``: the request body was not (all) read, so
    the answer closes the connection: the server would otherwise drain the rest of it to
    keep the connection alive (uvicorn does), reading all of what was just refused."""
    body = json.dumps({"error": {"code": code, "message": message, "request_id": rid}}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"x-request-id", rid.encode("latin-1")),
    ]
    if unread:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class MerchantRateLimit:
    """A per-merchant token bucket at the edge (rate per second, burst), kept in an
    in-process :class:`~stability.limits.MemoryLimitStore`."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._store = MemoryLimitStore(clock)

    def check(self, merchant_id: str) -> None:
        """Take one token or raise :class:`RateLimited` with the wait until the next one."""
        allowed, _left, retry_after = self._store.take(merchant_id, self.rate, self.burst)
        if not allowed:
            raise RateLimited("rate limit exceeded", retry_after=retry_after)
