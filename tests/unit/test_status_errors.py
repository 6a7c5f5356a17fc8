"""Status machines (guarded transitions, terminal states) and the paycore error tree."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from paycore import errors
from paycore.db.schema import PayOrder
from paycore.errors import PayCoreError
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
    cas_status,
)


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
