"""Business gauges: figures read from the database when Prometheus scrapes.

The pay core owns the SQL; this module only turns a :class:`BusinessSnapshot` into
gauges. The snapshot function is called at most once per ``ttl`` seconds, so several
scrapers (Prometheus, the sampler, a curious engineer) cost one set of queries.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .labels import BoundedLabel

__all__ = ["BusinessCollector", "BusinessSnapshot"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BusinessSnapshot:
    """One reading of the business figures the dashboards and alerts watch."""

    processing_orders: int = 0
    compensation_backlog: Mapping[str, int] = field(default_factory=dict)  # by status
    notification_backlog: int = 0
    pending_postings: int = 0
    recon_differences: Mapping[str, int] = field(default_factory=dict)  # by kind
    #: None: not checked yet (the gauge is left out rather than claiming a balance)
    trial_balance_ok: bool | None = True


class BusinessCollector(Collector):
    """A custom collector yielding the business gauges from a cached snapshot.

    When the snapshot function fails, ``paywatch_business_snapshot_ok`` drops to 0 and
    the business gauges are left out until a snapshot succeeds again: a broken database
    never breaks the whole scrape, and last hour's ``trial_balance_ok 1`` is not served as
    if it were checked now (their rules see no data; ``business_snapshot_stale`` pages).
    """

    def __init__(
        self,
        source: Callable[[], BusinessSnapshot],
        *,
        ttl: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.ttl = ttl
        self.clock = clock
        self._cached: BusinessSnapshot | None = None
        self._at = float("-inf")
        self._ok = True
        self._lock = threading.Lock()
        self._status = BoundedLabel("status", 32)
        self._kind = BoundedLabel("kind", 32)

    def snapshot(self) -> tuple[BusinessSnapshot | None, bool]:
        """The cached snapshot (refreshed when older than ``ttl``) and whether it is fresh."""
        with self._lock:
            now = self.clock()
            if self._cached is None or now - self._at >= self.ttl:
                try:
                    self._cached, self._ok = self.source(), True
                except Exception:  # noqa: BLE001 - a scrape must not fail on it
                    log.exception("business snapshot failed; business gauges left out")
                    self._cached, self._ok = None, False
                self._at = now
            return self._cached, self._ok

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Names only: registering must not call the (database-backed) source.
        return [GaugeMetricFamily(name, doc, labels=labels) for name, doc, labels in _FAMILIES]

    def collect(self) -> Iterable[GaugeMetricFamily]:
        snap, ok = self.snapshot()
        yield GaugeMetricFamily(
            "paywatch_business_snapshot_ok",
            "1 when the last business snapshot was read successfully",
            value=1.0 if ok else 0.0,
        )
        if snap is None:
            return
        yield GaugeMetricFamily(
            "paywatch_orders_processing", _DOCS["processing"], value=snap.processing_orders
        )
        comp = GaugeMetricFamily(
            "paywatch_compensation_backlog", _DOCS["compensation"], labels=["status"]
        )
        for status, n in _fold(snap.compensation_backlog, self._status).items():
            comp.add_metric([status], n)
        yield comp
        yield GaugeMetricFamily(
            "paywatch_notification_backlog", _DOCS["notification"], value=snap.notification_backlog
        )
        yield GaugeMetricFamily(
            "paywatch_pending_postings", _DOCS["pending"], value=snap.pending_postings
        )
        recon = GaugeMetricFamily("paywatch_recon_differences", _DOCS["recon"], labels=["kind"])
        for kind, n in _fold(snap.recon_differences, self._kind).items():
            recon.add_metric([kind], n)
        yield recon
        if snap.trial_balance_ok is not None:
            yield GaugeMetricFamily(
                "paywatch_trial_balance_ok", _DOCS["trial"], value=float(snap.trial_balance_ok)
            )


def _fold(values: Mapping[str, int], bound: BoundedLabel) -> dict[str, float]:
    out: dict[str, float] = {}
    for key, n in values.items():
        label = bound(str(key))
        out[label] = out.get(label, 0.0) + float(n)
    return out


_DOCS = {
    "processing": "Pay orders in processing (sent to a channel, no final result yet)",
    "compensation": "Compensation tasks not yet done, by status",
    "notification": "Merchant notifications not yet delivered",
    "pending": "Buffered hot-account postings not yet folded into balances",
    "recon": "Open reconciliation differences, by kind",
    "trial": "1 when the ledger's trial balance holds, 0 when it does not",
}
_FAMILIES = [
    ("paywatch_business_snapshot_ok", "1 when the last business snapshot was read", []),
    ("paywatch_orders_processing", _DOCS["processing"], []),
    ("paywatch_compensation_backlog", _DOCS["compensation"], ["status"]),
    ("paywatch_notification_backlog", _DOCS["notification"], []),
    ("paywatch_pending_postings", _DOCS["pending"], []),
    ("paywatch_recon_differences", _DOCS["recon"], ["kind"]),
    ("paywatch_trial_balance_ok", _DOCS["trial"], []),
]
