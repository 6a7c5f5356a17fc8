"""HTTP request metrics for an ASGI app, by route template and status.

``paywatch_http_requests_total{method,route,status}`` and
``paywatch_http_request_duration_seconds{method,route}``. ``route`` is the matched
route's template (``/v1/trades/{out_trade_no}``), never the raw path, so ids never become
label values; a request no route matched is ``route="unmatched"``.
"""

from __future__ import annotations

import threading
import time
import weakref
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram

from .labels import OTHER

__all__ = ["HTTP_BUCKETS", "UNMATCHED", "HttpMetrics", "HttpMetricsMiddleware", "http_metrics_for"]

HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNMATCHED = "unmatched"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class HttpMetrics:
    """The two HTTP families on ``registry``; :meth:`observe` records one request."""

    def __init__(self, registry: CollectorRegistry, *, max_routes: int = 128) -> None:
        # route templates come from the app's route table, a bounded set: a cap suffices
        self._routes: set[str] = set()
        self._max_routes = max_routes
        self.requests = Counter(
            "paywatch_http_requests",
            "HTTP requests served, by method, route template and status code",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "paywatch_http_request_duration_seconds",
            "HTTP request duration (until the response has been sent), by route template",
            ["method", "route"],
            buckets=HTTP_BUCKETS,
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in _METHODS else "other"
        if route not in self._routes:
            if len(self._routes) >= self._max_routes:
                route = OTHER
            else:
                self._routes.add(route)
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)


_BY_REGISTRY: weakref.WeakKeyDictionary[CollectorRegistry, HttpMetrics] = (
    weakref.WeakKeyDictionary()
)
_LOCK = threading.Lock()


def http_metrics_for(registry: CollectorRegistry) -> HttpMetrics:
    """The registry's :class:`HttpMetrics`, created once: several apps built over one
    registry (tests, a shadow app) share the families instead of registering them twice."""
    with _LOCK:
        found = _BY_REGISTRY.get(registry)
        if found is None:
            found = _BY_REGISTRY[registry] = HttpMetrics(registry)
        return found


def route_template(scope: dict[str, Any]) -> str:
    """The template of the route that served ``scope`` (set by the router), or
    :data:`UNMATCHED`."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    return str(path) if path else UNMATCHED


class HttpMetricsMiddleware:
    """Pure ASGI middleware recording every HTTP request in :class:`HttpMetrics`.

    An exception escaping the app counts as status 500 (what the server answers).
    """

    def __init__(self, app: Any, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        t0 = time.perf_counter()

        async def send_status(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            self.metrics.observe(
                scope.get("method", ""), route_template(scope), status, time.perf_counter() - t0
            )
