"""The database time-series store on SQLite and PostgreSQL: sampler -> query round trips with
injected times, counter resets, exact matches, quantiles, driver errors and the background
sampler."""

from __future__ import annotations

import math

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry
from store_traffic import LAT, REQ, T0, make_store, traffic, values

from collectors import (
    LATENCY_BUCKETS,
    BusinessSnapshot,
    CoreMetrics,
    QueryError,
    Sampler,
    Series,
    StoreError,
    TimeSeriesStore,
    bucket_quantile,
)


# -- round trip ------------------------------------------------------------------------------
def test_sampler_to_query_round_trip(migrated_db):
    at = T0 + 5 * 120
    store = make_store(migrated_db, at)
    traffic(store, until=121)
    rows = store.rate(REQ, window=60, at=at, match={"step": "pay"}, by=("outcome",))
    assert values(rows) == {
        (("outcome", "error"),): pytest.approx(0.2),
        (("outcome", "ok"),): pytest.approx(0.6),
    }
    total = store.rate(REQ, window=300, at=at)
    assert [s.labels for s in total] == [{}] and total[0].value == pytest.approx(0.8)
    ratio = store.ratio(REQ, REQ, window=120, at=at, match_num={"outcome": "ok"}, by=("step",))
    assert values(ratio)[(("step", "pay"),)] == pytest.approx(0.75)
    # the other steps' series exist (zero-initialised) but saw no traffic: None, not 0/0
    assert values(ratio)[(("step", "refund"),)] is None
    # no traffic in the window: the ratio is None, not a division by zero
    quiet = make_store(migrated_db, at + 3600)
    assert quiet.ratio(REQ, REQ, window=60, at=at + 3600) == []
    assert quiet.rate(REQ, window=60, at=at + 3600) == []


def test_count_is_the_increase_even_for_a_series_younger_than_the_window(migrated_db):
    at = T0 + 5 * 12  # one minute of traffic, asked about over five
    store = make_store(migrated_db, at)
    traffic(store, until=13)
    counted = store.count(REQ, window=300, at=at, match={"step": "pay"}, by=("outcome",))
    # 12 intervals after the first sample: 36 ok and 12 errors (rate x window says 5x that)
    assert values(counted) == {(("outcome", "error"),): 12.0, (("outcome", "ok"),): 36.0}
    rated = store.rate(REQ, window=300, at=at, match={"step": "pay"}, by=("outcome",))
    assert values(rated)[(("outcome", "ok"),)] * 300 == pytest.approx(180.0)


def test_rows_written_match_the_exposition(migrated_db):
    store = make_store(migrated_db, T0)
    reg = CollectorRegistry()
    m = CoreMetrics(reg, business=lambda: BusinessSnapshot(4, {"pending": 2}))
    m.observe("pay", "ok", seconds=0.01)
    n = Sampler(reg, store, instance="api-1").sample_once(T0)
    with migrated_db.engine.connect() as conn:
        names = {r[0] for r in conn.execute(sa.text("SELECT DISTINCT name FROM metric_samples"))}
        labels = conn.execute(
            sa.text("SELECT labels FROM metric_samples WHERE name = 'paywatch_orders_processing'")
        ).scalar_one()
    assert n == len(Sampler(reg, store, instance="api-1").collect())
    assert {REQ, f"{LAT}_bucket", f"{LAT}_count", f"{LAT}_sum"} <= names
    assert "paywatch_compensation_backlog" in names and "paywatch_trial_balance_ok" in names
    assert not [x for x in names if x.endswith("_created")]
    assert labels == '{"instance":"api-1"}'  # canonical JSON
    assert store.latest("paywatch_orders_processing", at=T0 + 10)[0].value == 4
    assert store.latest("paywatch_orders_processing", at=T0 + 1000, max_age=300) == []


def test_counter_reset_is_a_restart_not_a_negative_rate(migrated_db):
    at = T0 + 5 * 120
    store = make_store(migrated_db, at)
    traffic(store, until=60)
    traffic(store, start=60, until=121)  # a new process: counters from zero again
    rows = store.rate(REQ, window=300, at=at, by=("outcome",))
    assert values(rows) == {
        (("outcome", "error"),): pytest.approx(0.2),
        (("outcome", "ok"),): pytest.approx(0.6),
    }


