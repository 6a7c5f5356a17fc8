"""Requests into and views out of the pay core: plain, immutable, validated data."""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from .context import check_code
from .errors import InvalidCharacters, InvalidPayTools, InvalidRequest, UnsupportedTradeType
from .money import check_amount, check_currency
from .status import TRADE_TYPES

#: a pay tool's name (which tools exist is :class:`paycore.tools.ToolRegistry`'s business;
#: ``pay_items.tool`` holds 16 characters)
TOOL_NAME_PATTERN = "^[a-z][a-z0-9_]{0,15}$"
_TOOL_NAME = re.compile(TOOL_NAME_PATTERN)

#: Every number a caller chooses (``out_trade_no``, ``out_pay_no``, ``out_refund_no``,
#: ``origin_out_trade_no``) and every user id it names (``user_id``, ``payee_user_id``):
#: 1-64 letters, digits, ``_``, ``.``, ``-``, starting with a letter or a digit. So every
#: accepted number is one URL path segment as it stands (never ``.``, ``..``, ``a/b``)
#: and can be queried, paid and refunded again.
#:
#: Numbers the pay core generates itself contain ``:``, which is outside this alphabet:
#: the pay orders of refunds are ``refund:<out_refund_no>``, user accounts in the ledger
#: are keyed ``<merchant_id>:<user_id>``. A caller can never write such a number, so a
#: generated number never collides with a caller's (no ``out_pay_no`` can squat on a
#: later refund's pay order). Keep every generated number in a ``<kind>:`` namespace.
NUMBER_MAX = 64
NUMBER_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
_NUMBER = re.compile(NUMBER_PATTERN)
#: free text (a trade's ``subject``, a refund's ``reason``): at most this many characters
TEXT_MAX = 256
#: Unicode categories refused in every string: controls (Cc: NUL, ESC, newlines, C1),
#: format characters (Cf: bidi overrides, zero-width characters), surrogates (Cs),
#: private use (Co), unassigned (Cn), line and paragraph separators (Zl, Zp). Spaces
#: (Zs) and every visible character are allowed in free text.
HOSTILE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def request_hash(payload: Any) -> str:
    """A stable hash of a request body, for idempotency checks."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def has_hostile_chars(text: str) -> bool:
    """True if ``text`` holds a character of :data:`HOSTILE_CATEGORIES`."""
    if text.isprintable():  # the common case, at C speed
        return False
    return any(unicodedata.category(ch) in HOSTILE_CATEGORIES for ch in text)


def check_number(value: Any, field_name: str) -> str:
    """A caller's number or user id (see :data:`NUMBER_PATTERN`), else
    :class:`InvalidCharacters` (400) for hostile characters or :class:`InvalidRequest`."""
    if not isinstance(value, str):
        raise InvalidRequest(f"{field_name} must be a string", field=field_name)
    if has_hostile_chars(value):
        raise InvalidCharacters(
            f"{field_name} holds control or invisible characters", field=field_name
        )
    if not _NUMBER.fullmatch(value):
        raise InvalidRequest(
            f"{field_name} must be 1-{NUMBER_MAX} characters of "
            "[A-Za-z0-9_.-], starting with a letter or digit",
            field=field_name,
        )
    return value


def check_text(value: Any, field_name: str, max_length: int = TEXT_MAX) -> str:
    """Free text of at most ``max_length`` characters without hostile characters."""
    if not isinstance(value, str) or len(value) > max_length:
        raise InvalidRequest(
            f"{field_name} must be at most {max_length} characters", field=field_name
        )
    if has_hostile_chars(value):
        raise InvalidCharacters(
            f"{field_name} holds control or invisible characters", field=field_name
        )
    return value


@dataclass(frozen=True)
class CreateTrade:
    """A merchant's request to create a trade. ``out_trade_no`` is the idempotency key."""

    out_trade_no: str
    trade_type: str
    amount: int
    currency: str
    user_id: str
    order_type: str
    sub_type: str
    pay_org_no: str
    payee_user_id: str | None = None
    subject: str = ""
    origin_out_trade_no: str | None = None  # the trade that started this one (refunds: required)

    def __post_init__(self) -> None:
        check_number(self.out_trade_no, "out_trade_no")
        for name in ("order_type", "sub_type", "pay_org_no"):
            check_code(getattr(self, name), name)
        if self.origin_out_trade_no is not None:
            check_number(self.origin_out_trade_no, "origin_out_trade_no")
        if self.trade_type not in TRADE_TYPES:
            raise UnsupportedTradeType(f"trade_type must be one of {', '.join(TRADE_TYPES)}")
        check_amount(self.amount)
        check_currency(self.currency)
        check_number(self.user_id, "user_id")
        if self.payee_user_id is not None:
            check_number(self.payee_user_id, "payee_user_id")
        if self.trade_type == "transfer":
            if self.payee_user_id is None:
                raise InvalidRequest("a transfer needs payee_user_id", field="payee_user_id")
            if self.payee_user_id == self.user_id:
                raise InvalidRequest("payer and payee must differ", field="payee_user_id")
        if self.trade_type == "refund" and not self.origin_out_trade_no:
            raise InvalidRequest(
                "a refund trade needs origin_out_trade_no", field="origin_out_trade_no"
            )
        check_text(self.subject, "subject")

    def fingerprint(self) -> str:
        return request_hash(asdict(self))


