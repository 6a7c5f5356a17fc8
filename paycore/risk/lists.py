"""The risk engine's tables: the blocklist and the review log of unchecked payments.

Both are plain functions over a :class:`~paycore.db.engine.Database`, so the CLI and
the console use them without a running engine. Inputs are validated (a bad one raises
:class:`~paycore.errors.InvalidRequest` and writes nothing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from ..db.engine import Database
from ..db.schema import Merchant, RiskBlock, RiskReview
from ..db.util import execute_core
from ..errors import InvalidRequest, UnknownMerchant

#: the blocklist's merchant for an entry that holds at every merchant
EVERY_MERCHANT = "*"
_MERCHANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}")
REVIEW_STATUSES = ("open", "reviewed")


@dataclass(frozen=True)
class BlockEntry:
    merchant_id: str  #: ``*``: every merchant
    user_id: str
    reason: str
    created_by: str
    created_at: datetime


@dataclass(frozen=True)
class ReviewItem:
    """A payment let through unchecked while the risk check was unavailable."""

    id: int
    merchant_id: str
    user_id: str
    trade_id: int
    amount: int
    currency: str
    reason: str
    status: str
    created_at: datetime
    reviewed_by: str | None
    reviewed_at: datetime | None
    note: str


def _text(value: object, field: str, most: int, *, empty: bool = False) -> str:
    if not isinstance(value, str) or len(value) > most or not (empty or value):
        size = f"0-{most}" if empty else f"1-{most}"
        raise InvalidRequest(f"{field} must be {size} characters", field=field)
    if not value.isprintable():
        raise InvalidRequest(f"{field} must be printable characters", field=field)
    return value


def _merchant(db: Database, merchant_id: object) -> str:
    if merchant_id == EVERY_MERCHANT:
        return EVERY_MERCHANT
    if not isinstance(merchant_id, str) or not _MERCHANT.fullmatch(merchant_id):
        raise InvalidRequest("merchant_id must be a merchant id or '*'", field="merchant_id")
    with db.reading() as s:
        if s.get(Merchant, merchant_id) is None:
            raise UnknownMerchant("unknown merchant")
    return merchant_id


def _entry(row: RiskBlock) -> BlockEntry:
    return BlockEntry(row.merchant_id, row.user_id, row.reason, row.created_by, row.created_at)


def block(db: Database, merchant_id: str, user_id: str, *, reason: str, actor: str) -> BlockEntry:
    """Block ``user_id`` at ``merchant_id`` (``*``: at every merchant); an existing entry
    takes the new reason and actor."""
    user_id = _text(user_id, "user_id", 64)
    reason = _text(reason, "reason", 256)
    actor = _text(actor, "actor", 64)
    merchant_id = _merchant(db, merchant_id)

    def work(s: Session) -> BlockEntry:
        row = s.get(RiskBlock, (merchant_id, user_id))
        if row is None:
            row = RiskBlock(
                merchant_id=merchant_id,
                user_id=user_id,
                reason=reason,
                created_by=actor,
                created_at=datetime.now(UTC),
            )
            s.add(row)
        else:
            row.reason, row.created_by = reason, actor
        s.flush()
        return _entry(row)

    return db.run(work)


def unblock(db: Database, merchant_id: str, user_id: str) -> bool:
    """Remove an entry; False when there was none."""
    user_id = _text(user_id, "user_id", 64)
    if merchant_id != EVERY_MERCHANT and not (
        isinstance(merchant_id, str) and _MERCHANT.fullmatch(merchant_id)
    ):
        raise InvalidRequest("merchant_id must be a merchant id or '*'", field="merchant_id")
    stmt = delete(RiskBlock).where(
        RiskBlock.merchant_id == merchant_id, RiskBlock.user_id == user_id
    )
    return bool(db.run(lambda s: execute_core(s, stmt).rowcount))


def blocked(db: Database, merchant_id: str | None = None) -> list[BlockEntry]:
    """The blocklist (one merchant's entries and the ``*`` ones, when given), oldest first."""
    stmt = select(RiskBlock).order_by(
        RiskBlock.created_at, RiskBlock.merchant_id, RiskBlock.user_id
    )
    if merchant_id is not None:
        stmt = stmt.where(RiskBlock.merchant_id.in_((merchant_id, EVERY_MERCHANT)))
    with db.reading() as s:
        return [_entry(r) for r in s.execute(stmt).scalars()]


def blocked_pairs(db: Database) -> frozenset[tuple[str, str]]:
    """Every ``(merchant_id, user_id)`` on the blocklist (what the engine caches)."""
    with db.reading() as s:
        rows = s.execute(select(RiskBlock.merchant_id, RiskBlock.user_id))
        return frozenset((m, u) for m, u in rows)


def record_review(
    db: Database,
    *,
    merchant_id: str,
    user_id: str,
    trade_id: int,
    amount: int,
    currency: str,
    reason: str,
) -> int:
    """Log a payment allowed unchecked; returns the review's id."""
    row = RiskReview(
        merchant_id=merchant_id,
        user_id=user_id,
        trade_id=trade_id,
        amount=amount,
        currency=currency,
        reason=reason[:128],
        status="open",
        created_at=datetime.now(UTC),
        note="",
    )

    def work(s: Session) -> int:
        s.add(row)
        s.flush()
        return int(row.id)

    return db.run(work)


def _review(r: RiskReview) -> ReviewItem:
    return ReviewItem(
        r.id,
        r.merchant_id,
        r.user_id,
        r.trade_id,
        r.amount,
        r.currency,
        r.reason,
        r.status,
        r.created_at,
        r.reviewed_by,
        r.reviewed_at,
        r.note,
    )


def list_reviews(
    db: Database, *, status: str | None = None, merchant_id: str | None = None, limit: int = 100
) -> list[ReviewItem]:
    """Unchecked payments, newest first (what the console shows)."""
    if status is not None and status not in REVIEW_STATUSES:
        raise InvalidRequest(f"status must be one of {', '.join(REVIEW_STATUSES)}")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 10_000:
        raise InvalidRequest("limit must be from 1 to 10000")
    stmt = select(RiskReview).order_by(RiskReview.created_at.desc(), RiskReview.id.desc())
    if status is not None:
        stmt = stmt.where(RiskReview.status == status)
    if merchant_id is not None:
        stmt = stmt.where(RiskReview.merchant_id == merchant_id)
    with db.reading() as s:
        return [_review(r) for r in s.execute(stmt.limit(limit)).scalars()]


def close_review(db: Database, review_id: int, *, actor: str, note: str = "") -> bool:
    """Mark an open review as reviewed; False when there is no such open review."""
    actor = _text(actor, "actor", 64)
    note = _text(note, "note", 2000, empty=True)
    stmt = (
        update(RiskReview)
        .where(RiskReview.id == review_id, RiskReview.status == "open")
        .values(status="reviewed", reviewed_by=actor, reviewed_at=datetime.now(UTC), note=note)
    )
    return bool(db.run(lambda s: execute_core(s, stmt).rowcount))
