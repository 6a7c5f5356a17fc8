"""Loyalty points: granted to a merchant's users by the platform, spent as a pay's
``points`` part (:class:`paycore.tools.PointsTool`).

A grant posts ``points_issued`` (the platform's marketing account) -> ``user_points``
(the user's, never below zero). Points are held per merchant, user and currency, like a
balance, and in minor units of that currency (1 point pays 1 minor unit).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.orm import Session

from .context import BizContext, check_code
from .deps import CoreDeps
from .ledger import balance_of, points_issued, user_points
from .models import check_number, check_text
from .money import check_amount, check_currency
from .postings import move

__all__ = ["GRANT", "PointsGrant", "PointsService"]

#: the ledger entries of grants; the business context they are posted under
GRANT = "points_grant"
_GRANT_ORDER, _GRANT_SUB, _GRANT_ORG = "points", "grant", "PLATFORM"


@dataclass(frozen=True, slots=True)
class PointsGrant:
    """A grant as posted: its number, and the user's points after it."""

    grant_no: str
    merchant_id: str
    user_id: str
    amount: int
    currency: str
    balance: int
    posted: bool  # False: this grant_no was posted before (nothing changed)


class PointsService:
    """Grants points and reads what a user holds."""

    def __init__(self, deps: CoreDeps) -> None:
        self.deps = deps

    def grant(
        self,
        merchant_id: str,
        user_id: str,
        amount: int,
        currency: str = "CNY",
        reason: str = "",
        *,
        grant_no: str | None = None,
    ) -> PointsGrant:
        """Grant ``amount`` points to ``user_id`` of ``merchant_id``. Idempotent on
        ``grant_no`` (default: a new number each call). Raises
        :class:`~paycore.errors.UnknownMerchant` for a merchant that does not exist, and a
        4xx for a bad user, amount, currency or reason; nothing is written then."""
        check_code(merchant_id, "merchant_id")
        check_number(user_id, "user_id")
        check_amount(amount)
        check_currency(currency)
        check_text(reason, "reason")
        if grant_no is not None:
            check_number(grant_no, "grant_no")
        self.deps.merchants.get(merchant_id)  # unknown merchant: 404, nothing written
        number = grant_no or str(self.deps.ids.next_id())
        ctx = BizContext(merchant_id, _GRANT_ORDER, _GRANT_SUB, _GRANT_ORG)
        to = user_points(merchant_id, user_id, currency)

        def work(s: Session) -> bool:
            posted = self.deps.ledger.post(
                s,
                biz_type=GRANT,
                biz_key=f"{merchant_id}:{number}",
                ctx=ctx,
                currency=currency,
                legs=move(points_issued(currency), to, amount),
                memo=reason or "points granted",
            )
            return posted is not None

        posted = self.deps.db.run(work)
        with self.deps.db.reading() as s:  # balances move as the entry commits
            balance = balance_of(s, to)
        return PointsGrant(number, merchant_id, user_id, amount, currency, balance, posted)

    def balance(self, merchant_id: str, user_id: str, currency: str = "CNY") -> int:
        """The points ``user_id`` of ``merchant_id`` holds in ``currency``."""
        check_number(user_id, "user_id")
        check_currency(currency)
        with self.deps.db.reading() as s:
            return balance_of(s, user_points(merchant_id, user_id, currency))
