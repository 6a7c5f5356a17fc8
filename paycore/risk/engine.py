"""The risk check on the pay link: a weak dependency with a conservative fallback.

:meth:`RiskEngine.decide` runs once per pay attempt that passed the state checks
(the trade exists, belongs to the caller and can be paid). In order:

1. the single-payment ceiling;
2. the blocklist (per merchant and user, or ``*`` for every merchant), held in memory
   and reloaded from the database every ``blocklist_refresh_s``;
3. the velocity and daily limits, per merchant, user and currency, **checked and
   reserved in one atomic step** on the counter store (in-process, or Redis shared by
   every API replica). The reservation is a :class:`RiskHold`: the pay link gives it
   back when the pay order is not begun after all (lock unavailable, a concurrent pay
   won, balance short...), so only attempts that really began count. Checking first
   and counting after the commit would let a burst of concurrent pays all pass the
   check before any of them is counted.

When the check itself is unavailable (the counter store is unreachable, the guard
degrades ``risk`` or its breaker is open), :meth:`RiskEngine.fallback` decides: the
seeds' "allow below the risk threshold, review later". Payments up to
``fallback_max_amount`` go ahead unchecked (the blocklist still holds, from memory)
and each is written to ``risk_reviews``; larger ones are refused.

Refusal messages name only the caller's own limit, never another merchant's data.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..db.engine import Database
from ..errors import PayCoreError, RiskRejected, RiskUnavailable
from . import lists
from .counters import MemoryRiskCounters, RiskCounters
from .lists import EVERY_MERCHANT, BlockEntry
from .policy import RiskPolicy, Window, scope_key, windows_at

log = logging.getLogger(__name__)

BLOCKED = "payment refused by risk policy"
_REFUSED = {
    ("minute", "count"): "too many payments by this user in the last minute",
    ("day", "count"): "daily limit on payments by this user reached",
    ("day", "amount"): "daily amount limit for this user reached",
}


class RiskHold:
    """One attempt's reservation on the risk counters. Used as a context manager around
    the work that begins the pay order: an exception gives the reservation back."""

    __slots__ = ("_counters", "amount", "checked", "scope", "windows")

    def __init__(
        self,
        counters: RiskCounters | None,
        scope: str = "",
        amount: int = 0,
        windows: Sequence[Window] = (),
        *,
        checked: bool = True,
    ) -> None:
        self._counters = counters
        self.scope, self.amount, self.windows = scope, amount, tuple(windows)
        self.checked = checked  #: False: allowed unchecked by the fallback

    def release(self) -> None:
        """Give the reservation back (once; a store that is down keeps it, logged)."""
        counters, self._counters = self._counters, None
        if counters is None:
            return
        try:
            counters.release(self.scope, self.amount, self.windows)
        except RiskUnavailable:
            log.warning("risk reservation not given back: counter store unavailable")

    def __enter__(self) -> RiskHold:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None:
            self.release()


def unchecked_hold() -> RiskHold:
    """The hold of a payment allowed by the fallback: nothing reserved, nothing to give."""
    return RiskHold(None, checked=False)


class _Blocklist:
    """The blocklist as an in-memory set, reloaded every ``refresh_s`` by the caller that
    finds it stale (the others keep using the set they have)."""

    def __init__(self, db: Database | None) -> None:
        self.db = db
        self._pairs: frozenset[tuple[str, str]] | None = None if db is not None else frozenset()
        self._loaded_at = float("-inf")
        self._lock = threading.Lock()

    def blocks(
        self, merchant_id: str, user_id: str, refresh_s: float, *, reload: bool = True
    ) -> bool:
        pairs = self._pairs
        if (reload or pairs is None) and time.monotonic() - self._loaded_at > refresh_s:
            pairs = self._reload()
        if not pairs:
            return False
        return (merchant_id, user_id) in pairs or (EVERY_MERCHANT, user_id) in pairs

    def _reload(self) -> frozenset[tuple[str, str]] | None:
        if self.db is None:
            return self._pairs
        asked = time.monotonic()
        if not self._lock.acquire(blocking=self._pairs is None):
            return self._pairs  # another thread is reloading: the current set will do
        try:
            if self._loaded_at >= asked:  # loaded by another thread while this one waited
                return self._pairs
            try:
                self._pairs = lists.blocked_pairs(self.db)
            except PayCoreError:
                if self._pairs is None:
                    raise RiskUnavailable("blocklist unavailable") from None
                log.warning("blocklist reload failed; keeping the loaded one", exc_info=True)
            self._loaded_at = time.monotonic()
            return self._pairs
        finally:
            self._lock.release()

    def invalidate(self) -> None:
        self._loaded_at = float("-inf")


class RiskEngine:
    """Decides whether a payment may go ahead; thread-safe.

    ``counters``: where attempts are counted (default in-process); ``db``: where the
    blocklist and the review log live (without one: no blocklist, and unchecked
    allowances are only logged); ``clock``: seconds since the epoch (names the windows).
    """

    def __init__(
        self,
        policy: RiskPolicy | None = None,
        *,
        counters: RiskCounters | None = None,
        db: Database | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.policy = policy or RiskPolicy()
        self.counters = counters or MemoryRiskCounters()
        self.db = db
        self.clock = clock
        self._blocklist = _Blocklist(db)

    # -- the check ---------------------------------------------------------------------
    def reserve(
        self, merchant_id: str, user_id: str, amount: int, currency: str = "CNY"
    ) -> RiskHold:
        """Check the payment and reserve it on the counters, or raise
        :class:`RiskRejected`; :class:`RiskUnavailable` when the check cannot be made."""
        policy = self.policy
        if amount > policy.max_amount:
            raise RiskRejected("amount above the single-payment ceiling")
        if self._blocklist.blocks(merchant_id, user_id, policy.blocklist_refresh_s):
            raise RiskRejected(BLOCKED)
        windows = windows_at(policy, self.clock())
        scope = scope_key(merchant_id, user_id, currency)
        refused = self.counters.reserve(scope, amount, windows)
        if refused is not None:
            raise RiskRejected(_REFUSED[(refused.window.kind, refused.limit)])
        return RiskHold(self.counters, scope, amount, windows)

    def fallback(
        self,
        merchant_id: str,
        user_id: str,
        amount: int,
        *,
        currency: str = "CNY",
        trade_id: int,
        reason: str,
    ) -> RiskHold:
        """What to decide while the check is unavailable: allow unchecked up to the
        fallback threshold (recorded for review), refuse larger payments."""
        if amount > self.policy.fallback_max_amount:
            raise RiskRejected("risk check unavailable; amount above the fallback threshold")
        if self._blocklist.blocks(merchant_id, user_id, 0, reload=False):
            raise RiskRejected(BLOCKED)
        if self.db is None:
            log.warning(
                "payment of trade %s allowed unchecked (%s); no review log", trade_id, reason
            )
        else:
            lists.record_review(
                self.db,
                merchant_id=merchant_id,
                user_id=user_id,
                trade_id=trade_id,
                amount=amount,
                currency=currency,
                reason=reason,
            )
        return unchecked_hold()

    def decide(
        self,
        merchant_id: str,
        user_id: str,
        amount: int,
        *,
        currency: str,
        trade_id: int,
        guard: Any = None,
        caller: str = "link.pay",
        labels: Mapping[str, str] | None = None,
    ) -> RiskHold:
        """:meth:`reserve` through the guard (resource ``risk``, a weak dependency) with
        :meth:`fallback` when the check is unavailable; without a guard, the fallback
        covers an unreachable counter store."""
        made: list[RiskHold] = []
        failed: list[PayCoreError] = []

        def check() -> RiskHold:
            try:
                hold = self.reserve(merchant_id, user_id, amount, currency)
            except (RiskRejected, RiskUnavailable) as exc:
                failed.append(exc)
                raise
            made.append(hold)
            return hold

        def fallback() -> RiskHold:
            if made:  # the check passed, only slower than the guard's budget
                return made[0]
            if failed and isinstance(failed[0], RiskRejected):
                raise failed[0]  # a refusal is an answer, never a reason to skip the check
            reason = failed[0].message if failed else _guard_reason(guard)
            return self.fallback(
                merchant_id, user_id, amount, currency=currency, trade_id=trade_id, reason=reason
            )

        if guard is None:
            try:
                return check()
            except RiskUnavailable:
                return fallback()
        result: RiskHold = guard.call(
            "risk", check, caller=caller, labels=labels or {}, fallback=fallback
        )
        return result

    # -- the blocklist -----------------------------------------------------------------
    def block(self, merchant_id: str, user_id: str, *, reason: str, actor: str) -> BlockEntry:
        """Block a user at a merchant (``*``: every merchant). Takes effect in this
        process at once, in every other within ``blocklist_refresh_s``."""
        entry = lists.block(self._db(), merchant_id, user_id, reason=reason, actor=actor)
        self._blocklist.invalidate()
        return entry

    def unblock(self, merchant_id: str, user_id: str) -> bool:
        """Remove a blocklist entry; False when there was none."""
        removed = lists.unblock(self._db(), merchant_id, user_id)
        self._blocklist.invalidate()
        return removed

    def blocked(self, merchant_id: str | None = None) -> list[BlockEntry]:
        """The blocklist (one merchant's entries and the ``*`` ones, when given)."""
        return lists.blocked(self._db(), merchant_id)

    def _db(self) -> Database:
        if self.db is None:
            raise RuntimeError("this risk engine has no database")
        return self.db

    def close(self) -> None:
        """Release the counter store's connections."""
        self.counters.close()


def _guard_reason(guard: Any) -> str:
    snapshot = getattr(guard, "snapshot", None)
    if "risk" in getattr(snapshot, "degraded", ()):
        return "risk degraded by switch"
    return "risk check refused by the guard (limit or open breaker)"
