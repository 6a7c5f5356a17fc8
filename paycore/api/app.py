"""The pay core HTTP API (``/v1``), built per process by :func:`create_app`."""

from typing import Any

from fastapi import FastAPI

from ..core import PayCore
from . import edge
from .routes import add_callback_route, add_ops_routes, add_trade_routes
from .runtime import ApiConfig, ApiRuntime
from .schemas import ErrorOut

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 422, 429, 503)
}


def create_app(core: PayCore, config: ApiConfig | None = None) -> FastAPI:
    """Build the FastAPI app over ``core``; nothing global, one app per call."""
    rt = ApiRuntime(core, config or ApiConfig())
    # FastAPI's own OpenTelemetry hooks are off: metrics are ours (collectors), and asking
    # OpenTelemetry per request whether it is configured cost 3-4 % of the API's CPU
    app = FastAPI(
        title="paywatch pay core",
        version="1",
        responses=ERRORS,
        lifespan=rt.lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    edge.install(app)
    if rt.cfg.registry is not None:  # outermost: times and counts what the client sees
        from collectors.http_metrics import HttpMetricsMiddleware, http_metrics_for

        app.add_middleware(HttpMetricsMiddleware, metrics=http_metrics_for(rt.cfg.registry))
    add_ops_routes(app, rt)
    add_trade_routes(app, rt)
    add_callback_route(app, rt)
    return app
