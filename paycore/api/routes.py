"""The API's routes, registered on an app by resource: ops probes, trades, channel
callbacks. Registration order is the OpenAPI document's order.

Creating a trade, paying, refunding and a channel's callback run as the map's links
(``link.trade_create``, ``link.pay``, ``link.refund``, ``link.callback``): every guarded
call they make (the database, the ledger, Redis, the channels) is that link's edge."""

import logging
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ValidationError

from ..channels import ChannelResult
from ..channels.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from ..context import CODE_MAX, CODE_PATTERN
from ..core import PayCore
from ..errors import BadSignature, InvalidCharacters, MalformedRequest, NotFound
from ..models import NUMBER_MAX, NUMBER_PATTERN, CreateTrade, PayRequest, PayTool, RefundRequest
from . import edge
from .cashier_schemas import CashierOut, cashier_out
from .convert import detail_out, pay_order_out, trade_out
from .runtime import ApiRuntime, Caller
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


def _segment_schema(schema: dict[str, Any]) -> None:
    """An optional query parameter is absent, never null: publish the code it must be."""
    schema.pop("anyOf", None)
    schema.update(type="string", pattern=CODE_PATTERN, minLength=1, maxLength=CODE_MAX)


#: the rule is published; the cashier enforces it (400 invalid_user_segment, not a 422)
UserSegment = Annotated[
    str | None,
    Query(
        description="the payer's segment, as a pay's user_segment (the routing rules)",
        json_schema_extra=_segment_schema,
    ),
]
#: the callback route reads its body raw (the signature covers the bytes); this documents it
CALLBACK_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": CallbackBody.model_json_schema()}},
    }
}


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


def add_ops_routes(app: FastAPI, rt: ApiRuntime) -> None:
    """Liveness, readiness, and ``/metrics`` when the config has a registry."""

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses={503: {"model": ErrorOut}})
    async def readyz(request: Request) -> Any:
        if await rt.offload(rt.core.db.ping):
            return {"status": "ready", "database": "ok"}
        return edge.error_response(request, 503, "database_unavailable", "database unreachable")

    registry = rt.cfg.registry
    if registry is not None:
        from collectors.exposition import metrics_response

        @app.get("/metrics", tags=["ops"], include_in_schema=False)
        async def metrics(request: Request) -> Response:
            accept = request.headers.get("accept")
            body, content_type = await rt.offload(metrics_response, registry, accept)
            return Response(body, media_type=content_type)


def add_trade_routes(app: FastAPI, rt: ApiRuntime) -> None:
    """A merchant's trades: create, query, pay, refund, confirm, close."""
    Merchant = Annotated[Caller, Depends(rt.caller)]
    offload = rt.offload

    @app.post("/v1/trades", tags=["trades"], response_model=TradeOut)
    async def create_trade(body: CreateTradeBody, m: Merchant) -> Response:
        req = CreateTrade(**body.model_dump())
        created = await rt.offload_as("link.trade_create", m.core.trades.create, m.merchant_id, req)
        return as_json(trade_out(created))

    @app.get("/v1/trades/{out_trade_no}", tags=["trades"], response_model=TradeDetailOut)
    async def query_trade(out_trade_no: OutNo, m: Merchant) -> Response:
        return as_json(detail_out(await offload(m.core.trades.detail, m.merchant_id, out_trade_no)))

    @app.post("/v1/trades/{out_trade_no}/pay", tags=["trades"], response_model=PayOrderOut)
    async def pay(out_trade_no: OutNo, body: PayBody, m: Merchant) -> Response:
        tools = tuple(PayTool(t.tool, t.amount, t.ref) for t in body.tools)
        req = PayRequest(out_trade_no, tools, body.out_pay_no, body.pay_org_no, body.user_segment)
        order = await rt.offload_as("link.pay", m.core.payments.pay, m.merchant_id, req)
        return as_json(pay_order_out(order))

    @app.get("/v1/trades/{out_trade_no}/cashier", tags=["trades"], response_model=CashierOut)
    async def cashier(
        out_trade_no: OutNo, m: Merchant, user_segment: UserSegment = None
    ) -> Response:
        """What the trade's payer can pay with now: each tool's offer, and the channel's
        granted orgs in routing order with their availability."""
        view = await offload(m.core.cashier.view, m.merchant_id, out_trade_no, user_segment)
        return as_json(cashier_out(view))

    @app.post("/v1/trades/{out_trade_no}/refunds", tags=["trades"], response_model=TradeDetailOut)
    async def refund(out_trade_no: OutNo, body: RefundBody, m: Merchant) -> Response:
        req = RefundRequest(out_trade_no, body.out_refund_no, body.amount, body.reason)
        detail = await rt.offload_as("link.refund", m.core.refunds.refund, m.merchant_id, req)
        return as_json(detail_out(detail))

    @app.post("/v1/trades/{out_trade_no}/confirm", tags=["trades"], response_model=TradeOut)
    async def confirm(out_trade_no: OutNo, m: Merchant) -> Response:
        return as_json(trade_out(await offload(m.core.trades.confirm, m.merchant_id, out_trade_no)))

    @app.post("/v1/trades/{out_trade_no}/close", tags=["trades"], response_model=TradeOut)
    async def close(out_trade_no: OutNo, m: Merchant) -> Response:
        return as_json(trade_out(await offload(m.core.trades.close, m.merchant_id, out_trade_no)))


async def _verified_body(rt: ApiRuntime, pay_org_no: str, request: Request) -> CallbackBody:
    """The callback's body once its signature verified with ``pay_org_no``'s secret."""
    secret = rt.cfg.channel_secrets.get(pay_org_no)
    if secret is None:
        raise NotFound("unknown pay org")
    raw = await request.body()
    ts = request.headers.get(TIMESTAMP_HEADER, "")
    sig = request.headers.get(SIGNATURE_HEADER, "")
    if not verify(secret, ts, raw, sig, tolerance=rt.cfg.callback_tolerance_s):
        log.warning(
            "callback with a bad signature from %s (request %s)",
            pay_org_no,
            edge.request_id(request),
        )
        raise BadSignature("callback signature did not verify")
    body = parse_callback_body(raw)
    if body.pay_org_no != pay_org_no:
        raise BadSignature("callback names another pay org")
    return body


def add_callback_route(app: FastAPI, rt: ApiRuntime) -> None:
    """The channels' signed results."""

    @app.post("/v1/channels/{pay_org_no}/callback", tags=["channels"], openapi_extra=CALLBACK_BODY)
    async def channel_callback(
        pay_org_no: PayOrgNo,
        request: Request,
        c: Annotated[PayCore, Depends(rt.pick_callback_core)],
    ) -> JSONResponse:
        """A channel's signed result. Bad signatures and unknown orders are refused and
        logged; repeats are acknowledged without settling again. Results of shadow
        orders come back with ``?shadow=1`` (or the shadow header) and settle only there."""
        body = await _verified_body(rt, pay_org_no, request)
        result = ChannelResult(
            pay_org_no,
            body.channel_txn_no,
            body.status,
            body.amount,
            body.currency,
            body.channel_ref,
        )
        try:
            outcome = await rt.offload_as("link.callback", c.payments.on_channel_result, result)
        except NotFound:
            log.warning("callback for unknown order %s at %s", body.channel_txn_no, pay_org_no)
            raise
        return JSONResponse({"result": outcome})
