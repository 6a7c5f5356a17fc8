"""The console bench's data (see bench/console.py): the last hours of raw samples as the
running processes write them (real CoreMetrics registries fed with simulated pay traffic,
read by a Sampler into the TimeSeriesStore, then folded into rollups), and a few alerts.

Loaded by path from bench/console.py (``bench_module("_console_seed")``).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from collectors import CoreMetrics, Sampler, TimeSeriesStore

ORGS = ("SANDBOX_A", "SANDBOX_B", "SANDBOX_C")
INTERVAL = 5.0  # the sampler's interval


class BatchedStore(TimeSeriesStore):
    """The store, with the sampler's writes gathered and sent in large batches (seeding
    hours of 5 s samples one sampler pass at a time would take many minutes)."""

    def __init__(self, engine: sa.Engine, batch: int = 50_000) -> None:
        super().__init__(engine)
        self.batch, self.pending, self.written = batch, [], 0

    def write(self, samples: Iterable[Any]) -> int:
        rows = list(samples)
        self.pending.extend(rows)
        if len(self.pending) >= self.batch:
            self.flush()
        return len(rows)

    def flush(self) -> None:
        if self.pending:
            self.written += super().write(self.pending)
            self.pending = []


def traffic(m: CoreMetrics, rnd: random.Random, degraded: bool) -> None:
    """One sampler interval of pay traffic on one instance (a few calls per series: the
    row count depends on the series, not on the volume)."""
    for org in ORGS:
        for _ in range(3):
            m.observe("trade_create", "ok", seconds=rnd.uniform(0.003, 0.02))
            m.guard_outcome("risk", "link.pay", "degraded" if degraded else "pass", 0.0005)
            m.observe("pay", "pending", pay_org=org, seconds=rnd.uniform(0.005, 0.05))
            m.guard_outcome(f"channel.{org}", "link.pay", "pass", 0.0)
            m.observe("channel_call", "ok", pay_org=org, seconds=rnd.lognormvariate(-3.5, 0.6))
            m.observe("callback", "ok", pay_org=org, seconds=rnd.uniform(0.005, 0.04))
            m.observe("ledger_posting", "ok", seconds=rnd.uniform(0.001, 0.01))
            m.observe("notification", "ok", seconds=rnd.uniform(0.01, 0.2))
            m.guard_outcome("coupon", "link.pay", "pass", 0.001)
        if rnd.random() < 0.3:
            m.observe("channel_call", "error", "CHANNEL_5XX", org, seconds=0.3)
        if rnd.random() < 0.1:
            m.observe("channel_call", "timeout", "", org, seconds=3.0)
            m.guard_outcome(f"channel.{org}", "link.pay", "timeout", 3.0)
        if rnd.random() < 0.2:
            m.observe("refund", "ok", pay_org=org, seconds=rnd.uniform(0.01, 0.05))
    if rnd.random() < 0.2:
        m.observe("pay", "rejected", "RISK_REJECTED", seconds=0.004)
    if rnd.random() < 0.05:
        m.guard_outcome("notification", "link.callback", "fallback", 0.5)


def seed_recent(
    url: str, now: float, hours: float, instances: int, log: Callable[[str], None]
) -> dict[str, int]:
    """The last ``hours`` of raw samples of ``instances`` processes, folded into rollups
    (progress through ``log``)."""
    engine = sa.create_engine(url)
    try:
        store = BatchedStore(engine)
        rnd = random.Random(7)
        start = now - hours * 3600
        ticks = int(hours * 3600 // INTERVAL)
        procs = []
        for i in range(instances):
            reg = CollectorRegistry()
            m = CoreMetrics(reg)
            for org in ORGS:
                m.set_breaker_state(f"channel.{org}", "closed")
            sampler = Sampler(reg, store, instance=f"api:bench:{i + 1}", interval=INTERVAL)
            procs.append((m, sampler))
        for k in range(ticks + 1):
            t = start + k * INTERVAL
            degraded = now - t < 1800  # risk degraded for the last half hour
            for m, sampler in procs:
                traffic(m, rnd, degraded)
                sampler.sample_once(now=t)
            if k % 720 == 0:
                log(f"  sampled {k * INTERVAL / 3600:.0f} h of {hours:g} h")
        store.flush()
        folded = store.rollup(now)
        with engine.connect() as conn:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
            for table in ("metric_samples", "metric_rollup_1m", "metric_rollup_1h"):
                conn.exec_driver_sql(f"ANALYZE {table}")
        return {"raw_rows": store.written, **{f"folded_{k}": v for k, v in folded.items()}}
    finally:
        engine.dispose()


def seed_alerts(url: str, now: float) -> None:
    """60 alert states: 3 firing, 2 pending, the rest resolved."""
    engine = sa.create_engine(url)
    rows = []
    for i in range(60):
        state = "firing" if i < 3 else "pending" if i < 5 else "resolved"
        rows.append(
            {
                "fingerprint": f"bench{i:04d}",
                "rule": f"BenchRule{i % 7}",
                "labels": json.dumps({"step": "pay", "n": str(i)}),
                "annotations": "{}",
                "severity": "page" if i % 2 else "ticket",
                "state": state,
                "value": 0.1,
                "active_since": now - 600,
                "fired_at": now - 300 if state == "firing" else None,
                "resolved_at": now - 60 if state == "resolved" else None,
                "last_eval": now,
            }
        )
    cols = ", ".join(rows[0])
    vals = ", ".join(f":{c}" for c in rows[0])
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"INSERT INTO alert_states ({cols}) VALUES ({vals})"), rows)
    finally:
        engine.dispose()
