"""The pay core HTTP API (``/v1``), built per process by :func:`create_app`."""

import asyncio
import contextvars
import functools
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, Path, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from ..channels import ChannelResult
from ..channels.gateway import ChannelFront
from ..channels.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from ..context import CODE_MAX, CODE_PATTERN
from ..core import PayCore
from ..errors import (
    AuthenticationFailed,
    BadSignature,
    InvalidCharacters,
    MalformedRequest,
    NotFound,
)
from ..models import NUMBER_MAX, NUMBER_PATTERN, CreateTrade, PayRequest, PayTool, RefundRequest
from ..shadow import ShadowDisabled
from . import edge
from .convert import detail_out, pay_order_out, trade_out
from .schemas import (
    INVALID_CHARACTERS,
    CallbackBody,
    CreateTradeBody,
    ErrorOut,
    PayBody,
    PayOrderOut,
    RefundBody,
    TradeDetailOut,
    TradeOut,
)

log = logging.getLogger("paycore.api")
#: a caller's number in a path: the alphabet it was created with (422 for any other)
OutNo = Annotated[str, Path(min_length=1, max_length=NUMBER_MAX, pattern=NUMBER_PATTERN)]
PayOrgNo = Annotated[str, Path(min_length=1, max_length=CODE_MAX, pattern=CODE_PATTERN)]


def _shadow_schema(schema: dict[str, Any]) -> None:
    """An optional header is absent, never null: publish it as the string enum it is."""
    schema.pop("anyOf", None)
    schema.update(type="string", enum=["0", "1"])


#: only documents the header (with its enum); :func:`edge.is_shadow` parses it, so a
#: bad value is 400 invalid_shadow_header rather than a validation error
ShadowHeader = Annotated[
    str | None,
    Header(
        alias=edge.SHADOW_HEADER,
        json_schema_extra=_shadow_schema,
        description="1: shadow (pressure-test) traffic, served from the shadow tables; 0 or "
        "absent: real traffic. Any other value: 400 invalid_shadow_header.",
    ),
]
#: the callback route reads its body raw (the signature covers the bytes); this documents it
CALLBACK_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": CallbackBody.model_json_schema()}},
    }
}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorOut} for code in (400, 401, 403, 404, 409, 413, 422, 429, 503)
}


@dataclass(frozen=True, slots=True)
class Caller:
    """Who is calling: the authenticated merchant, and the core serving the request."""

    core: PayCore
    merchant_id: str


@dataclass
class ApiConfig:
    """Per-process API settings."""

    channel_secrets: Mapping[str, str] = field(default_factory=dict)
    rate_per_s: float = 2000.0
    burst: float = 4000.0
    callback_tolerance_s: float = 300.0
    #: threads of the app's own pool that run the pay core's blocking calls: the core
    #: holds the GIL for most of a request, so more threads only add GIL hand-offs
    #: (measured at 16 clients with anyio's pool: 40 threads 372 context switches and
    #: 15.7 ms of CPU per payment, 8 threads 244 and 12.7 ms, 4 threads 158 and 9.8 ms)
    threads: int = 8
    registry: Any = None  # prometheus_client CollectorRegistry served at /metrics
    #: the shadow pay core (built on first call) for requests marked with
    #: ``X-Paywatch-Shadow: 1``; None refuses them with 403 ``shadow_disabled``
    shadow: Callable[[], PayCore] | None = None
    #: the pay core's channel front: while the app runs it sends on the app's event loop
    #: (:meth:`ChannelFront.bind_loop`), not on threads competing for the GIL
    channel_front: ChannelFront | None = None


def as_json(body: BaseModel) -> Response:
    """``body`` serialized once by pydantic (FastAPI would validate it again first)."""
    return Response(body.model_dump_json(), media_type="application/json")


