"""Account resolution: owner + subject + currency → the account row to post to.

Hot platform accounts are configured per account (:class:`HotPolicy`): either spread
over N sub-accounts (each posting picks one at random, so concurrent postings touch
different rows), or buffered (the balance row is updated in batches by summary
posting; see :mod:`paycore.ledger.hot`).
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ..db.schema import Account
from ..db.util import insert_ignore
from ..ids import IdGenerator
from .subjects import (
    CHANNEL_CLEARING,
    COUPON_FUNDING,
    FEE_INCOME,
    GUARANTEE_ESCROW,
    MERCHANT_PAYABLE,
    PLATFORM_TRANSIT,
    POINTS_ISSUED,
    SUBJECTS,
    USER_BALANCE,
    USER_POINTS,
    Subject,
)

NONE, SUB_ACCOUNTS, BUFFERED = "none", "sub_accounts", "buffered"


@dataclass(frozen=True, slots=True)
class AccountRef:
    """Names an account by what it is, not by id."""

    owner_type: str  # user | merchant | platform
    owner_id: str
    subject: Subject
    currency: str

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.owner_type, self.owner_id, self.subject.code, self.currency)


def user_owner_id(merchant_id: str, user_id: str) -> str:
    """The owner id of a user's accounts: the user as the merchant that funds it knows it.

    A user belongs to the merchant that names it: ``u1`` of merchant A and ``u1`` of
    merchant B are two people with two balances, and no merchant can name the other's.
    ``:`` is outside the alphabet of merchant and user ids, so the pair cannot be forged.
    """
    return f"{merchant_id}:{user_id}"


def user_balance(merchant_id: str, user_id: str, currency: str) -> AccountRef:
    """The balance of ``user_id`` as merchant ``merchant_id``'s user (see
    :func:`user_owner_id`): every posting to a user's money names its merchant."""
    return AccountRef("user", user_owner_id(merchant_id, user_id), USER_BALANCE, currency)


def merchant_payable(merchant_id: str, currency: str) -> AccountRef:
    return AccountRef("merchant", merchant_id, MERCHANT_PAYABLE, currency)


def guarantee_escrow(merchant_id: str, currency: str) -> AccountRef:
    return AccountRef("merchant", merchant_id, GUARANTEE_ESCROW, currency)


def platform_transit(currency: str) -> AccountRef:
    return AccountRef("platform", "transit", PLATFORM_TRANSIT, currency)


def fee_income(currency: str) -> AccountRef:
    return AccountRef("platform", "fee", FEE_INCOME, currency)


def channel_clearing(pay_org_no: str, currency: str) -> AccountRef:
    return AccountRef("platform", pay_org_no, CHANNEL_CLEARING, currency)


def user_points(merchant_id: str, user_id: str, currency: str) -> AccountRef:
    """The points of ``user_id`` as merchant ``merchant_id``'s user (a user account: it
    never goes below zero, so spending more points than granted is refused)."""
    return AccountRef("user", user_owner_id(merchant_id, user_id), USER_POINTS, currency)


def points_issued(currency: str) -> AccountRef:
    """The platform's marketing account that points are granted from."""
    return AccountRef("platform", "points", POINTS_ISSUED, currency)


def coupon_funding(currency: str) -> AccountRef:
    """The platform's marketing account that pays coupon parts."""
    return AccountRef("platform", "coupons", COUPON_FUNDING, currency)


@dataclass
class HotPolicy:
    """How each hot account is handled; everything not listed is a plain account.

    Keys are ``(owner_type, subject_code)`` with an optional owner id (``"*"`` = any).
    """

    rules: dict[tuple[str, str, str], tuple[str, int]] = field(
        default_factory=lambda: {
            ("platform", "*", PLATFORM_TRANSIT.code): (SUB_ACCOUNTS, 16),
            ("platform", "*", CHANNEL_CLEARING.code): (SUB_ACCOUNTS, 8),
            ("platform", "*", FEE_INCOME.code): (BUFFERED, 0),
        }
    )

    def mode_for(self, ref: AccountRef) -> tuple[str, int]:
        for owner_id in (ref.owner_id, "*"):
            rule = self.rules.get((ref.owner_type, owner_id, ref.subject.code))
            if rule:
                return rule
        return (NONE, 0)


@dataclass(frozen=True, slots=True)
class ResolvedAccount:
    """What posting needs to know about an account, cached after first commit."""

    id: int
    sign: int
    hot_mode: str
    allow_negative: bool
    sub_ids: tuple[int, ...] = ()

    def pick(self) -> int:
        """The row a posting should update: a random sub-account, or the account itself."""
        return random.choice(self.sub_ids) if self.sub_ids else self.id


class AccountDirectory:
    """Finds or creates accounts; caches only rows known to be committed."""

    def __init__(self, ids: IdGenerator, policy: HotPolicy | None = None) -> None:
        self.ids = ids
        self.policy = policy or HotPolicy()
        self._cache: dict[tuple[str, str, str, str], ResolvedAccount] = {}
        self._lock = threading.Lock()

    def resolve(self, session: Session, ref: AccountRef, now: datetime) -> ResolvedAccount:
        with self._lock:
            hit = self._cache.get(ref.key)
        if hit is not None:
            return hit
        mode, subs = self.policy.mode_for(ref)
        created = self._ensure(session, ref, now, mode, subs)
        rows = session.execute(
            select(Account.id, Account.sub_index, Account.allow_negative)
            .where(
                Account.owner_type == ref.owner_type,
                Account.owner_id == ref.owner_id,
                Account.subject_code == ref.subject.code,
                Account.currency == ref.currency,
            )
            .order_by(Account.sub_index)
        ).all()
        parent = rows[0]
        sub_ids = tuple(r.id for r in rows[1:]) if mode == SUB_ACCOUNTS else ()
        resolved = ResolvedAccount(
            parent.id, ref.subject.sign, mode, parent.allow_negative, sub_ids
        )
        created_here = session.info.setdefault("paywatch_created_accounts", set())
        if created:
            created_here.add(ref.key)
        if ref.key not in created_here:  # never cache a row a rollback could undo
            with self._lock:
                self._cache[ref.key] = resolved
        return resolved

    def _ensure(
        self, session: Session, ref: AccountRef, now: datetime, mode: str, subs: int
    ) -> bool:
        allow_negative = ref.owner_type != "user"
        base = {
            "owner_type": ref.owner_type,
            "owner_id": ref.owner_id,
            "subject_code": ref.subject.code,
            "currency": ref.currency,
            "hot_mode": mode,
            "allow_negative": allow_negative,
            "balance": 0,
            "created_at": now,
        }
        parent_id = self.ids.next_id()
        created = insert_ignore(
            session,
            Account.__table__,
            {**base, "id": parent_id, "sub_index": 0, "parent_id": None, "sub_count": subs},
        )
        if created and mode == SUB_ACCOUNTS:
            for i in range(1, subs + 1):
                insert_ignore(
                    session,
                    Account.__table__,
                    {
                        **base,
                        "id": self.ids.next_id(),
                        "sub_index": i,
                        "parent_id": parent_id,
                        "sub_count": 0,
                    },
                )
        return created


def subject_of(code: str) -> Subject:
    return SUBJECTS[code]
