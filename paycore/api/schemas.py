"""HTTP request and response bodies. Amounts are strict integers: no floats, no strings."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr

TradeType = Literal["instant", "guaranteed", "recharge", "withdraw", "refund", "transfer"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateTradeBody(_Body):
    out_trade_no: StrictStr = Field(min_length=1, max_length=64)
    trade_type: TradeType
    amount: StrictInt = Field(description="minor units, 1 .. 10^12")
    currency: StrictStr = Field(min_length=3, max_length=3)
    user_id: StrictStr = Field(min_length=1, max_length=64)
    order_type: StrictStr = Field(min_length=1, max_length=32)
    sub_type: StrictStr = Field(min_length=1, max_length=32)
    pay_org_no: StrictStr = Field(min_length=1, max_length=32)
    payee_user_id: StrictStr | None = Field(default=None, max_length=64)
    subject: StrictStr = Field(default="", max_length=256)
    origin_out_trade_no: StrictStr | None = Field(default=None, max_length=64)


class PayToolBody(_Body):
    tool: Literal["balance", "channel"]
    amount: StrictInt


class PayBody(_Body):
    tools: list[PayToolBody] = Field(min_length=1, max_length=4)
    out_pay_no: StrictStr | None = Field(default=None, min_length=1, max_length=64)
    pay_org_no: StrictStr | None = Field(default=None, min_length=1, max_length=32)


class RefundBody(_Body):
    out_refund_no: StrictStr = Field(min_length=1, max_length=64)
    amount: StrictInt
    reason: StrictStr = Field(default="", max_length=256)


class CallbackBody(BaseModel):
    model_config = ConfigDict(extra="ignore")
    pay_org_no: StrictStr = Field(max_length=32)
    channel_txn_no: StrictStr = Field(max_length=64)
    status: Literal["success", "failed"]
    amount: StrictInt = Field(ge=0)
    currency: StrictStr = Field(max_length=3)
    channel_ref: StrictStr = Field(default="", max_length=64)
    kind: StrictStr | None = None


class PayItemOut(BaseModel):
    id: str
    tool: str
    status: str
    amount: int
    refunded_amount: int
    pay_org_no: str | None
    channel_txn_no: str | None


class PayOrderOut(BaseModel):
    id: str
    trade_id: str
    out_pay_no: str
    pay_type: str
    status: str
    amount: int
    currency: str
    pay_org_no: str
    created_at: datetime
    finished_at: datetime | None
    error_code: str | None
    items: list[PayItemOut]


class TradeOut(BaseModel):
    id: str
    merchant_id: str
    out_trade_no: str
    trade_type: str
    status: str
    amount: int
    currency: str
    paid_amount: int
    refunded_amount: int
    user_id: str
    payee_user_id: str | None
    order_type: str
    sub_type: str
    pay_org_no: str
    origin_trade_id: str | None
    root_trade_id: str
    subject: str
    created_at: datetime
    updated_at: datetime


class TradeDetailOut(BaseModel):
    trade: TradeOut
    pay_orders: list[PayOrderOut]
    refunds: list[TradeDetailOut]
    origin_chain: list[TradeOut]


class ErrorInfo(BaseModel):
    code: str
    message: str
    request_id: str


class ErrorOut(BaseModel):
    error: ErrorInfo
