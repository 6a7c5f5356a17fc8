"""Pay exceptions: classified, recorded once, resolved by a full refund of what was taken.

Classes: ``duplicate_payment`` (two successes for one trade), ``partial_payment``
(a combined payment where a tool failed after another took money),
``amount_mismatch`` (the channel settled a different amount), ``other``.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from .db.schema import PayException, PayItem, PayOrder
from .db.util import insert_ignore

if TYPE_CHECKING:
    from .core import PayCore

log = logging.getLogger(__name__)
KINDS = ("duplicate_payment", "partial_payment", "amount_mismatch", "other")


def record_exception(
    core: PayCore,
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
    """Record an exception once per ``(kind, biz_key)``; True if this call recorded it."""
    if kind not in KINDS:
        raise ValueError(kind)
    created = insert_ignore(
        s,
        PayException.__table__,
        {
            "id": core.ids.next_id(),
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
            "created_at": core.clock(),
        },
    )
    if created:
        log.warning("pay exception %s on trade %s: %s", kind, po.trade_id, detail)
    return created
