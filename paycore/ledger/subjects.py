"""The chart of accounts: accounting subjects and which side is their normal one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Subject:
    code: str
    name: str
    kind: str  # asset | liability | income | expense | equity
    normal_side: str  # debit | credit

    @property
    def sign(self) -> int:
        """+1 when a debit increases the balance, -1 when a credit does."""
        return 1 if self.normal_side == "debit" else -1


CHANNEL_CLEARING = Subject("1002", "channel clearing", "asset", "debit")
USER_BALANCE = Subject("2001", "user balance", "liability", "credit")
MERCHANT_PAYABLE = Subject("2002", "merchant payable", "liability", "credit")
GUARANTEE_ESCROW = Subject("2003", "guarantee escrow", "liability", "credit")
PLATFORM_TRANSIT = Subject("2101", "platform transit", "liability", "credit")
FEE_INCOME = Subject("6001", "fee income", "income", "credit")
#: a user's loyalty points: the platform owes them, like a balance, but spendable only as
#: a pay's points part
USER_POINTS = Subject("2005", "user points", "liability", "credit")
#: marketing: points granted to users (debited as points are issued)
POINTS_ISSUED = Subject("6601", "points issued", "expense", "debit")
#: marketing: what coupons paid (debited as coupons are redeemed, credited back on refund)
COUPON_FUNDING = Subject("6602", "coupon funding", "expense", "debit")

SUBJECTS: dict[str, Subject] = {
    s.code: s
    for s in (
        CHANNEL_CLEARING,
        USER_BALANCE,
        MERCHANT_PAYABLE,
        GUARANTEE_ESCROW,
        PLATFORM_TRANSIT,
        FEE_INCOME,
        USER_POINTS,
        POINTS_ISSUED,
        COUPON_FUNDING,
    )
}
