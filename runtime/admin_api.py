"""The authenticated HTTP admin API, mounted on the pay API's server under ``/admin/v1``.

Console users sign in (``POST /admin/v1/login``: the console's throttle and audit) and
send the session token as ``Authorization: Bearer``. Every route checks the user's
console role for the action (:mod:`console.roles`) and every change writes the console
audit row an operator's click writes; switches keep the four-eyes rule of
:class:`stability.switches.SwitchService`. It is built here, in the runtime, because it
needs console auth and the pay core must not import the console. See ``docs/api.md``.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from paycore.api.edge import error_response
from stability.errors import StabilityError

from .admin_auth import AdminAuth, client_of
from .admin_context import AdminContext
from .admin_map import map_routes
from .admin_switches import switch_routes

__all__ = ["PREFIX", "create_admin_app", "mount_admin"]

#: where the admin API lives on the pay API's server
PREFIX = "/admin/v1"
_CODES = {
    400: "malformed_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    422: "invalid_request",
    429: "rate_limited",
}


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    username: str = Field(max_length=320)
    password: str = Field(max_length=1024)


def create_admin_app(ctx: AdminContext) -> FastAPI:
    """The admin API over ``ctx`` (mount it at :data:`PREFIX`)."""
    app = FastAPI(
        title="paywatch admin API",
        version="1",
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    _install_errors(app)

    @app.post("/login")
    def login(body: LoginIn, request: Request) -> dict[str, Any]:
        """Sign in as a console user; the answer's ``token`` is the bearer token."""
        return ctx.auth.login(body.username, body.password, client_of(request))

    @app.post("/logout", status_code=204)
    def logout(request: Request) -> Response:
        ctx.auth.logout(request)
        return Response(status_code=204)

    @app.get("/me")
    def me(request: Request) -> dict[str, Any]:
        """Who the token belongs to, as the database has it now."""
        user = ctx.auth.user(request)
        return {"username": user.username, "role": user.role}

    app.include_router(switch_routes(ctx))
    app.include_router(map_routes(ctx))
    _plan_routes(app, ctx)
    return app


def _plan_routes(app: FastAPI, ctx: AdminContext) -> None:
    """Plan routes, when the platform has a plan service."""
    if ctx.plans is None:
        return
    from .admin_plans import plan_routes

    app.include_router(plan_routes(ctx))


def _install_errors(app: FastAPI) -> None:
    """Every refusal as ``{"error": {"code", "message", "request_id"}}``: 4xx for the
    caller's mistakes, 503 when a store is down; never a trace or a secret."""

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _CODES.get(exc.status_code, "error")
        headers = dict(exc.headers or {})
        return error_response(request, exc.status_code, code, str(exc.detail)[:300], headers)

    @app.exception_handler(StabilityError)
    async def _stability(request: Request, exc: StabilityError) -> JSONResponse:
        return error_response(request, exc.http_status, exc.code, str(exc)[:300])

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid" or first.get("loc") == ("body",):
            return error_response(request, 400, "malformed_request", "body must be a JSON object")
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid')}"[:300]
        return error_response(request, 422, "invalid_request", message)


def context_for(platform: Any) -> AdminContext:
    """The admin context of a running :class:`runtime.bootstrap.Platform`."""
    engine = platform.db.engine
    idle = timedelta(minutes=platform.settings.console_idle_minutes)
    stability = platform.stability
    plans = getattr(stability, "plans", None) or getattr(platform, "plans", None)
    return AdminContext(
        engine=engine,
        auth=AdminAuth(engine, idle),
        stability=stability,
        plans=plans or _plan_service(engine, stability),
    )


def _plan_service(engine: Any, stability: Any) -> Any:
    """A plan service over the platform's switches and guard, for a platform that does
    not carry one (the plans themselves are in the database)."""
    from alerts.plan_silence import silence_handlers
    from stability.plans import PlanService

    guard = stability.guard
    return PlanService(
        engine,
        stability.switches,
        dmap=lambda: guard.map,
        rules=lambda: guard.base_rules,
        handlers=silence_handlers(engine),
    )


def mount_admin(app: Any, platform: Any) -> Any:
    """Mount the admin API of ``platform`` on ``app`` (the pay API) at :data:`PREFIX`
    (once: an app that has it is returned as it is); returns ``app``."""
    if not any(getattr(route, "path", None) == PREFIX for route in app.routes):
        app.mount(PREFIX, create_admin_app(context_for(platform)))
    return app
