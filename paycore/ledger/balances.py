"""Balance reads: an account's balance across its sub-accounts and buffered postings."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ..db.schema import Account, PendingPosting
from .accounts import AccountRef


def balance_of(session: Session, ref: AccountRef) -> int:
    """The account's balance on its normal side, 0 if it does not exist yet."""
    ids = select(Account.id).where(
        Account.owner_type == ref.owner_type,
        Account.owner_id == ref.owner_id,
        Account.subject_code == ref.subject.code,
        Account.currency == ref.currency,
    )
    posted = session.execute(
        select(func.coalesce(func.sum(Account.balance), 0)).where(Account.id.in_(ids))
    ).scalar_one()
    pending = session.execute(
        select(func.coalesce(func.sum(PendingPosting.delta), 0)).where(
            PendingPosting.account_id.in_(ids), PendingPosting.summary_id.is_(None)
        )
    ).scalar_one()
    return int(posted) + int(pending)
