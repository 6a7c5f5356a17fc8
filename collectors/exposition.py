"""``/metrics``: the Prometheus text exposition of a registry.

Many processes: **a scrape per process**. Each API replica and each worker serves its
own registry on its own ``/metrics`` (the API on its HTTP port, a worker through
:func:`make_metrics_app` or :func:`start_metrics_server` on a port of its own), and
Prometheus scrapes every one of them as a target (``instance`` tells them apart;
``sum by`` in PromQL adds them up). We do not use
prometheus-client's multiprocess mode: it needs a shared ``PROMETHEUS_MULTIPROC_DIR``
wiped on every deploy and per-pid files that pile up, makes every gauge pick an
aggregation mode, serves custom collectors (our business gauges) from the serving
process only, and hides which replica misbehaves. See ``docs/metrics.md``.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import choose_encoder

__all__ = ["CONTENT_TYPE_TEXT", "make_metrics_app", "metrics_response", "start_metrics_server"]

#: the classic text format every Prometheus understands (generate_latest's default output)
CONTENT_TYPE_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def metrics_response(registry: CollectorRegistry, accept: str | None = None) -> tuple[bytes, str]:
    """The body and content type for a ``/metrics`` answer.

    Without ``accept`` (or when it does not ask for OpenMetrics) this is the classic
    text format 0.0.4 from :func:`prometheus_client.generate_latest`; a scraper that
    asks for OpenMetrics (Prometheus does) gets OpenMetrics.
    """
    if accept and "application/openmetrics-text" in accept:
        encoder, content_type = choose_encoder(accept)
        return encoder(registry), content_type
    return generate_latest(registry), CONTENT_TYPE_TEXT


def make_metrics_app(registry: CollectorRegistry, path: str = "/metrics") -> Any:
    """A tiny ASGI app serving ``registry`` at ``path`` (worker processes, tests).

    It answers lifespan events too, so any ASGI server can run it as is.
    """

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] != path:
            status, body, ctype = 404, b"not found\n", "text/plain; charset=utf-8"
        else:
            headers = dict(scope.get("headers") or [])
            accept = headers.get(b"accept", b"").decode("latin-1") or None
            body, ctype = metrics_response(registry, accept)
            status = 200
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", ctype.encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


def start_metrics_server(registry: CollectorRegistry, port: int, addr: str = "127.0.0.1") -> Any:
    """Serve ``registry`` on ``addr:port`` from a daemon thread (a worker's /metrics).

    Returns ``(server, thread)`` as :func:`prometheus_client.start_http_server` does;
    call ``server.shutdown()`` to stop it.
    """
    from prometheus_client import start_http_server

    return start_http_server(port, addr=addr, registry=registry)
