"""The pay core's service layer, assembled from its parts.

:class:`PayCore` takes a database (URL, engine or :class:`Database`), a distributed
lock, an id generator and a clock; nothing is created at import time. The console's
bootstrap builds one from settings; tests build one per backend.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from .channels import ChannelPort
from .db.engine import Database
from .ids import IdGenerator
from .instrument import NULL_METRICS, Metrics
from .ledger import HotPolicy, Ledger
from .locks import DistributedLock, MemoryLock
from .locks.guarded import guarded_hold
from .merchants import MerchantService
from .payments import PayService
from .refunds import RefundService
from .risk import RiskEngine
from .trades import TradeService


def utcnow() -> datetime:
    return datetime.now(UTC)


class PayCore:
    """Merchants, trades, payments, refunds and the ledger over one database."""

    def __init__(
        self,
        db: str | Engine | Database,
        *,
        lock: DistributedLock | None = None,
        ids: IdGenerator | None = None,
        clock: Callable[[], datetime] = utcnow,
        hot_policy: HotPolicy | None = None,
        channel: ChannelPort | None = None,
        lock_ttl: float = 15.0,
        lock_wait: float = 10.0,
        guard: Any = None,
        risk: RiskEngine | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.db = db if isinstance(db, Database) else Database(db)
        self.lock = lock or MemoryLock()
        self.ids = ids or IdGenerator()
        self.clock = clock
        self.channel = channel
        self.lock_ttl, self.lock_wait = lock_ttl, lock_wait
        self.guard = guard  # stability.Guard: wraps dependency calls when wired in
        self.risk = risk or RiskEngine(db=self.db)  # blocklist and review log: this database
        self.metrics: Metrics = metrics or NULL_METRICS
        self.ledger = Ledger(self.ids, clock, hot_policy)
        self.ledger.metrics = self.metrics
        self.merchants = MerchantService(self.db, self.ids, clock)
        self.trades = TradeService(self)
        self.payments = PayService(self)
        self.refunds = RefundService(self)

    def trade_lock(self, trade_id: int, *, link: str) -> AbstractContextManager[str]:
        """Hold the trade's lock (one pay or refund of a trade at a time), through the
        guard as ``link``'s dependency on the lock backend."""
        return guarded_hold(
            self.lock,
            self.guard,
            f"trade:{trade_id}",
            caller=link,
            ttl=self.lock_ttl,
            wait=self.lock_wait,
        )

    def close(self) -> None:
        self.lock.close()
        self.db.dispose()
