"""A sandbox payment channel served over real HTTP, for tests, demos and drills.

``create_sandbox_app(config)`` builds a FastAPI app that behaves like a channel for
several pay orgs. Every ``/gateway/{org}/...`` request must be signed with that
org's secret (:mod:`.signing`); transactions are accepted at once and their outcome
is delivered later by a signed callback to the request's ``notify_url``. Per-org
:class:`Knobs` (changeable at ``/admin/knobs``) inject latency, errors, outages, timeouts,
failures, duplicate or wrong callbacks, and statement discrepancies.

Nothing is created at import time; the callback client and tasks live between the
app's startup and shutdown (lifespan).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from typing import Any, TypeVar

import aiohttp
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from paycore.channels.signing import signed_headers, verify_headers
from paycore.tracing import outgoing_headers, server_span

from .errors import SandboxReject
from .sandbox_config import KINDS, Knobs, SandboxConfig
from .sandbox_state import SandboxState

__all__ = ["Knobs", "SandboxConfig", "SandboxState", "create_sandbox_app", "run_sandbox"]

log = logging.getLogger(__name__)

ADMIN_HEADER = "X-Sandbox-Admin"
_M = TypeVar("_M", bound=BaseModel)
_TXN_NO = r"^[A-Za-z0-9_.:\-]{1,64}$"


class _TxnIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    channel_txn_no: str = Field(pattern=_TXN_NO)
    amount: StrictInt = Field(gt=0, le=10**15)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    notify_url: str = Field(pattern=r"^https?://", max_length=2048)
    origin_channel_txn_no: str | None = Field(default=None, pattern=_TXN_NO)


class _SignIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    user_id: str = Field(min_length=1, max_length=64)
    card_no: str = Field(pattern=r"^\d{12,19}$")


def _parse(model: type[_M], body: bytes) -> _M:
    """Validate a JSON body; the 422 detail names fields, never echoes their values."""
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors(include_input=False)]
        raise HTTPException(422, detail=errors) from None


class CallbackDispatcher:
    """Delivers signed callbacks from asyncio tasks on the server's event loop.

    The client is aiohttp's: a callback cost the sandbox 0.9-1.0 ms of CPU with
    ``httpx.AsyncClient`` against 0.09 ms with aiohttp (measured, keep-alive, uvloop),
    and aiohttp sends a small request in one segment where httpx sends two. The
    sandbox shares its host with the API it calls in benches and drills.
    """

    def __init__(self, state: SandboxState, client: aiohttp.ClientSession) -> None:
        self.state = state
        self.client = client
        self.tasks: set[asyncio.Task[None]] = set()
        self.delivered = 0
        self.undeliverable = 0

    def schedule(self, org: str, channel_txn_no: str) -> None:
        """Settle the transaction after its callback delay and call back (in a task)."""
        task = asyncio.create_task(self._deliver(org, channel_txn_no))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, org: str, channel_txn_no: str) -> None:
        txn = self.state.get(org, channel_txn_no)
        if txn is None:
            return
        await asyncio.sleep(txn.callback_delay_ms / 1000.0)
        txn = self.state.settle(org, channel_txn_no)
        body = json.dumps(txn.callback_payload(), separators=(",", ":")).encode()
        for _ in range(txn.callback_copies):
            await self._post(org, txn.notify_url, body, channel_txn_no)

    async def _post(self, org: str, url: str, body: bytes, channel_txn_no: str) -> None:
        cfg = self.state.config
        for attempt in range(cfg.callback_attempts):
            headers = outgoing_headers(signed_headers(cfg.secrets[org], body))
            headers["Content-Type"] = "application/json"
            try:
                async with self.client.post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as resp:
                    await resp.read()  # the connection goes back to the pool for reuse
                    if 200 <= resp.status < 300:
                        self.delivered += 1
                        return
                    reason = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:  # ValueError: bad URL
                reason = type(exc).__name__
            if attempt + 1 < cfg.callback_attempts:
                await asyncio.sleep(cfg.callback_backoff_ms / 1000.0 * 2**attempt)
        self.undeliverable += 1
        log.warning(
            "sandbox callback undeliverable: org=%s txn=%s last=%s", org, channel_txn_no, reason
        )

    async def close(self) -> None:
        """Cancel pending callbacks and close the HTTP client (at app shutdown)."""
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.client.close()


def create_sandbox_app(config: SandboxConfig) -> FastAPI:
    """A FastAPI app serving the sandbox channel described by ``config``.

    ``app.state.sandbox`` is its :class:`SandboxState`; ``app.state.dispatcher`` the
    :class:`CallbackDispatcher` while the app runs; ``app.state.coupons`` the coupon
    service's :class:`~simulator.sandbox_coupons.CouponBook` when ``config.coupon_secret``
    is set (else None).
    """
    state = SandboxState(config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = aiohttp.ClientTimeout(total=config.callback_timeout)
        client = aiohttp.ClientSession(timeout=timeout)
        app.state.dispatcher = CallbackDispatcher(state, client)
        try:
            yield
        finally:
            await app.state.dispatcher.close()
            app.state.dispatcher = None

    app = FastAPI(
        title="paywatch sandbox channel",
        lifespan=lifespan,
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.sandbox = state
    app.state.dispatcher = None
    app.state.coupons = None
    if config.coupon_secret:
        from .sandbox_coupons import CouponBook, coupon_router

        app.state.coupons = CouponBook(config.seed)
        app.include_router(
            coupon_router(app.state.coupons, config.coupon_secret, config.admin_token)
        )

    async def authenticate(request: Request, org: str) -> bytes:
        secret = config.secrets.get(org)
        if secret is None:
            raise HTTPException(404, detail="unknown pay org")
        body = await request.body()
        if not verify_headers(secret, request.headers, body):
            raise HTTPException(401, detail="missing or invalid signature")
        return body

    def require_admin(request: Request) -> None:
        token = request.headers.get(ADMIN_HEADER, "")
        if not hmac.compare_digest(token.encode(), config.admin_token.encode()):
            raise HTTPException(401, detail="admin token required")

    def dispatcher(request: Request) -> CallbackDispatcher:
        running: CallbackDispatcher | None = request.app.state.dispatcher
        if running is None:
            raise HTTPException(503, detail="sandbox is not running")
        return running

    async def transaction(kind: str, org: str, request: Request) -> Response:
        # the caller's request id and trace go on into this transaction's callback (the
        # callback's task inherits the context)
        with server_span(f"sandbox {kind}", request.headers, {"paywatch.pay_org_no": org}):
            return await handle(kind, org, request)

    async def handle(kind: str, org: str, request: Request) -> Response:
        body = await authenticate(request, org)
        req = _parse(_TxnIn, body)
        await asyncio.sleep(state.latency(org))
        knobs = state.knobs(org)
        if state.chance(knobs.outage_rate):
            return _outage()
        if state.chance(knobs.timeout_rate):
            # The channel takes the request but answers long after the caller gave up:
            # the outcome is unknown to the caller until a callback or a query.
            await asyncio.sleep(knobs.timeout_ms / 1000.0)
        elif state.chance(knobs.error_rate):
            return JSONResponse({"error": "channel_unavailable"}, status_code=503)
        try:
            txn, created = state.accept(
                org,
                kind,
                req.channel_txn_no,
                req.amount,
                req.currency,
                req.notify_url,
                req.origin_channel_txn_no,
            )
        except SandboxReject as exc:
            raise HTTPException(exc.status_code, detail=exc.detail) from None
        if created:
            dispatcher(request).schedule(org, txn.channel_txn_no)
        return JSONResponse({"accepted": True, "channel_ref": txn.channel_ref})

    def transaction_endpoint(kind: str) -> Callable[[str, Request], Awaitable[Response]]:
        async def endpoint(org: str, request: Request) -> Response:
            return await transaction(kind, org, request)

        endpoint.__name__ = f"sandbox_{kind}"
        return endpoint

    for kind in KINDS:
        app.add_api_route(f"/gateway/{{org}}/{kind}", transaction_endpoint(kind), methods=["POST"])

    @app.get("/gateway/{org}/query/{channel_txn_no}")
    async def query(org: str, channel_txn_no: str, request: Request) -> Any:
        await authenticate(request, org)
        await asyncio.sleep(state.latency(org))
        if state.chance(state.knobs(org).outage_rate):
            return _outage()
        txn = state.get(org, channel_txn_no)
        if txn is None:
            return {"status": "unknown", "amount": None, "currency": None, "channel_ref": ""}
        amount = txn.amount if txn.status == "processing" else txn.settled_amount
        return {
            "status": txn.status,
            "amount": amount,
            "currency": txn.currency,
            "channel_ref": txn.channel_ref,
        }

    @app.post("/gateway/{org}/sign")
    async def bind_card(org: str, request: Request) -> dict[str, str]:
        body = await authenticate(request, org)
        req = _parse(_SignIn, body)
        await asyncio.sleep(state.latency(org))
        agreement = state.bind_card(org, req.user_id, req.card_no)
        return {"agreement_no": agreement, "card_last4": req.card_no[-4:]}

    @app.get("/gateway/{org}/statement")
    async def statement(
        org: str, request: Request, day_text: str = Query("", alias="date")
    ) -> Response:
        await authenticate(request, org)
        if state.chance(state.knobs(org).outage_rate):
            return _outage()
        try:
            day = _parse_day(day_text)
        except ValueError:
            raise HTTPException(422, detail="date must be YYYY-MM-DD") from None
        return PlainTextResponse(state.statement_csv(org, day), media_type="text/csv")

    @app.get("/admin/knobs")
    async def get_knobs(request: Request) -> dict[str, dict[str, float | int]]:
        require_admin(request)
        return {org: k.as_dict() for org, k in state.all_knobs().items()}

    @app.put("/admin/knobs/{org}")
    async def put_knobs(org: str, request: Request) -> dict[str, float | int]:
        require_admin(request)
        if org not in config.secrets:
            raise HTTPException(404, detail="unknown pay org")
        try:
            changes = json.loads(await request.body() or b"{}")
        except ValueError:
            raise HTTPException(422, detail="body must be a JSON object") from None
        if not isinstance(changes, dict):
            raise HTTPException(422, detail="body must be a JSON object")
        try:
            return state.update_knobs(org, changes).as_dict()
        except (TypeError, ValueError) as exc:
            raise HTTPException(422, detail=str(exc)) from None

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app


def _outage() -> JSONResponse:
    return JSONResponse({"error": "channel_unavailable"}, status_code=503)


def _parse_day(text: str) -> date:
    if len(text) != 10:
        raise ValueError(text)
    return date.fromisoformat(text)


def run_sandbox(host: str, port: int, config: SandboxConfig) -> None:
    """Serve the sandbox with uvicorn until interrupted."""
    import uvicorn

    # log_config=None: its lines go through the process's handler (--log-format)
    uvicorn.run(create_sandbox_app(config), host=host, port=port, log_level="info", log_config=None)