def parse_callback_body(raw: bytes) -> CallbackBody:
    """A verified callback's body, whole and well-formed, else 400 (``invalid_characters``
    for control or invisible characters, ``malformed_request`` for anything else)."""
    try:
        return CallbackBody.model_validate_json(raw)
    except ValidationError as exc:
        if any(e["type"] == INVALID_CHARACTERS for e in exc.errors()):
            raise InvalidCharacters("callback body holds invisible characters") from None
        raise MalformedRequest("callback body is not valid") from None


def create_app(core: PayCore, config: ApiConfig | None = None) -> FastAPI:
    """Build the FastAPI app over ``core``; nothing global, one app per call."""
    cfg = config or ApiConfig()
    limiter = edge.MerchantRateLimit(cfg.rate_per_s, cfg.burst)
    shadow_limiter = edge.MerchantRateLimit(cfg.rate_per_s, cfg.burst)  # never real tokens

    def new_pool() -> ThreadPoolExecutor:  # its threads start on first use, not here
        return ThreadPoolExecutor(cfg.threads, thread_name_prefix="paycore-api")

    pool = [new_pool()]  # also serves a host that skips the lifespan

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        front = cfg.channel_front
        if front is not None:
            front.bind_loop(asyncio.get_running_loop())
        try:
            yield
        finally:  # stop this run's threads; an app started again gets a fresh pool
            if front is not None:
                await front.unbind_loop()
            stopping, pool[0] = pool[0], new_pool()
            stopping.shutdown(wait=True)

    async def offload(fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the app's pool. A plain executor hop costs a fraction of
        anyio's ``to_thread`` (capacity limiter, cancel scope, backend lookups per call)."""
        call = functools.partial(contextvars.copy_context().run, fn, *args)
        return await asyncio.get_running_loop().run_in_executor(pool[0], call)

    # FastAPI's own OpenTelemetry hooks are off: metrics are ours (collectors), and asking
    # OpenTelemetry per request whether it is configured cost 3-4 % of the API's CPU
    app = FastAPI(
        title="paywatch pay core",
        version="1",
        responses=ERRORS,
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    edge.install(app)

    def target(shadow: bool) -> PayCore:
        if not shadow:
            return core
        if cfg.shadow is None:
            raise ShadowDisabled("shadow traffic is disabled on this deployment")
        return cfg.shadow()

    # The dependencies are async: a plain ``def`` costs every request a thread-pool hop
    # each. Only what may touch the database (building the shadow core, a token not in
    # the cache) goes to the thread pool.
    async def core_for(shadow: bool) -> PayCore:
        return await offload(target, True) if shadow else core

    async def pick_callback_core(request: Request, shadow: ShadowHeader = None) -> PayCore:
        """The real core, or the shadow core for a shadow result: a channel marks those
        with ``?shadow=1`` (``shadow`` only documents the header; the edge parses it)."""
        return await core_for(edge.is_shadow(request, allow_query=True))

    async def caller(
        request: Request,
        shadow: ShadowHeader = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> Caller:
        """The merchant behind the bearer token, and the core (the shadow core for
        requests marked as shadow traffic) that serves it. One dependency: FastAPI
        solves each one on every request, and that was the API's largest framework cost."""
        c = await core_for(edge.is_shadow(request))
        if not authorization or not authorization.startswith("Bearer "):
            raise AuthenticationFailed("missing bearer token")
        token = authorization[7:].strip()
        info = c.merchants.cached_authentication(token)
        if info is None:
            info = await offload(c.merchants.authenticate, token)
        (limiter if c is core else shadow_limiter).check(info.merchant_id)
        return Caller(c, info.merchant_id)

    Merchant = Annotated[Caller, Depends(caller)]

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"model": ErrorOut}})
    async def readyz(request: Request) -> Any:
        if await offload(core.db.ping):
            return {"status": "ready", "database": "ok"}
        return edge.error_response(request, 503, "database_unavailable", "database unreachable")

    if cfg.registry is not None:
        from collectors.exposition import metrics_response

        @app.get("/metrics", tags=["ops"], include_in_schema=False)
        async def metrics(request: Request) -> Response:
            accept = request.headers.get("accept")
            body, content_type = await offload(metrics_response, cfg.registry, accept)
            return Response(body, media_type=content_type)

    @app.post("/v1/trades", tags=["trades"], response_model=TradeOut)
    async def create_trade(body: CreateTradeBody, m: Merchant) -> Response:
        req = CreateTrade(**body.model_dump())
        return as_json(trade_out(await offload(m.core.trades.create, m.merchant_id, req)))

    @app.get("/v1/trades/{out_trade_no}", tags=["trades"], response_model=TradeDetailOut)
    async def query_trade(out_trade_no: OutNo, m: Merchant) -> Response:
        return as_json(detail_out(await offload(m.core.trades.detail, m.merchant_id, out_trade_no)))

    @app.post("/v1/trades/{out_trade_no}/pay", tags=["trades"], response_model=PayOrderOut)
    async def pay(out_trade_no: OutNo, body: PayBody, m: Merchant) -> Response:
        tools = tuple(PayTool(t.tool, t.amount) for t in body.tools)
        req = PayRequest(out_trade_no, tools, body.out_pay_no, body.pay_org_no)
        return as_json(pay_order_out(await offload(m.core.payments.pay, m.merchant_id, req)))

    @app.post("/v1/trades/{out_trade_no}/refunds", tags=["trades"], response_model=TradeDetailOut)
    async def refund(out_trade_no: OutNo, body: RefundBody, m: Merchant) -> Response:
        req = RefundRequest(out_trade_no, body.out_refund_no, body.amount, body.reason)
        return as_json(detail_out(await offload(m.core.refunds.refund, m.merchant_id, req)))

    @app.post("/v1/trades/{out_trade_no}/confirm", tags=["trades"], response_model=TradeOut)
    async def confirm(out_trade_no: OutNo, m: Merchant) -> Response:
        return as_json(trade_out(await offload(m.core.trades.confirm, m.merchant_id, out_trade_no)))

    @app.post("/v1/trades/{out_trade_no}/close", tags=["trades"], response_model=TradeOut)
    async def close(out_trade_no: OutNo, m: Merchant) -> Response:
        return as_json(trade_out(await offload(m.core.trades.close, m.merchant_id, out_trade_no)))

    @app.post("/v1/channels/{pay_org_no}/callback", tags=["channels"], openapi_extra=CALLBACK_BODY)
    async def channel_callback(
        pay_org_no: PayOrgNo,
        request: Request,
        c: Annotated[PayCore, Depends(pick_callback_core)],
    ) -> JSONResponse:
        """A channel's signed result. Bad signatures and unknown orders are refused and
        logged; repeats are acknowledged without settling again. Results of shadow
        orders come back with ``?shadow=1`` (or the shadow header) and settle only there."""
        secret = cfg.channel_secrets.get(pay_org_no)
        if secret is None:
            raise NotFound("unknown pay org")
        raw = await request.body()
        ts = request.headers.get(TIMESTAMP_HEADER, "")
        sig = request.headers.get(SIGNATURE_HEADER, "")
        if not verify(secret, ts, raw, sig, tolerance=cfg.callback_tolerance_s):
            log.warning(
                "callback with a bad signature from %s (request %s)",
                pay_org_no,
                edge.request_id(request),
            )
            raise BadSignature("callback signature did not verify")
        body = parse_callback_body(raw)
        if body.pay_org_no != pay_org_no:
            raise BadSignature("callback names another pay org")
        result = ChannelResult(
            pay_org_no,
            body.channel_txn_no,
            body.status,
            body.amount,
            body.currency,
            body.channel_ref,
        )
        try:
            outcome = await offload(c.payments.on_channel_result, result)
        except NotFound:
            log.warning("callback for unknown order %s at %s", body.channel_txn_no, pay_org_no)
            raise
        return JSONResponse({"result": outcome})

    return app
