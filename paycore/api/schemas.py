"""HTTP request and response bodies. Amounts are strict integers: no floats, no strings.

The request bodies state the real rules in the OpenAPI document (number alphabet and
length, amount range, currencies, context codes), so a schema-driven client or fuzzer
sends what the pay core takes. Where the pay core answers a rule with its own error code
(``invalid_amount``, ``unknown_currency``, ``invalid_context``) the schema only publishes
the rule and :mod:`paycore.models` enforces it; the number alphabet is enforced here too.
Every string refuses control and invisible characters first (error type
:data:`INVALID_CHARACTERS`, answered 400 ``invalid_characters``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictInt, StrictStr
from pydantic_core import PydanticCustomError

from ..context import CODE_MAX, CODE_PATTERN
from ..models import NUMBER_MAX, NUMBER_PATTERN, TEXT_MAX, TOOL_NAME_PATTERN, has_hostile_chars
from ..money import CURRENCIES, CURRENCY_PATTERN, MAX_AMOUNT, MIN_AMOUNT

TradeType = Literal["instant", "guaranteed", "recharge", "withdraw", "refund", "transfer"]
#: the pydantic error type of a string with control or invisible characters
INVALID_CHARACTERS = "invalid_characters"


def _refuse_hostile(value: Any) -> Any:
    """Runs before every other check of a string field: hostile characters are a 400."""
    if isinstance(value, str) and has_hostile_chars(value):
        raise PydanticCustomError(
            INVALID_CHARACTERS, "control or invisible characters are not allowed"
        )
    return value


_Clean = BeforeValidator(_refuse_hostile)  # after the Field: it wraps (runs before) them
#: free text without control or invisible characters (length set per field)
Text = Annotated[StrictStr, _Clean]
_TEXT_RULE = (
    "free text; no control or invisible characters (Unicode Cc, Cf, Cs, Co, Cn, "
    "Zl, Zp): 400 invalid_characters"
)
#: a caller's number or user id (:data:`paycore.models.NUMBER_PATTERN`)
Number = Annotated[
    StrictStr,
    Field(
        min_length=1,
        max_length=NUMBER_MAX,
        pattern=NUMBER_PATTERN,
        description="1-64 of [A-Za-z0-9_.-], starting with a letter or digit",
    ),
    _Clean,
]
#: a context code; the pay core answers a bad one with 422 ``invalid_context``
Code = Annotated[
    StrictStr,
    Field(min_length=1, max_length=CODE_MAX, json_schema_extra={"pattern": CODE_PATTERN}),
    _Clean,
]
#: a currency the pay core knows; any other is 422 ``unknown_currency``
Currency = Annotated[
    StrictStr,
    Field(min_length=3, max_length=3, json_schema_extra={"enum": sorted(CURRENCIES)}),
    _Clean,
]
#: minor units; outside the range the pay core answers 422 ``invalid_amount``
Amount = Annotated[
    StrictInt,
    Field(
        description=f"minor units, {MIN_AMOUNT} .. {MAX_AMOUNT}",
        json_schema_extra={"minimum": MIN_AMOUNT, "maximum": MAX_AMOUNT},
    ),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateTradeBody(_Body):
    out_trade_no: Number
    trade_type: TradeType
    amount: Amount
    currency: Currency
    user_id: Number
    order_type: Code
    sub_type: Code
    pay_org_no: Code
    payee_user_id: Number | None = None
    subject: Text = Field(default="", max_length=TEXT_MAX, description=_TEXT_RULE)
    origin_out_trade_no: Number | None = None


class PayToolBody(_Body):
    #: a registered pay tool (balance, channel, points, coupon, ...); any other name is
    #: 422 ``invalid_pay_tools`` from the tool registry
    tool: Annotated[
        StrictStr,
        Field(
            min_length=1,
            max_length=CODE_MAX,
            description="a pay tool: balance | channel | points | coupon | ...",
            json_schema_extra={"pattern": TOOL_NAME_PATTERN},
        ),
        _Clean,
    ]
    amount: Amount
    ref: Number | None = Field(default=None, description="what the tool pays with: a coupon code")


class PayBody(_Body):
    tools: list[PayToolBody] = Field(min_length=1, max_length=4)
    out_pay_no: Number | None = None
    pay_org_no: Code | None = Field(default=None, description="absent: the routing rules choose")
    user_segment: Code | None = Field(default=None, description="the payer's segment, for routing")


class RefundBody(_Body):
    out_refund_no: Number
    amount: Amount
    reason: Text = Field(default="", max_length=TEXT_MAX, description=_TEXT_RULE)


#: the largest amount a callback may report: what an amount column (BIGINT) can hold.
#: Not :data:`MAX_AMOUNT`: a signed result for one of our items with an absurd amount is
#: evidence (the channel may really have taken it), so settlement records it as an
#: exception; only what cannot even be stored is a malformed body.
CALLBACK_AMOUNT_MAX = 2**63 - 1


class CallbackBody(BaseModel):
    """A channel's result. Validated whole (the pay core's number alphabet, a strict
    integer amount that fits the store, a currency's shape, a known status) before
    anything is looked up; any violation is 400 ``malformed_request``, hostile characters
    400 ``invalid_characters``. Whether the amount fits the item is settlement's business
    (a mismatch, a zero success or an amount above :data:`MAX_AMOUNT` is a recorded
    exception there)."""

    model_config = ConfigDict(extra="ignore")
    pay_org_no: Annotated[
        StrictStr, Field(min_length=1, max_length=CODE_MAX, pattern=CODE_PATTERN), _Clean
    ]
    channel_txn_no: Number
    status: Literal["success", "failed"]
    amount: StrictInt = Field(ge=0, le=CALLBACK_AMOUNT_MAX)
    currency: Annotated[StrictStr, Field(pattern=CURRENCY_PATTERN), _Clean]
    channel_ref: Text = Field(default="", max_length=64)
    kind: Annotated[StrictStr, Field(max_length=32), _Clean] | None = None


class RerouteOut(BaseModel):
    """The item was moved once to the next org: the first org refused it in a way that
    proves it never took the money (HTTP 503, no connection)."""

    from_org: str
    from_txn: str
    to_org: str
    to_txn: str
    reason: str
    at: datetime


class PayItemOut(BaseModel):
    id: str
    tool: str
    status: str
    amount: int
    refunded_amount: int
    pay_org_no: str | None
    channel_txn_no: str | None
    tool_ref: str | None = None
    reroute: RerouteOut | None = None


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
    #: weak tools the pay went on without (their amount taken by another part)
    skipped_tools: list[str] = []


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
