"""The sandbox's coupon service: a marketing service the pay core redeems coupons at.

Mounted in the sandbox app (:func:`simulator.sandbox.create_sandbox_app`) under
``/coupons`` when the config names a ``coupon_secret``. Every request but the admin ones
is signed with that secret, as the gateway's are with a pay org's
(:mod:`paycore.channels.signing`):

- ``POST /coupons/redeem`` ``{code, merchant_id, user_id, amount, currency, trade_amount,
  key}`` reserves the coupon for ``key``; the same key again answers the same (idempotent).
  404 ``unknown``, 409 ``used`` (another key holds it), 403 ``not_yours``, 400
  ``too_small`` / ``currency``.
- ``POST /coupons/release`` ``{code, key}`` gives it back (idempotent; 409 when another
  key holds it).
- ``GET /coupons/users/{merchant_id}/{user_id}[?currency=]``: the user's unused coupons.
- ``GET /coupons/codes/{code}``: one coupon.

Admin (``X-Sandbox-Admin``): ``POST /coupons/admin/issue``, ``GET|PUT /coupons/admin/knobs``
(the outage knob drills and tests fail it with). Error answers are
``{"reason": ..., "detail": ...}``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError

from paycore.channels.signing import verify_headers

from .sandbox_coupon_book import CouponBook, CouponKnobs, CouponRejection, SandboxCoupon

__all__ = ["CouponBook", "CouponKnobs", "SandboxCoupon", "coupon_router"]

ADMIN_HEADER = "X-Sandbox-Admin"
_CODE = r"^[A-Za-z0-9_.\-]{1,64}$"
_ID = r"^[A-Za-z0-9_.\-]{1,64}$"
_KEY = r"^[A-Za-z0-9_.:\-]{1,200}$"
_M = TypeVar("_M", bound=BaseModel)


class _RedeemIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: str = Field(pattern=_CODE)
    merchant_id: str = Field(pattern=_ID)
    user_id: str = Field(pattern=_ID)
    amount: StrictInt = Field(gt=0, le=10**15)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    trade_amount: StrictInt = Field(gt=0, le=10**15)
    key: str = Field(pattern=_KEY)


class _ReleaseIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: str = Field(pattern=_CODE)
    key: str = Field(pattern=_KEY)


class _IssueIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    merchant_id: str = Field(pattern=_ID)
    user_id: str = Field(pattern=_ID)
    amount: StrictInt = Field(gt=0, le=10**15)
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    code: str | None = Field(default=None, pattern=_CODE)
    min_trade_amount: StrictInt = Field(default=0, ge=0, le=10**15)


def _parse(model: type[_M], body: bytes) -> _M:
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        fields_ = [".".join(str(p) for p in e["loc"]) for e in exc.errors(include_input=False)]
        raise CouponRejection(400, "invalid", f"invalid fields: {fields_}") from None


def _answer(exc: CouponRejection) -> JSONResponse:
    return JSONResponse({"reason": exc.reason, "detail": exc.detail}, status_code=exc.status)


def _view(c: SandboxCoupon) -> dict[str, Any]:
    return {
        "code": c.code,
        "amount": c.amount,
        "currency": c.currency,
        "min_trade_amount": c.min_trade_amount,
        "status": c.status,
    }


def coupon_router(book: CouponBook, secret: str, admin_token: str) -> APIRouter:
    """The coupon service's routes over ``book``, signed with ``secret``."""
    router = APIRouter(prefix="/coupons")

    async def signed(request: Request) -> bytes:
        body = await request.body()
        if not verify_headers(secret, request.headers, body):
            raise HTTPException(401, detail="missing or invalid signature")
        return body

    async def serve(work: Callable[[], Any]) -> Any:
        """``work()``'s answer as the knobs say: after any latency; 503 in an outage
        (nothing done); with a timeout the work is done and answered too late."""
        knobs = book.knobs
        if knobs.latency_ms:
            await asyncio.sleep(knobs.latency_ms / 1000.0)
        if book.chance(knobs.outage_rate):
            return JSONResponse({"reason": "unavailable"}, status_code=503)
        try:
            answer = work()
        except CouponRejection as exc:
            answer = _answer(exc)
        if book.chance(knobs.timeout_rate):
            await asyncio.sleep(knobs.timeout_ms / 1000.0)
        return answer

    def admin(request: Request) -> None:
        token = request.headers.get(ADMIN_HEADER, "")
        if not hmac.compare_digest(token.encode(), admin_token.encode()):
            raise HTTPException(401, detail="admin token required")

    @router.post("/redeem")
    async def redeem(request: Request) -> Any:
        body = await signed(request)

        def work() -> dict[str, Any]:
            c = book.redeem(_parse(_RedeemIn, body))
            return {**_view(c), "key": c.key}

        return await serve(work)

    @router.post("/release")
    async def release(request: Request) -> Any:
        body = await signed(request)

        def work() -> dict[str, Any]:
            req = _parse(_ReleaseIn, body)
            c, released = book.release(req.code, req.key)
            return {**_view(c), "released": released}

        return await serve(work)

    @router.get("/users/{merchant_id}/{user_id}")
    async def user_coupons(
        merchant_id: str, user_id: str, request: Request, currency: str | None = None
    ) -> Any:
        await signed(request)
        return await serve(
            lambda: {"coupons": [_view(c) for c in book.unused(merchant_id, user_id, currency)]}
        )

    @router.get("/codes/{code}")
    async def one(code: str, request: Request) -> Any:
        await signed(request)

        def work() -> dict[str, Any]:
            c = book.get(code)
            if c is None:
                raise CouponRejection(404, "unknown", "no such coupon")
            return _view(c)

        return await serve(work)

    @router.post("/admin/issue")
    async def issue(request: Request) -> Any:
        admin(request)
        try:
            req = _parse(_IssueIn, await request.body())
            c = book.issue(
                req.merchant_id,
                req.user_id,
                req.amount,
                req.currency,
                code=req.code,
                min_trade_amount=req.min_trade_amount,
            )
        except CouponRejection as exc:
            return _answer(exc)
        return _view(c)

    @router.get("/admin/knobs")
    async def get_knobs(request: Request) -> dict[str, float]:
        admin(request)
        return asdict(book.knobs)

    @router.put("/admin/knobs")
    async def put_knobs(request: Request) -> Any:
        admin(request)
        try:
            changes = json.loads(await request.body() or b"{}")
            if not isinstance(changes, dict):
                raise ValueError("body must be a JSON object")
            book.knobs = book.knobs.updated(changes)
        except (TypeError, ValueError) as exc:
            raise HTTPException(422, detail=str(exc)) from None
        return asdict(book.knobs)

    return router