@dataclass(frozen=True)
class PayTool:
    """One pay tool's share of a payment."""

    tool: str  # a registered tool's name: balance | channel | points | coupon | ...
    amount: int
    ref: str | None = None  # what the tool pays with, e.g. a coupon code

    def __post_init__(self) -> None:
        if not isinstance(self.tool, str) or not _TOOL_NAME.fullmatch(self.tool):
            raise InvalidPayTools("tool must be 1-16 characters of [a-z0-9_]", field="tools.tool")
        check_amount(self.amount, field="tools.amount")
        if self.ref is not None and (
            not isinstance(self.ref, str) or not _NUMBER.fullmatch(self.ref)
        ):
            raise InvalidPayTools(
                f"tools.ref must be 1-{NUMBER_MAX} characters of [A-Za-z0-9_.-]",
                field="tools.ref",
            )


@dataclass(frozen=True)
class PayRequest:
    """Pay a trade with one or more tools. ``out_pay_no`` is the idempotency key."""

    out_trade_no: str
    tools: tuple[PayTool, ...]
    out_pay_no: str | None = None  # defaults to out_trade_no
    pay_org_no: str | None = None  # defaults to the trade's pay org
    user_segment: str | None = None  # the payer's segment, for the routing rules

    def __post_init__(self) -> None:
        check_number(self.out_trade_no, "out_trade_no")
        if self.out_pay_no is not None:
            check_number(self.out_pay_no, "out_pay_no")
        if self.pay_org_no is not None:
            check_code(self.pay_org_no, "pay_org_no")
        if self.user_segment is not None:
            check_code(self.user_segment, "user_segment")
        if not isinstance(self.tools, tuple | list) or not all(
            isinstance(t, PayTool) for t in self.tools
        ):
            raise InvalidPayTools("tools must be a list of pay tools")
        if not self.tools or len(self.tools) > 4:
            raise InvalidPayTools("between 1 and 4 pay tools")
        object.__setattr__(self, "tools", tuple(self.tools))

    @property
    def pay_no(self) -> str:
        return self.out_pay_no or self.out_trade_no

    def fingerprint(self) -> str:
        """The request as sent; fields added later hash only when set, so an order
        begun before they existed still matches its replay."""
        body = asdict(self) | {"out_pay_no": self.pay_no}
        body["tools"] = [
            {k: v for k, v in t.items() if k != "ref" or v is not None} for t in body["tools"]
        ]
        if self.user_segment is None:
            del body["user_segment"]
        return request_hash(body)


@dataclass(frozen=True)
class RefundRequest:
    """Refund part or all of a paid trade. ``out_refund_no`` is the idempotency key."""

    out_trade_no: str
    out_refund_no: str
    amount: int
    reason: str = ""

    def __post_init__(self) -> None:
        check_number(self.out_trade_no, "out_trade_no")
        check_number(self.out_refund_no, "out_refund_no")
        check_amount(self.amount)
        check_text(self.reason, "reason")

    def fingerprint(self) -> str:
        return request_hash(asdict(self))


@dataclass(frozen=True)
class RerouteView:
    """A pay item's move to the next org (retry once on a refusal that proves the first
    org never took it): from which org and transaction, to which, why and when."""

    from_org: str
    from_txn: str
    to_org: str
    to_txn: str
    reason: str
    at: datetime


@dataclass(frozen=True)
class PayItemView:
    id: int
    tool: str
    status: str
    amount: int
    refunded_amount: int
    pay_org_no: str | None
    channel_txn_no: str | None
    tool_ref: str | None = None  # what the tool paid with (a coupon code)
    reroute: RerouteView | None = None  # it was moved from another org


@dataclass(frozen=True)
class PayOrderView:
    id: int
    trade_id: int
    out_pay_no: str
    pay_type: str
    status: str
    amount: int
    currency: str
    pay_org_no: str
    created_at: datetime
    finished_at: datetime | None
    items: tuple[PayItemView, ...] = ()
    error_code: str | None = None
    #: weak tools the pay went on without (their amount taken by another part); stored
    #: on the order, so reads and a replayed pay show them too
    skipped_tools: tuple[str, ...] = ()


@dataclass(frozen=True)
class TradeView:
    id: int
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
    origin_trade_id: int | None
    root_trade_id: int
    subject: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class TradeDetail:
    trade: TradeView
    pay_orders: tuple[PayOrderView, ...] = ()
    refunds: tuple[TradeDetail, ...] = ()
    origin_chain: tuple[TradeView, ...] = field(default=())  # from the parent up to the root
