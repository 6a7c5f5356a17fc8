"""The pay core, assembled from its parts.

:class:`PayCore` takes a database (URL, engine or :class:`Database`), a distributed
lock, an id generator and a clock; nothing is created at import time. The runtime's
bootstrap builds one from settings; tests build one per backend. It is the pay core's
composition: it builds the services' dependencies (:class:`~paycore.deps.CoreDeps`) and
the services, and none of them sees it.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.engine import Engine

from .cashier import CashierService
from .channels import ChannelPort
from .channels.submitter import ChannelSubmitter
from .db.engine import Database
from .deps import CoreDeps
from .ids import IdGenerator
from .instrument import NULL_METRICS, Metrics
from .ledger import HotPolicy, Ledger
from .locks import DistributedLock, MemoryLock
from .merchants import MerchantService
from .payments import PayService
from .points import PointsService
from .refunds import RefundService
from .risk import RiskEngine
from .settlement import SettlementService
from .tools import ToolEnv, default_registry
from .trade_reads import TradeReader
from .trades import TradeService

#: the parts the services are built from: setting one (the runtime wires the channel
#: and the metrics in after building the core; a shadow core swaps the merchants; tests
#: swap the lock) builds the dependencies and the services again
_PARTS = frozenset(
    {
        "db",
        "ledger",
        "ids",
        "clock",
        "metrics",
        "merchants",
        "risk",
        "channel",
        "lock",
        "guard",
        "tools",
        "coupons",
        "router",
        "lock_ttl",
        "lock_wait",
    }
)


def utcnow() -> datetime:
    return datetime.now(UTC)


class PayCore:
    """Merchants, trades, payments, refunds and the ledger over one database."""

    deps: CoreDeps
    settlement: SettlementService
    trades: TradeService
    payments: PayService
    refunds: RefundService
    points: PointsService
    cashier: CashierService

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
        tools: Any = None,
        coupons: Any = None,
        router: Any = None,
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
        self.tools = tools  # paycore.tools.ToolRegistry (None: the default tools)
        self.coupons = coupons  # paycore.coupons client (None: no coupon service wired in)
        self.router = router  # paycore.routing.Router (None: a pay's org is the trade's)
        self._wire()

    def __setattr__(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)
        if name in _PARTS and "deps" in self.__dict__:
            self._wire()

    def _wire(self) -> None:
        """Build the dependencies from the current parts, and the services from them."""
        # the database and the ledger are dependencies of the map: the guard wraps them
        self.db.guard = self.ledger.guard = self.guard
        deps = CoreDeps(
            db=self.db,
            ledger=self.ledger,
            ids=self.ids,
            clock=self.clock,
            metrics=self.metrics,
            merchants=self.merchants,
            risk=self.risk,
            channel=ChannelSubmitter(self.channel),
            lock=self.lock,
            guard=self.guard,
            tools=self.tools if self.tools is not None else default_registry(),
            tool_env=ToolEnv(
                self.db, self.ledger, self.guard, self.merchants, coupons=self.coupons
            ),
            router=self.router,
            lock_ttl=self.lock_ttl,
            lock_wait=self.lock_wait,
        )
        reader = TradeReader(deps.db)
        settlement = SettlementService(deps)
        refunds = RefundService(deps, reader, settlement)
        services = {
            "settlement": settlement,
            "payments": PayService(deps, reader, settlement),
            "refunds": refunds,
            "points": PointsService(deps),
            "trades": TradeService(deps, reader, refunds.refund),
            "cashier": CashierService(deps, reader),
            "deps": deps,  # last: its presence tells __setattr__ the core is wired
        }
        for name, service in services.items():
            object.__setattr__(self, name, service)

    def trade_lock(self, trade_id: int, *, link: str) -> AbstractContextManager[str]:
        """Hold the trade's lock (one pay or refund of a trade at a time), through the
        guard as ``link``'s dependency on the lock backend."""
        return self.deps.trade_lock(trade_id, link=link)

    def close(self) -> None:
        self.lock.close()
        self.db.dispose()
