"""Request models validate at construction; status machines; the error tree."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from paycore import errors
from paycore.db.schema import PayOrder
from paycore.errors import (
    InvalidAmount,
    InvalidCharacters,
    InvalidContext,
    InvalidPayTools,
    InvalidRequest,
    PayCoreError,
    UnknownCurrency,
    UnsupportedTradeType,
)
from paycore.models import CreateTrade, PayRequest, PayTool, RefundRequest
from paycore.status import (
    CLOSED,
    CONFIRMED,
    CREATED,
    FAILED,
    PAID,
    PAY_TRANSITIONS,
    PAYING,
    PROCESSING,
    SUCCESS,
    TRADE_TRANSITIONS,
    TRADE_TYPES,
    cas_status,
)

BASE: dict[str, Any] = {
    "out_trade_no": "T-0001",
    "trade_type": "instant",
    "amount": 1000,
    "currency": "CNY",
    "user_id": "u1",
    "order_type": "ecom",
    "sub_type": "std",
    "pay_org_no": "ORG1",
}


def trade(**overrides: Any) -> CreateTrade:
    return CreateTrade(**(BASE | overrides))


def _raises_exactly(cls: type[BaseException], fn: Any, *args: Any, **kwargs: Any) -> Any:
    with pytest.raises(cls) as exc:
        fn(*args, **kwargs)
    assert type(exc.value) is cls, f"expected {cls.__name__}, got {type(exc.value).__name__}"
    return exc.value


# -- CreateTrade ---------------------------------------------------------------------------


@pytest.mark.parametrize("trade_type", [t for t in TRADE_TYPES if t not in {"transfer", "refund"}])
def test_create_trade_accepts_plain_types(trade_type: str) -> None:
    assert trade(trade_type=trade_type).trade_type == trade_type


def test_create_trade_accepts_transfer_and_refund() -> None:
    assert trade(trade_type="transfer", payee_user_id="u2").payee_user_id == "u2"
    assert trade(trade_type="refund", origin_out_trade_no="T-0000").origin_out_trade_no == "T-0000"
    assert trade(out_trade_no="x" * 64).out_trade_no == "x" * 64
    assert trade(subject="s" * 256).subject == "s" * 256


def test_trade_types() -> None:
    assert set(TRADE_TYPES) == {
        "instant",
        "guaranteed",
        "recharge",
        "withdraw",
        "refund",
        "transfer",
    }


@pytest.mark.parametrize(
    ("overrides", "error", "field"),
    [
        ({"trade_type": "lottery"}, UnsupportedTradeType, None),
        ({"trade_type": "INSTANT"}, UnsupportedTradeType, None),
        ({"trade_type": None}, UnsupportedTradeType, None),
        ({"amount": 0}, InvalidAmount, "amount"),
        ({"amount": -5}, InvalidAmount, "amount"),
        ({"amount": 10.0}, InvalidAmount, "amount"),
        ({"amount": "1000"}, InvalidAmount, "amount"),
        ({"amount": True}, InvalidAmount, "amount"),
        ({"currency": "XYZ"}, UnknownCurrency, None),
        ({"currency": "cny"}, UnknownCurrency, None),
        ({"order_type": ""}, InvalidContext, "order_type"),
        ({"sub_type": "bad type"}, InvalidContext, "sub_type"),
        ({"pay_org_no": "x" * 33}, InvalidContext, "pay_org_no"),
        ({"pay_org_no": None}, InvalidContext, "pay_org_no"),
        ({"out_trade_no": ""}, InvalidRequest, "out_trade_no"),
        ({"out_trade_no": "x" * 65}, InvalidRequest, "out_trade_no"),
        ({"out_trade_no": "a\nb"}, InvalidCharacters, "out_trade_no"),
        ({"out_trade_no": "a/b"}, InvalidRequest, "out_trade_no"),
        ({"out_trade_no": ".."}, InvalidRequest, "out_trade_no"),
        ({"out_trade_no": "refund:R1"}, InvalidRequest, "out_trade_no"),
        ({"user_id": "m1:u1"}, InvalidRequest, "user_id"),
        ({"user_id": "u\x00"}, InvalidCharacters, "user_id"),
        ({"payee_user_id": "u\x00"}, InvalidCharacters, "payee_user_id"),
        ({"payee_user_id": ""}, InvalidRequest, "payee_user_id"),
        ({"origin_out_trade_no": "a b"}, InvalidRequest, "origin_out_trade_no"),
        ({"subject": "pen\x00"}, InvalidCharacters, "subject"),
        ({"subject": "abc\u202etxt"}, InvalidCharacters, "subject"),
        ({"subject": "line\u2028break"}, InvalidCharacters, "subject"),
        ({"out_trade_no": 17}, InvalidRequest, "out_trade_no"),
        ({"user_id": ""}, InvalidRequest, "user_id"),
        ({"user_id": None}, InvalidRequest, "user_id"),
        ({"origin_out_trade_no": "x" * 65}, InvalidRequest, "origin_out_trade_no"),
        ({"origin_out_trade_no": ""}, InvalidRequest, "origin_out_trade_no"),
        ({"trade_type": "transfer"}, InvalidRequest, "payee_user_id"),
        ({"trade_type": "transfer", "payee_user_id": ""}, InvalidRequest, "payee_user_id"),
        ({"trade_type": "transfer", "payee_user_id": "u1"}, InvalidRequest, "payee_user_id"),
        ({"trade_type": "transfer", "payee_user_id": "x" * 65}, InvalidRequest, "payee_user_id"),
        ({"trade_type": "refund"}, InvalidRequest, "origin_out_trade_no"),
        ({"subject": "s" * 257}, InvalidRequest, "subject"),
        ({"subject": None}, InvalidRequest, "subject"),
    ],
)
def test_create_trade_rejects(overrides: dict[str, Any], error: type, field: str | None) -> None:
    exc = _raises_exactly(error, trade, **overrides)
    if field is not None:
        assert exc.details.get("field") == field


def test_create_trade_is_immutable() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        trade().amount = 1  # type: ignore[misc]


#: a trade that sets every field, and for each field a different valid value
FULL: dict[str, Any] = BASE | {
    "trade_type": "transfer",
    "payee_user_id": "u2",
    "subject": "rent",
    "origin_out_trade_no": "T-0000",
}
VARIANTS: dict[str, Any] = {
    "out_trade_no": "T-0002",
    "trade_type": "instant",
    "amount": 1001,
    "currency": "USD",
    "user_id": "u3",
    "order_type": "ecom2",
    "sub_type": "std2",
    "pay_org_no": "ORG2",
    "payee_user_id": "u4",
    "subject": "rent!",
    "origin_out_trade_no": "T-9999",
}


def test_fingerprint_is_stable_for_equal_requests() -> None:
    a, b = CreateTrade(**FULL), CreateTrade(**dict(FULL))
    assert a.fingerprint() == b.fingerprint()
    assert a.fingerprint() == a.fingerprint()
    assert len(a.fingerprint()) == 64


def test_fingerprint_variants_cover_every_field() -> None:
    assert set(VARIANTS) == {f.name for f in dataclasses.fields(CreateTrade)}


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_fingerprint_differs_when_a_field_differs(name: str) -> None:
    base = CreateTrade(**FULL)
    other = CreateTrade(**(FULL | {name: VARIANTS[name]}))
    assert base.fingerprint() != other.fingerprint()


def test_fingerprint_distinguishes_absent_from_given() -> None:
    assert trade(payee_user_id=None).fingerprint() != trade(payee_user_id="u9").fingerprint()


def test_free_text_allows_spaces_and_any_visible_script() -> None:
    subject = "Café\u3000订单 №7 \u00a0😀"
    assert trade(subject=subject).subject == subject
    assert RefundRequest("T-1", "R-1", 5, reason=subject).reason == subject


@pytest.mark.parametrize("no", ["a", "0", "A.b_c-9", "x" * 64, "1..2"])
def test_numbers_in_the_alphabet_are_accepted(no: str) -> None:
    assert trade(out_trade_no=no, user_id=no).out_trade_no == no


# -- PayRequest ----------------------------------------------------------------------------


def test_pay_request_accepts_one_to_four_tools_and_stores_a_tuple() -> None:
    for n in range(1, 5):
        req = PayRequest("T-1", [PayTool("balance", 1)] * n)  # type: ignore[arg-type]
        assert isinstance(req.tools, tuple)
        assert len(req.tools) == n


@pytest.mark.parametrize("n", [0, 5, 8])
def test_pay_request_rejects_tool_counts(n: int) -> None:
    _raises_exactly(InvalidPayTools, PayRequest, "T-1", (PayTool("balance", 1),) * n)


@pytest.mark.parametrize("tool", ["coupon", "Balance", "", None])
def test_pay_tool_rejects_unknown_tool(tool: Any) -> None:
    _raises_exactly(InvalidPayTools, PayTool, tool, 100)


@pytest.mark.parametrize("amount", [0, -1, 1.5, "1", True, None])
def test_pay_tool_rejects_bad_amounts(amount: Any) -> None:
    exc = _raises_exactly(InvalidAmount, PayTool, "channel", amount)
    assert exc.details == {"field": "tools.amount"}


def test_pay_tool_accepts_known_tools() -> None:
    assert PayTool("balance", 1).tool == "balance"
    assert PayTool("channel", 2).amount == 2


def test_pay_no_defaults_to_out_trade_no() -> None:
    tools = (PayTool("channel", 100),)
    assert PayRequest("T-1", tools).pay_no == "T-1"
    assert PayRequest("T-1", tools, out_pay_no="P-9").pay_no == "P-9"


def test_pay_request_fingerprint() -> None:
    tools = (PayTool("channel", 100),)
    implicit = PayRequest("T-1", tools)
    # an explicit out_pay_no equal to the default is the same request
    assert implicit.fingerprint() == PayRequest("T-1", tools, out_pay_no="T-1").fingerprint()
    as_list = PayRequest("T-1", list(tools))  # type: ignore[arg-type]
    assert implicit.fingerprint() == as_list.fingerprint()
    assert implicit.fingerprint() != PayRequest("T-1", tools, out_pay_no="P-2").fingerprint()
    assert implicit.fingerprint() != PayRequest("T-1", (PayTool("channel", 101),)).fingerprint()
    assert implicit.fingerprint() != PayRequest("T-1", (PayTool("balance", 100),)).fingerprint()
    assert implicit.fingerprint() != PayRequest("T-1", tools, pay_org_no="ORG2").fingerprint()
    assert implicit.fingerprint() != PayRequest("T-2", tools).fingerprint()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"out_trade_no": ""}, InvalidRequest),
        ({"out_trade_no": "x" * 65}, InvalidRequest),
        ({"out_pay_no": ""}, InvalidRequest),
        ({"out_pay_no": "x" * 65}, InvalidRequest),
        ({"out_pay_no": "refund:R1"}, InvalidRequest),  # the refunds' generated namespace
        ({"out_pay_no": "p\x00"}, InvalidCharacters),
        ({"out_trade_no": "a/b"}, InvalidRequest),
        ({"pay_org_no": "bad org"}, InvalidContext),
        ({"pay_org_no": ""}, InvalidContext),
    ],
)
def test_pay_request_rejects_fields(kwargs: dict[str, Any], error: type) -> None:
    args: dict[str, Any] = {"out_trade_no": "T-1", "tools": (PayTool("channel", 1),)} | kwargs
    _raises_exactly(error, PayRequest, **args)


# -- RefundRequest -------------------------------------------------------------------------


def test_refund_request_valid() -> None:
    req = RefundRequest("T-1", "R-1", 500, reason="r" * 256)
    assert (req.out_trade_no, req.out_refund_no, req.amount) == ("T-1", "R-1", 500)


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"out_trade_no": ""}, InvalidRequest, "out_trade_no"),
        ({"out_trade_no": "x" * 65}, InvalidRequest, "out_trade_no"),
        ({"out_refund_no": ""}, InvalidRequest, "out_refund_no"),
        ({"out_refund_no": None}, InvalidRequest, "out_refund_no"),
        ({"out_refund_no": "r:1"}, InvalidRequest, "out_refund_no"),
        ({"reason": "oops\x00"}, InvalidCharacters, "reason"),
        ({"amount": 0}, InvalidAmount, "amount"),
        ({"amount": -100}, InvalidAmount, "amount"),
        ({"amount": 5.0}, InvalidAmount, "amount"),
        ({"amount": "5"}, InvalidAmount, "amount"),
        ({"reason": "r" * 257}, InvalidRequest, "reason"),
        ({"reason": None}, InvalidRequest, "reason"),
    ],
)
def test_refund_request_rejects(kwargs: dict[str, Any], error: type, field: str) -> None:
    args: dict[str, Any] = {"out_trade_no": "T-1", "out_refund_no": "R-1", "amount": 1} | kwargs
    exc = _raises_exactly(error, RefundRequest, **args)
    assert exc.details.get("field") == field


def test_refund_fingerprint() -> None:
    a = RefundRequest("T-1", "R-1", 500, reason="x")
    assert a.fingerprint() == RefundRequest("T-1", "R-1", 500, reason="x").fingerprint()
    assert a.fingerprint() != RefundRequest("T-1", "R-1", 501, reason="x").fingerprint()
    assert a.fingerprint() != RefundRequest("T-1", "R-2", 500, reason="x").fingerprint()
    assert a.fingerprint() != RefundRequest("T-1", "R-1", 500, reason="y").fingerprint()


# -- status machines -----------------------------------------------------------------------


class RecordingSession:
    """Stands in for a Session: records executed statements, answers a fixed row count."""

    def __init__(self, rowcount: int = 1) -> None:
        self.rowcount = rowcount
        self.executed: list[Any] = []

    def execute(self, stmt: Any, params: dict[str, Any] | None = None) -> Any:
        self.executed.append((stmt, params or {}))
        return type("Result", (), {"rowcount": self.rowcount})()

    def flush(self) -> None:  # cas_status runs on the session's connection, after a flush
        pass

    def connection(self) -> RecordingSession:
        return self


@pytest.mark.parametrize(
    ("frm", "to", "transitions"),
    [
        (SUCCESS, FAILED, PAY_TRANSITIONS),
        (FAILED, SUCCESS, PAY_TRANSITIONS),
        (SUCCESS, PROCESSING, PAY_TRANSITIONS),
        (PROCESSING, PROCESSING, PAY_TRANSITIONS),
        (CLOSED, CREATED, TRADE_TRANSITIONS),
        (CONFIRMED, PAID, TRADE_TRANSITIONS),
        (CREATED, PAID, TRADE_TRANSITIONS),
        (PAID, CLOSED, TRADE_TRANSITIONS),
    ],
)
def test_cas_status_rejects_illegal_transition(frm: str, to: str, transitions: Any) -> None:
    session = RecordingSession()
    with pytest.raises(ValueError, match="illegal transition"):
        cas_status(session, PayOrder, 1, frm, to, transitions)  # type: ignore[arg-type]
    assert session.executed == []


@pytest.mark.parametrize(("rowcount", "won"), [(1, True), (0, False)])
def test_cas_status_legal_transition_is_one_guarded_update(rowcount: int, won: bool) -> None:
    session = RecordingSession(rowcount)
    moved = cas_status(session, PayOrder, 42, PROCESSING, SUCCESS, PAY_TRANSITIONS)  # type: ignore[arg-type]
    assert moved is won
    assert len(session.executed) == 1
    stmt, params = session.executed[0]
    sql = str(stmt)
    assert sql.startswith("UPDATE pay_orders SET status=:cas_to")
    assert "pay_orders.id = :cas_id" in sql and "pay_orders.status = :cas_from" in sql
    assert params == {"cas_id": 42, "cas_from": PROCESSING, "cas_to": SUCCESS}


def test_terminal_states_have_no_way_out() -> None:
    assert PAY_TRANSITIONS[SUCCESS] == set() == PAY_TRANSITIONS[FAILED]
    assert TRADE_TRANSITIONS[CONFIRMED] == set() == TRADE_TRANSITIONS[CLOSED]
    for machine in (PAY_TRANSITIONS, TRADE_TRANSITIONS):
        for targets in machine.values():
            assert targets <= set(machine)
    assert TRADE_TRANSITIONS[CREATED] == {PAYING, CLOSED}


# -- error tree ----------------------------------------------------------------------------

ERROR_CLASSES = [
    obj
    for _, obj in inspect.getmembers(errors, inspect.isclass)
    if issubclass(obj, BaseException) and obj.__module__ == errors.__name__
]
ALIASES = {frozenset({"Busy", "LockTimeout"})}


def test_error_tree_is_not_empty() -> None:
    names = {c.__name__ for c in ERROR_CLASSES}
    assert {"PayCoreError", "InvalidRequest", "Busy", "LockTimeout", "StorageError"} <= names


@pytest.mark.parametrize("cls", ERROR_CLASSES, ids=lambda c: c.__name__)
def test_every_error_derives_from_paycore_error(cls: type) -> None:
    assert issubclass(cls, PayCoreError)
    assert cls.http_status in {400, 401, 403, 404, 409, 413, 422, 429, 500, 503}
    assert isinstance(cls.code, str) and cls.code


def test_error_codes_are_distinct_except_aliases() -> None:
    by_code: dict[str, set[str]] = {}
    for cls in ERROR_CLASSES:
        by_code.setdefault(cls.code, set()).add(cls.__name__)
    shared = {frozenset(names) for names in by_code.values() if len(names) > 1}
    assert shared == ALIASES
    assert errors.LockTimeout.code == errors.Busy.code == "order_busy"
    assert issubclass(errors.LockTimeout, errors.Busy)


def test_error_message_and_details() -> None:
    e = errors.TradeNotFound(trade="T-1")
    assert e.message == "trade_not_found" == str(e)
    assert e.details == {"trade": "T-1"}
    assert e.http_status == 404
    e2 = errors.IdempotencyConflict("different body")
    assert str(e2) == "different body" and e2.http_status == 409
