"""Edge concerns: request ids, error bodies, body size, a per-merchant rate limit, and
the shadow-traffic marker (:data:`SHADOW_HEADER`).

Every error leaves as ``{"error": {"code", "message", "request_id"}}``; nothing
from a stack trace, a driver or SQL ever reaches a response.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from stability.errors import DependencyFailed, StabilityError
from stability.errors import RateLimited as GuardRateLimited

from ..errors import MalformedRequest, PayCoreError, RateLimited

log = logging.getLogger("paycore.api")
MAX_BODY_BYTES = 64 * 1024
_HTTP_CODES = {400: "malformed_request", 401: "unauthenticated", 403: "forbidden",
               404: "not_found", 405: "method_not_allowed", 413: "request_too_large",
               415: "unsupported_media_type", 422: "invalid_request", 429: "rate_limited",
               503: "unavailable"}  # fmt: skip


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
        headers = None
        if isinstance(exc, RateLimited):
            headers = {"Retry-After": str(max(1, int(exc.retry_after + 0.999)))}
        if exc.http_status >= 500:
            log.warning("%s (request %s): %s", exc.code, request_id(request), exc.message)
        return error_response(request, exc.http_status, exc.code, exc.message, headers)

    @app.exception_handler(StabilityError)
    async def _stability(request: Request, exc: StabilityError) -> JSONResponse:
        if isinstance(exc, GuardRateLimited):
            retry = str(max(1, int(exc.retry_after + 0.999)))
            return error_response(
                request,
                429,
                "rate_limited",
                f"rate limit on {exc.resource}",
                {"Retry-After": retry},
            )
        if isinstance(exc, DependencyFailed):
            log.warning("dependency %s failed fast: %s (request %s)", exc.resource, exc.reason,
                        request_id(request))  # fmt: skip
            return error_response(request, 503, exc.public_code,
                                  f"{exc.resource} is unavailable ({exc.reason})")  # fmt: skip
        return error_response(request, exc.http_status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") in ("json_invalid", "model_attributes_type") for e in errors) or (
            errors and errors[0].get("loc") == ("body",)
        ):
            return error_response(request, 400, "malformed_request", "body must be a JSON object")
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        return error_response(request, 422, "invalid_request",
                              f"{where}: {first.get('msg', 'invalid')}"[:300])  # fmt: skip

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return error_response(request, exc.status_code, code, str(exc.detail)[:200])


class EdgeMiddleware:
    """Request id, body-size cap and a last-resort JSON 500, as plain ASGI (the
    decorator-style HTTP middleware costs about a third of a small request's CPU)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or ())
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        rid = incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = rid
        rid_header = (b"x-request-id", rid.encode("latin-1"))
        length = headers.get(b"content-length", b"0").decode("latin-1")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            await _send_error(send, 413, "request_too_large", "request body too large", rid)
            return
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), rid_header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:  # noqa: BLE001 - last line: never leak a trace
            log.exception("unhandled error (request %s)", rid)
            if not started:
                await _send_error(send, 500, "internal_error", "internal error", rid)


async def _send_error(send: Send, status: int, code: str, message: str, rid: str) -> None:
    body = json.dumps({"error": {"code": code, "message": message, "request_id": rid}}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"x-request-id", rid.encode("latin-1"))]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


class MerchantRateLimit:
    """A per-merchant token bucket at the edge (rate per second, burst)."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = rate, burst, clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def check(self, merchant_id: str) -> None:
        """Take one token or raise :class:`RateLimited` with the wait until the next one."""
        now = self.clock()
        with self._lock:
            tokens, last = self._buckets.get(merchant_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1:
                self._buckets[merchant_id] = (tokens, now)
                raise RateLimited("rate limit exceeded", retry_after=(1 - tokens) / self.rate)
            self._buckets[merchant_id] = (tokens - 1, now)
