"""Trial balance: the ledger's own proof that it is consistent.

Checks, in one snapshot: all legs sum to zero per currency; every entry balances;
every account's balance (plus its still-buffered deltas) equals the sum of its legs
on its normal side.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import func, select

from ..db.engine import Database
from ..db.schema import Account, JournalLeg, LedgerSubject, PendingPosting


@dataclass
class TrialBalance:
    legs_total: dict[str, int] = field(default_factory=dict)
    unbalanced_entries: list[int] = field(default_factory=list)
    #: (account id, balance incl. pending, sum of legs on the normal side)
    account_mismatches: list[tuple[int, int, int]] = field(default_factory=list)
    debit_side: dict[str, int] = field(default_factory=dict)
    credit_side: dict[str, int] = field(default_factory=dict)
    pending_postings: int = 0

    @property
    def ok(self) -> bool:
        return (
            all(v == 0 for v in self.legs_total.values())
            and not self.unbalanced_entries
            and not self.account_mismatches
        )


def trial_balance(db: Database) -> TrialBalance:
    """Compute the trial balance over the whole ledger."""
    report = TrialBalance()
    with db.session() as s:
        if db.is_postgres:
            s.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        for currency, total in s.execute(
            select(JournalLeg.currency, func.sum(JournalLeg.amount)).group_by(JournalLeg.currency)
        ):
            report.legs_total[currency] = int(total)
        report.unbalanced_entries = [
            int(e)
            for e in s.execute(
                select(JournalLeg.entry_id)
                .group_by(JournalLeg.entry_id)
                .having(func.sum(JournalLeg.amount) != 0)
            ).scalars()
        ]
        legs = (
            select(JournalLeg.account_id, func.sum(JournalLeg.amount).label("total"))
            .group_by(JournalLeg.account_id)
            .subquery()
        )
        pend = (
            select(PendingPosting.account_id, func.sum(PendingPosting.delta).label("total"))
            .where(PendingPosting.summary_id.is_(None))
            .group_by(PendingPosting.account_id)
            .subquery()
        )
        rows = s.execute(
            select(
                Account.id,
                Account.currency,
                Account.balance,
                LedgerSubject.normal_side,
                func.coalesce(legs.c.total, 0),
                func.coalesce(pend.c.total, 0),
            )
            .join(LedgerSubject, LedgerSubject.code == Account.subject_code)
            .outerjoin(legs, legs.c.account_id == Account.id)
            .outerjoin(pend, pend.c.account_id == Account.id)
        ).all()
        for acct_id, currency, balance, side, leg_sum, pending in rows:
            sign = 1 if side == "debit" else -1
            effective = int(balance) + int(pending)
            expected = sign * int(leg_sum)
            if effective != expected:
                report.account_mismatches.append((int(acct_id), effective, expected))
            bucket = report.debit_side if sign == 1 else report.credit_side
            bucket[currency] = bucket.get(currency, 0) + effective
        report.pending_postings = int(
            s.execute(
                select(func.count())
                .select_from(PendingPosting)
                .where(PendingPosting.summary_id.is_(None))
            ).scalar_one()
        )
    return report
