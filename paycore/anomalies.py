"""Business anomalies of paying: classified, recorded once, resolved by a full refund.

An anomaly is money a pay order cannot keep, or a channel answer that contradicts the
books (not a Python exception: those live in :mod:`paycore.errors`). Rows go to the
``pay_exceptions`` table. Kinds: ``duplicate_payment`` (two successes for one trade),
``partial_payment`` (a combined payment where a tool failed after another took money),
``amount_mismatch`` (the channel settled a different amount), ``other``.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from .db.schema import PayException, PayItem, PayOrder
from .db.util import insert_ignore
from .stamps import Stamps

log = logging.getLogger(__name__)
KINDS = ("duplicate_payment", "partial_payment", "amount_mismatch", "other")


def record_anomaly(
    stamps: Stamps,
    s: Session,
    kind: str,
    *,
    biz_key: str,
    po: PayOrder,
    amount_taken: int,
    item: PayItem | None = None,
    detail: str = "",
    resolution: str = "full_refund",
) -> bool:
    """Record an anomaly once per ``(kind, biz_key)`` in ``s``'s transaction; True if this
    call recorded it. ``stamps`` gives the row its id and time."""
    if kind not in KINDS:
        raise ValueError(kind)
    created = insert_ignore(
        s,
        PayException.__table__,
        {
            "id": stamps.ids.next_id(),
            "kind": kind,
            "biz_key": biz_key,
            "merchant_id": po.merchant_id,
            "trade_id": po.trade_id,
            "pay_order_id": po.id,
            "pay_item_id": item.id if item else None,
            "amount_taken": amount_taken,
            "currency": po.currency,
            "resolution": resolution if amount_taken else "manual",
            "status": "open",
            "detail": detail[:2000],
            "created_at": stamps.clock(),
        },
    )
    if created:
        log.warning("pay exception %s on trade %s: %s", kind, po.trade_id, detail)
    return created
