"""What the pay core's services are given: one frozen object of their dependencies.

:class:`paycore.core.PayCore` builds a :class:`CoreDeps` from its parts and hands it to
each service; no service sees the core itself. Changing a part of the core (the runtime
wires the channel and the metrics in after building it) builds new dependencies and
new services.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from .channels.submitter import ChannelSubmitter
from .context import BizContext
from .db.engine import Database
from .ids import IdGenerator
from .instrument import Metrics
from .ledger import Ledger
from .locks import DistributedLock
from .locks.guarded import guarded_hold
from .risk import RiskEngine


class MerchantDirectory(Protocol):
    """What the services ask of :class:`paycore.merchants.MerchantService`."""

    def authorize(self, merchant_id: str, ctx: BizContext) -> Any: ...

    def get(self, merchant_id: str) -> Any: ...


@dataclass(frozen=True, slots=True)
class CoreDeps:
    """The pay core's parts, as its services use them.

    ``guard``: a ``stability.Guard`` wrapping dependency calls, when wired in.
    ``lock_ttl``/``lock_wait``: how long a trade's lock is held at most, and waited for.
    """

    db: Database
    ledger: Ledger
    ids: IdGenerator
    clock: Callable[[], datetime]
    metrics: Metrics
    merchants: MerchantDirectory
    risk: RiskEngine
    channel: ChannelSubmitter
    lock: DistributedLock
    guard: Any = None
    tools: Any = None  # paycore.tools.ToolRegistry
    tool_env: Any = None  # paycore.tools.ToolEnv
    router: Any = None  # paycore.routing.Router: chooses the pay org when a pay names none
    lock_ttl: float = 15.0
    lock_wait: float = 10.0

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

    def plain_trade_lock(self, trade_id: int) -> AbstractContextManager[str]:
        """The trade's lock straight from the backend (a confirmation, off the pay links)."""
        return self.lock.hold(f"trade:{trade_id}", ttl=self.lock_ttl, wait=self.lock_wait)