def test_the_first_error_of_a_kind_is_not_lost(migrated_db):
    """Label children appear on first use; the sampler writes them a 0 one sample back."""
    store = make_store(migrated_db, T0 + 100)
    m = CoreMetrics(CollectorRegistry())
    sampler = Sampler(m.registry, store)
    sampler.sample_once(T0)
    m.observe("refund", "error", "ledger_unavailable", seconds=0.1)
    sampler.sample_once(T0 + 5)
    sampler.sample_once(T0 + 10)
    rows = store.rate(REQ, window=10, at=T0 + 10, match={"outcome": "error"}, by=("reason",))
    assert values(rows) == {(("reason", "ledger_unavailable"),): pytest.approx(0.1)}
    with migrated_db.engine.connect() as conn:  # one 0 row at T0, none for gauges
        zeros = conn.execute(
            sa.text(
                "SELECT COUNT(*) FROM metric_samples WHERE ts = :t AND value = 0"
                " AND labels LIKE '%ledger_unavailable%'"
            ),
            {"t": T0},
        ).scalar_one()
    assert zeros == 1


def test_match_is_exact_even_where_like_is_not(migrated_db):
    store = make_store(migrated_db, T0 + 100)
    store.write(
        (T0 + t, "c_total", {"step": step}, v)
        for t, v in ((0, 0.0), (60, 60.0))
        for step in ("pay", "PAY", "p_y", "pay_x")
    )
    rows = store.rate("c_total", window=60, at=T0 + 60, match={"step": "pay"}, by=("step",))
    assert values(rows) == {(("step", "pay"),): pytest.approx(1.0)}
    assert values(store.rate("c_total", window=60, at=T0 + 60, match={"step": "p_y"})) == {
        (): pytest.approx(1.0)
    }


# -- quantiles ---------------------------------------------------------------------------------
def test_quantile_lands_within_bucket_error_of_the_true_value(migrated_db):
    store = make_store(migrated_db, T0)
    reg = CollectorRegistry()
    m = CoreMetrics(reg)
    sampler = Sampler(reg, store)
    m.link_latency.labels("channel_call", "SANDBOX_A")  # the series exists before traffic
    sampler.sample_once(T0)
    observed = sorted(10 ** (-3 + 3.5 * k / 999) for k in range(1000))  # 1 ms .. 3.2 s
    for v in observed:
        m.observe("channel_call", "ok", "", "SANDBOX_A", seconds=v)
    for i in range(1, 7):
        sampler.sample_once(T0 + 5 * i)
    bounds = [0.0, *LATENCY_BUCKETS, math.inf]
    for q in (0.5, 0.9, 0.99):
        truth = observed[math.ceil(q * len(observed)) - 1]
        got = store.quantile(
            q, LAT, window=60, at=T0 + 30, match={"step": "channel_call"}, by=("pay_org",)
        )
        assert got[0] == Series({"pay_org": ""}, None)  # zero-initialised, no traffic
        got = got[1:]
        assert [s.labels for s in got] == [{"pay_org": "SANDBOX_A"}]
        lo = max(b for b in bounds if b < truth)
        hi = min(b for b in bounds if b >= truth)
        assert lo <= got[0].value <= hi, (q, truth, got)
        assert abs(got[0].value - truth) <= hi - lo
        # the same answer as Prometheus' algorithm on the registry's own buckets
        buckets = [
            (float(s.labels["le"]), s.value)
            for f in reg.collect()
            for s in f.samples
            if s.name == f"{LAT}_bucket"
        ]
        assert got[0].value == pytest.approx(bucket_quantile(q, buckets))
    with pytest.raises(QueryError):
        store.quantile(2, LAT, window=60, at=T0 + 30)


# -- errors and the background thread ----------------------------------------------------------
def test_driver_errors_are_wrapped(tmp_path):
    from paycore import Database

    db = Database(f"sqlite:///{tmp_path / 'empty.db'}")  # no tables
    store = TimeSeriesStore(db.engine)
    with pytest.raises(StoreError):
        store.write([(T0, "m", {}, 1.0)])
    with pytest.raises(StoreError):
        store.rollup(T0)
    with pytest.raises(QueryError):
        store.rate("m", window=60, at=T0)
    with pytest.raises(StoreError):
        store.write([(T0, "m", {"k": "x" * 600}, 1.0)])
    db.dispose()


def test_background_sampler_writes_and_stops(migrated_db):
    import time

    reg = CollectorRegistry()
    m = CoreMetrics(reg)
    m.observe("pay", "ok", seconds=0.01)
    store = TimeSeriesStore(migrated_db.engine)
    sampler = Sampler(reg, store, interval=0.05)
    sampler.start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with migrated_db.engine.connect() as conn:
                n = conn.execute(
                    sa.text("SELECT COUNT(DISTINCT ts) FROM metric_samples")
                ).scalar_one()
            if n >= 3:
                break
            time.sleep(0.05)
    finally:
        sampler.stop()
    assert n >= 3 and not sampler.running and sampler.errors == 0
    with migrated_db.engine.connect() as conn:  # the first loop also folded a rollup
        assert conn.execute(sa.text("SELECT COUNT(*) FROM metric_rollup_1m")).scalar_one() > 0
