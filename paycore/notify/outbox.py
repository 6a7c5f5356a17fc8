"""The notification outbox: one row per merchant event, written in the caller's transaction.

A row is written only when the merchant has a ``notify_url``. Because it is inserted
through the same session as the status change, a rolled-back change leaves no
notification behind, and a committed one always has its notification: delivery
(:mod:`.delivery`) can then be retried without ever losing or inventing an event.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ..db.schema import Merchant, Notification, PayOrder, Trade
from ..stamps import Stamps
from ..tracing import with_kept

EVENT_TYPES = (
    "trade.paid",
    "trade.pay_failed",
    "trade.closed",
    "refund.succeeded",
    "refund.failed",
)


def add_notification(
    session: Session,
    stamps: Stamps,
    *,
    merchant_id: str,
    event_type: str,
    trade_id: int | None,
    payload: dict[str, Any],
    url: str | None,
) -> str | None:
    """Queue one notification in ``session``'s transaction; returns its event id.

    Returns None (and writes nothing) when ``url`` is empty: the merchant asked for
    no notifications. The row is due at once (``next_attempt_at`` = now); ``stamps``
    gives it its id and time.
    """
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown notification event type {event_type!r}")
    if not url:
        return None
    row_id = stamps.ids.next_id()
    event_id = f"evt_{row_id}"
    now = stamps.clock()
    session.execute(
        insert(Notification).values(
            id=row_id,
            event_id=event_id,
            merchant_id=merchant_id,
            event_type=event_type,
            trade_id=trade_id,
            payload=json.dumps(with_kept(payload), separators=(",", ":"), sort_keys=True),
            url=url,
            status="pending",
            attempts=0,
            next_attempt_at=now,
            lease_until=None,
            last_status_code=None,
            last_error="",
            created_at=now,
            delivered_at=None,
        )
    )
    return event_id


def merchant_notify_url(session: Session, merchant_id: str) -> str | None:
    """The merchant's notify URL, read through ``session`` (None: no notifications)."""
    return session.execute(
        select(Merchant.notify_url).where(Merchant.merchant_id == merchant_id)
    ).scalar_one_or_none()


#: the trade's fields a pay order's event carries
_TRADE_FIELDS = (
    Trade.id,
    Trade.out_trade_no,
    Trade.trade_type,
    Trade.status,
    Trade.amount,
    Trade.currency,
    Trade.paid_amount,
    Trade.refunded_amount,
    Trade.origin_trade_id,
    Trade.order_type,
    Trade.sub_type,
    Trade.pay_org_no,
)
_SUCCEEDED = ("trade.paid", "refund.succeeded")


def notify_pay_order(
    session: Session,
    stamps: Stamps,
    po: PayOrder,
    event_type: str,
    url: str | None,
    error_code: str | None = None,
) -> str | None:
    """Queue the merchant event for ``po`` reaching success or failure (same transaction).

    ``url``: the merchant's notify URL, read in this transaction (completion gets it from
    its compare-and-set, other callers from :func:`merchant_notify_url`); None or empty
    writes nothing. The trade's fields are read through ``session``: the payload shows
    the state this transaction has just written (not a stale ORM copy), and no second
    connection is needed while this one holds its locks (on SQLite a second connection
    would wait for this transaction's write lock: a deadlock).
    """
    if not url:
        return None
    payload = pay_order_payload(session, po, event_type, error_code)
    return add_notification(
        session,
        stamps,
        merchant_id=po.merchant_id,
        event_type=event_type,
        trade_id=po.trade_id,
        payload=payload,
        url=url,
    )


def pay_order_payload(
    session: Session, po: PayOrder, event_type: str, error_code: str | None
) -> dict[str, Any]:
    """The event's body: the trade as this transaction sees it, the pay order, and for a
    refund the trade it refunds."""
    t = session.execute(select(*_TRADE_FIELDS).where(Trade.id == po.trade_id)).one()
    payload: dict[str, Any] = {
        "trade_id": str(t.id),
        "out_trade_no": t.out_trade_no,
        "trade_type": t.trade_type,
        "trade_status": t.status,
        "amount": t.amount,
        "currency": t.currency,
        "paid_amount": t.paid_amount,
        "refunded_amount": t.refunded_amount,
        "pay_order_id": str(po.id),
        "out_pay_no": po.out_pay_no,
        "pay_status": "success" if event_type in _SUCCEEDED else "failed",
        "error_code": error_code,
        "order_type": t.order_type,
        "sub_type": t.sub_type,
        "pay_org_no": t.pay_org_no,
    }
    if event_type.startswith("refund.") and t.origin_trade_id is not None:
        origin = session.execute(
            select(Trade.out_trade_no, Trade.refunded_amount).where(Trade.id == t.origin_trade_id)
        ).one()
        payload["out_refund_no"] = t.out_trade_no
        payload["origin_trade_id"] = str(t.origin_trade_id)
        payload["origin_out_trade_no"] = origin.out_trade_no
        payload["origin_refunded_amount"] = origin.refunded_amount
    return payload


def notify_trade_closed(session: Session, stamps: Stamps, trade_id: int, reason: str) -> str | None:
    """Queue ``trade.closed`` for a trade that closed without being paid (same transaction;
    nothing when its merchant has no notify URL). ``reason``: why, e.g. ``expired``."""
    t = session.execute(select(*_TRADE_FIELDS, Trade.merchant_id).where(Trade.id == trade_id)).one()
    url = merchant_notify_url(session, t.merchant_id)
    if not url:
        return None
    payload: dict[str, Any] = {
        "trade_id": str(t.id),
        "out_trade_no": t.out_trade_no,
        "trade_type": t.trade_type,
        "trade_status": t.status,
        "amount": t.amount,
        "currency": t.currency,
        "paid_amount": t.paid_amount,
        "order_type": t.order_type,
        "sub_type": t.sub_type,
        "pay_org_no": t.pay_org_no,
        "reason": reason,
    }
    return add_notification(
        session,
        stamps,
        merchant_id=t.merchant_id,
        event_type="trade.closed",
        trade_id=t.id,
        payload=payload,
        url=url,
    )
