"""Double-entry ledger: accounts mapped to subjects, balanced entries, hot accounts."""

from .accounts import (
    AccountRef,
    HotPolicy,
    channel_clearing,
    coupon_funding,
    fee_income,
    guarantee_escrow,
    merchant_payable,
    platform_transit,
    points_issued,
    user_balance,
    user_points,
)
from .balances import balance_of
from .hot import drain_pending, pending_count
from .journal import Ledger, Leg, credit, debit
from .trial import TrialBalance, trial_balance

__all__ = [
    "AccountRef",
    "HotPolicy",
    "balance_of",
    "Leg",
    "Ledger",
    "TrialBalance",
    "channel_clearing",
    "coupon_funding",
    "credit",
    "debit",
    "drain_pending",
    "fee_income",
    "guarantee_escrow",
    "merchant_payable",
    "pending_count",
    "platform_transit",
    "points_issued",
    "trial_balance",
    "user_balance",
    "user_points",
]
