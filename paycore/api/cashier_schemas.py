"""The cashier's response body (``GET /v1/trades/{out_trade_no}/cashier``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..cashier import CashierView

_METHODS = (
    "one object per pay tool that may pay this trade, in the registry's order: "
    '{"tool", "available", ...} with the tool\'s own fields (balance: "max_amount"; '
    'coupon: "coupons"); the channel: "orgs" (each {"pay_org_no", "available", '
    '"reason", "routed"}), "recommended", "rule". Empty when the trade is not payable.'
)


class CashierOut(BaseModel):
    out_trade_no: str
    status: str
    amount: int
    currency: str
    payable: bool
    methods: list[dict[str, Any]] = Field(description=_METHODS)


def cashier_out(v: CashierView) -> CashierOut:
    """The view as the API answers it."""
    return CashierOut(
        out_trade_no=v.out_trade_no,
        status=v.status,
        amount=v.amount,
        currency=v.currency,
        payable=v.payable,
        methods=[dict(m) for m in v.methods],
    )
