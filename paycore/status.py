"""Status machines of trades, pay orders and pay items, and the compare-and-set step.

Every transition is one ``UPDATE … SET status = :to WHERE id = :id AND status IN
(:allowed)``; a row count of zero means someone else moved it first. Terminal
states have no outgoing transitions, so they are reached once.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from sqlalchemy import Row, bindparam, update
from sqlalchemy.orm import Session

from .db.util import execute_core

# trades
CREATED, PAYING, PAID, CONFIRMED, CLOSED = "created", "paying", "paid", "confirmed", "closed"
TRADE_TRANSITIONS: dict[str, set[str]] = {
    CREATED: {PAYING, CLOSED},
    PAYING: {
        PAID,
        CREATED,
        CLOSED,
    },  # created again when a pay attempt fails; closed: refund refused
    PAID: {CONFIRMED},  # guaranteed trades only
    CONFIRMED: set(),
    CLOSED: set(),
}
# pay orders and pay items
PROCESSING, SUCCESS, FAILED = "processing", "success", "failed"
PAY_TRANSITIONS: dict[str, set[str]] = {
    PROCESSING: {SUCCESS, FAILED},
    SUCCESS: set(),
    FAILED: set(),
}

TRADE_TYPES = ("instant", "guaranteed", "recharge", "withdraw", "refund", "transfer")
PAY_TYPES = ("pay", "recharge", "withdraw", "refund", "transfer")


def is_legal(transitions: dict[str, set[str]], from_status: str, to_status: str) -> bool:
    """True if ``transitions`` lets a row move from ``from_status`` to ``to_status``."""
    return to_status in transitions.get(from_status, ())


def check_transition(transitions: dict[str, set[str]], from_status: str, to_status: str) -> None:
    """Raise :class:`ValueError` unless the move is one of ``transitions``."""
    if not is_legal(transitions, from_status, to_status):
        raise ValueError(f"illegal transition {from_status} -> {to_status}")


def cas_status(
    session: Session,
    model: Any,
    row_id: int,
    from_status: str,
    to_status: str,
    transitions: dict[str, set[str]],
    **values: Any,
) -> bool:
    """Move ``row_id`` from ``from_status`` to ``to_status``; True if this call did it."""
    result = _cas(session, model, row_id, from_status, to_status, transitions, (), values)
    return result.rowcount == 1


def cas_status_returning(
    session: Session,
    model: Any,
    row_id: int,
    from_status: str,
    to_status: str,
    transitions: dict[str, set[str]],
    returning: tuple[Any, ...],
    **values: Any,
) -> Row[Any] | None:
    """As :func:`cas_status`, and the moved row's ``returning`` columns in the same
    statement (no read after it); None if this call did not move it. ``returning`` should
    be a module constant: the statement is cached per tuple."""
    result = _cas(session, model, row_id, from_status, to_status, transitions, returning, values)
    return result.one_or_none()


def _cas(
    session: Session,
    model: Any,
    row_id: int,
    from_status: str,
    to_status: str,
    transitions: dict[str, set[str]],
    returning: tuple[Any, ...],
    values: dict[str, Any],
) -> Any:
    check_transition(transitions, from_status, to_status)
    stmt = _cas_statement(model, tuple(sorted(values)), returning)
    params = {"cas_id": row_id, "cas_from": from_status, "cas_to": to_status, **values}
    return execute_core(session, stmt, params)


@lru_cache(maxsize=64)
def _cas_statement(model: Any, keys: tuple[str, ...], returning: tuple[Any, ...]) -> Any:
    """One statement per (model, columns set): building it costs as much as running it."""
    stmt = (
        update(model)
        .where(model.id == bindparam("cas_id"), model.status == bindparam("cas_from"))
        .values(status=bindparam("cas_to"), **{k: bindparam(k) for k in keys})
        .execution_options(synchronize_session=False)
    )
    return stmt.returning(*returning) if returning else stmt
