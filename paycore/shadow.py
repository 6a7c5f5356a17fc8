"""Shadow traffic: a second pay core over the shadow tables, for pressure tests.

A request marked as shadow (``X-Paywatch-Shadow: 1``, see :mod:`paycore.api.edge`) runs
the whole pay link against :class:`ShadowPayCore` instead of the real core:

* it reads and writes only the shadow tables (:mod:`paycore.db.shadow`), so real
  orders, balances, ledger, notifications and compensation tasks never change, and a
  shadow request cannot even see a real order;
* merchants authenticate and are authorised against the **real** merchants table
  (read only: a disabled merchant or a rotated token counts for shadow traffic too);
  a copy of the merchant and its grant is kept in the shadow tables, where the shadow
  rows' foreign keys and the fee and notify-URL reads inside a transaction find it;
* its metrics go to ``CoreMetrics.shadow(step)`` only (:class:`ShadowMetrics`), never to
  the link series the dashboards, SLOs and alerts read;
* it has no guard (shadow load must not take real rate-limit tokens or move real
  breakers), its own risk windows, lock namespace and caches, and whatever channel
  port the composition root gives it (the sandbox).
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any

from sqlalchemy import delete, tuple_, update
from sqlalchemy.orm import Session

from .core import PayCore
from .db.engine import Database
from .db.schema import Merchant, MerchantPayOrg, MerchantProduct
from .db.shadow import ShadowStorage, open_shadow
from .db.util import insert_ignore
from .errors import ContextNotGranted, PayCoreError, ShadowUnavailable
from .merchants import MerchantInfo, MerchantService

log = logging.getLogger(__name__)


class _ShadowTimed:
    __slots__ = ("_count", "outcome", "pay_org", "reason", "step")

    def __init__(self, count: Callable[[str], None], step: str) -> None:
        self._count, self.step = count, step
        self.outcome, self.reason, self.pay_org = "ok", "", ""

    def __enter__(self) -> _ShadowTimed:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._count(self.step)


class ShadowMetrics:
    """The pay core's metrics port for shadow traffic: every step executed is counted by
    ``counter.shadow(step)`` (``collectors.metrics.CoreMetrics``); nothing else."""

    def __init__(self, counter: Any = None) -> None:
        self.counter = counter

    def _count(self, step: str) -> None:
        if self.counter is not None:
            self.counter.shadow(step)

    def timed(self, step: str, pay_org: str = "") -> _ShadowTimed:
        """Count ``step`` when the block ends (whatever its outcome)."""
        return _ShadowTimed(self._count, step)

    def observe(
        self, step: str, outcome: str, reason: str = "", pay_org: str = "", *, seconds: float
    ) -> None:
        """Count ``step``; outcome and latency are not recorded for shadow traffic."""
        self._count(step)


class MirroredMerchants(MerchantService):
    """Merchants for the shadow core: the real service answers, the shadow tables copy.

    ``authenticate``/``get``/``authorize`` read the real merchants (cached by the real
    service) and upsert the merchant and its grant into the shadow tables whenever what
    was read differs from the last copy. Onboarding happens on the real side only.
    """

    def __init__(self, real: MerchantService, shadow_db: Database, core: PayCore) -> None:
        super().__init__(shadow_db, core.ids, core.clock)
        self.real = real
        self._copied: dict[str, MerchantInfo] = {}

    def onboard(self, *args: Any, **kwargs: Any) -> Any:
        raise ContextNotGranted("merchants are onboarded on the real side, not by shadow traffic")

    def get(self, merchant_id: str) -> MerchantInfo:
        info = self.real.get(merchant_id)
        self._mirror(info)
        return info

    def authenticate(self, token: str | None) -> MerchantInfo:
        info = self.real.authenticate(token)
        self._mirror(info)
        return info

    def _mirror(self, info: MerchantInfo) -> None:
        with self._lock:
            if self._copied.get(info.merchant_id) == info:
                return
        self.db.run(lambda s: self._upsert(s, info))
        with self._lock:
            self._copied[info.merchant_id] = info

    def _upsert(self, s: Session, info: MerchantInfo) -> None:
        mid = info.merchant_id
        fields = {
            "name": info.name,
            "status": info.status,
            "fee_bps": info.fee_bps,
            "notify_url": info.notify_url,
        }
        placeholder = hashlib.sha256(f"shadow-copy:{mid}".encode()).hexdigest()  # no credential
        row = {
            "merchant_id": mid,
            "token_hash": placeholder,
            "token_prefix": "shadow",
            "created_at": self.clock(),
            **fields,
        }
        insert_ignore(s, Merchant.__table__, row, on=["merchant_id"])
        s.execute(update(Merchant).where(Merchant.merchant_id == mid).values(**fields))
        prods = sorted(info.products)
        kind = tuple_(MerchantProduct.order_type, MerchantProduct.sub_type)
        s.execute(
            delete(MerchantProduct).where(MerchantProduct.merchant_id == mid, kind.not_in(prods))
        )
        orgs = sorted(info.pay_orgs)
        s.execute(
            delete(MerchantPayOrg).where(
                MerchantPayOrg.merchant_id == mid, MerchantPayOrg.pay_org_no.not_in(orgs)
            )
        )
        for order_type, sub_type in prods:
            grant = {"merchant_id": mid, "order_type": order_type, "sub_type": sub_type}
            insert_ignore(s, MerchantProduct.__table__, grant)
        for org in orgs:
            insert_ignore(s, MerchantPayOrg.__table__, {"merchant_id": mid, "pay_org_no": org})


class ShadowPayCore(PayCore):
    """A :class:`PayCore` over the shadow tables; :meth:`close` also closes its storage."""

    is_shadow = True

    def __init__(self, storage: ShadowStorage, real: PayCore, **kwargs: Any) -> None:
        kwargs.setdefault("hot_policy", real.ledger.accounts.policy)
        super().__init__(
            Database(storage.engine),
            ids=real.ids,
            clock=real.clock,
            lock_ttl=real.lock_ttl,
            lock_wait=real.lock_wait,
            guard=None,
            **kwargs,
        )
        self.storage = storage
        self.merchants = MirroredMerchants(real.merchants, self.db, self)
        self.on_close: list[Callable[[], None]] = []

    def close(self) -> None:
        for hook in self.on_close:
            hook()
        super().close()
        self.storage.dispose()


def build_shadow_core(real: PayCore, *, counter: Any = None, **kwargs: Any) -> ShadowPayCore:
    """Prepare the shadow tables next to ``real``'s database and build the shadow core.

    ``counter``: what :class:`ShadowMetrics` counts on (``CoreMetrics``); ``kwargs`` go
    to :class:`PayCore` (``lock``, ``channel``, ``risk``...). No guard, by design.
    """
    storage = open_shadow(real.db.engine)
    return ShadowPayCore(storage, real, metrics=ShadowMetrics(counter), **kwargs)


class LazyShadow:
    """Builds the shadow core on first use (thread-safe) and closes it with the platform.

    Calling the instance returns the core; a failed build raises
    :class:`ShadowUnavailable` and is tried again on the next call.
    """

    def __init__(self, build: Callable[[], ShadowPayCore]) -> None:
        self._build = build
        self._core: ShadowPayCore | None = None
        self._lock = threading.Lock()

    @property
    def built(self) -> ShadowPayCore | None:
        """The shadow core when it has been built, else None."""
        return self._core

    def __call__(self) -> ShadowPayCore:
        core = self._core
        if core is not None:
            return core
        with self._lock:
            if self._core is None:
                try:
                    self._core = self._build()
                except PayCoreError:
                    raise
                except Exception as exc:  # noqa: BLE001 - never a driver error at the edge
                    log.error("shadow tables unavailable: %s", type(exc).__name__, exc_info=exc)
                    raise ShadowUnavailable("shadow traffic is unavailable") from None
            return self._core

    def close(self) -> None:
        """Close the shadow core if it was built."""
        with self._lock:
            core, self._core = self._core, None
        if core is not None:
            core.close()
