"""What the time-series store tests share: a store at an injected time, simulated pay traffic
sampled every 5 s from ``T0``, and series as comparable values."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from collectors import CoreMetrics, Sampler, TimeSeriesStore

T0 = 1_699_999_200.0  # a whole hour (and minute), epoch seconds
REQ = "paywatch_link_requests_total"
LAT = "paywatch_link_latency_seconds"


def make_store(db, now: float, **kw) -> TimeSeriesStore:
    return TimeSeriesStore(db.engine, clock=lambda: now, **kw)


def values(series) -> dict[tuple, float | None]:
    return {tuple(sorted(s.labels.items())): s.value for s in series}


def traffic(store, *, until: int, start: int = 0, batch: bool = False) -> CoreMetrics:
    """Every 5 s: 3 ok payments and 1 error, then a sample (``batch``: the samples are
    written in one go at the end, which is quicker for long histories)."""
    m = CoreMetrics(CollectorRegistry())
    sampler = Sampler(m.registry, store, interval=5.0)
    rows = []
    for i in range(start, until):
        for _ in range(3):
            m.observe("pay", "ok", seconds=0.004)
        m.observe("pay", "error", "channel_timeout", "SANDBOX_A", seconds=0.3)
        if batch:
            rows += [(T0 + 5 * i, n, labels, v) for n, labels, v in sampler.collect()]
        else:
            sampler.sample_once(T0 + 5 * i)
    store.write(rows)
    return m
