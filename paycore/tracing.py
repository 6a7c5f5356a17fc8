"""Request ids and trace context carried along the pay link.

One request id and one W3C trace follow a payment from the merchant's request through
the channel front, the channel (the sandbox), its callback and the merchant's
notification. The request id lives in a context variable (set by the API's edge from
``X-Request-Id``); the trace in OpenTelemetry's context. Without a configured tracer
provider (``PAYWATCH_OTEL_ENDPOINT`` unset) spans are non-recording and cost next to
nothing, but an incoming ``traceparent`` is still passed on.

What crosses an asynchronous hop that loses the context (the notification outbox) is
kept as a small carrier dict (:func:`carrier`) and resumed on the other side
(:func:`resumed`).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator, Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind

REQUEST_ID_HEADER = "X-Request-Id"
TRACEPARENT_HEADER = "traceparent"
#: the tracer's instrumentation scope name (spans are looked up by it in tests)
TRACER_NAME = "paywatch"
_MAX_ID = 64

_request_id: ContextVar[str | None] = ContextVar("paywatch_request_id", default=None)


def new_request_id() -> str:
    """A fresh request id (32 hex characters)."""
    return uuid.uuid4().hex


def valid_request_id(value: str | None) -> str | None:
    """``value`` when it is usable as a request id (1-64 printable ASCII characters: it is
    sent on in headers, some clients' only ASCII), else None."""
    if value and len(value) <= _MAX_ID and value.isascii() and value.isprintable():
        return value
    return None


def current_request_id() -> str | None:
    """The request id of the work in progress, if any."""
    return _request_id.get()


@contextlib.contextmanager
def use_request_id(request_id: str | None) -> Iterator[str | None]:
    """Bind ``request_id`` for the enclosed block (None leaves the current one)."""
    if request_id is None:
        yield _request_id.get()
        return
    token = _request_id.set(request_id)
    try:
        yield request_id
    finally:
        _request_id.reset(token)


def tracer() -> trace.Tracer:
    """Paywatch's tracer (the global provider's: a no-op one unless tracing is on)."""
    return trace.get_tracer(TRACER_NAME)


def current_trace_id() -> str | None:
    """The current trace id as 32 hex characters, or None outside any trace."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None


def current_span_id() -> str | None:
    """The current span id as 16 hex characters, or None outside any trace."""
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.span_id, "016x") if ctx.is_valid else None


_H = TypeVar("_H", bound=MutableMapping[str, str])


def outgoing_headers(headers: _H) -> _H:
    """Add ``X-Request-Id`` and ``traceparent`` (of the current context) to ``headers``."""
    rid = _request_id.get()
    if rid is not None:
        headers[REQUEST_ID_HEADER] = rid
    propagate.inject(headers)
    return headers


def _get(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = headers.get(name.lower())
    return value


@contextlib.contextmanager
def server_span(
    name: str,
    headers: Mapping[str, str],
    attributes: Mapping[str, Any] | None = None,
    *,
    request_id: str | None = None,
) -> Iterator[Span]:
    """Serve one incoming request: adopt ``request_id`` or its ``X-Request-Id`` (or make
    one) and continue its ``traceparent`` in a SERVER span, for the enclosed block."""
    rid = request_id or valid_request_id(_get(headers, REQUEST_ID_HEADER)) or new_request_id()
    parent = propagate.extract(headers)
    with (
        use_request_id(rid),
        tracer().start_as_current_span(
            name, context=parent, kind=SpanKind.SERVER, attributes=dict(attributes or {})
        ) as span,
    ):
        span.set_attribute("paywatch.request_id", rid)
        yield span


def carrier() -> dict[str, str]:
    """The request id and trace context to keep with work done later (may be empty)."""
    out: dict[str, str] = {}
    rid = _request_id.get()
    if rid is not None:
        out["request_id"] = rid
    propagate.inject(out)
    return out


@contextlib.contextmanager
def resumed(kept: Mapping[str, str] | None) -> Iterator[None]:
    """Continue the work of :func:`carrier`'s ``kept``: its request id and trace context
    are current for the enclosed block (nothing changes for an empty one)."""
    kept = kept or {}
    token = otel_context.attach(propagate.extract(kept)) if kept else None
    try:
        with use_request_id(valid_request_id(kept.get("request_id"))):
            yield
    finally:
        if token is not None:
            otel_context.detach(token)


#: the key of a stored payload (the notification outbox) that keeps :func:`carrier`;
#: never sent: :func:`split_kept` takes it out
KEPT_KEY = "_trace"


def with_kept(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` plus the current :func:`carrier` under :data:`KEPT_KEY` (unchanged
    outside any request or trace)."""
    kept = carrier()
    return {**payload, KEPT_KEY: kept} if kept else payload


def split_kept(payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """``payload`` without :data:`KEPT_KEY`, and what that key kept."""
    if KEPT_KEY not in payload:
        return payload, {}
    rest = dict(payload)
    kept = rest.pop(KEPT_KEY)
    if not isinstance(kept, dict):
        return rest, {}
    return rest, {str(k): str(v) for k, v in kept.items()}
