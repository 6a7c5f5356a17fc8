"""SQLAlchemy 2 models of the pay core. Every pay table carries its shard key.

Money columns are ``BigInteger`` minor units. Ids are Snowflake ids assigned by the
application (see :mod:`paycore.ids`), so rows can be created without a round trip
and sharded by merchant or user later (Citus distributes on those columns).

The tables live by group in :mod:`.merchant_tables`, :mod:`.pay_tables`,
:mod:`.ledger_tables` and :mod:`.ops_tables`, all on the one :class:`Base` of
:mod:`.base`; this module names them all (``from paycore.db.schema import X``).
"""

from .base import Base, Money, Ts, metadata
from .ledger_tables import Account, JournalEntry, JournalLeg, LedgerSubject, PendingPosting
from .manual_tables import ManualAction
from .merchant_tables import (
    Merchant,
    MerchantApiToken,
    MerchantNotifySecret,
    MerchantPayOrg,
    MerchantProduct,
)
from .ops_tables import (
    CompensationTask,
    JobLease,
    Notification,
    NotificationAttempt,
    ReconDifference,
    ReconRun,
)
from .pay_tables import PayException, PayItem, PayOrder, RiskBlock, RiskReview, Trade
from .reroute_tables import PayItemReroute
from .routing_tables import RoutingRuleSet

__all__ = [
    "Account",
    "Base",
    "CompensationTask",
    "JobLease",
    "JournalEntry",
    "JournalLeg",
    "LedgerSubject",
    "ManualAction",
    "Merchant",
    "MerchantApiToken",
    "MerchantNotifySecret",
    "MerchantPayOrg",
    "MerchantProduct",
    "Money",
    "Notification",
    "NotificationAttempt",
    "PayException",
    "PayItem",
    "PayItemReroute",
    "PayOrder",
    "PendingPosting",
    "ReconDifference",
    "ReconRun",
    "RiskBlock",
    "RiskReview",
    "RoutingRuleSet",
    "Trade",
    "Ts",
    "metadata",
]
