"""The database time-series store on SQLite and PostgreSQL: sampler -> query round trips
with injected times, counter resets, rollups, retention, quantiles and charts."""

from __future__ import annotations

import math

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

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
from collectors.store_sql import H1, M1, RAW

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


# -- charts ------------------------------------------------------------------------------------
def test_range_points_equal_single_queries(migrated_db):
    at = T0 + 5 * 120
    store = make_store(migrated_db, at)
    traffic(store, until=121)
    chart = store.range("rate", REQ, start=T0 + 120, end=at, step=60, by=("outcome",), window=60)
    assert set(chart) == {(("outcome", "error"),), (("outcome", "ok"),)}
    ok = chart[(("outcome", "ok"),)]
    assert [t for t, _ in ok] == [T0 + 120 + 60 * k for k in range(9)]
    for t, v in ok:
        single = store.rate(REQ, window=60, at=t, match={"outcome": "ok"})
        assert v == pytest.approx(single[0].value) == pytest.approx(0.6)
    p99 = store.range("p99", LAT, start=T0 + 300, end=at, step=150, window=60)
    for t, v in p99[()]:
        assert v == pytest.approx(store.quantile(0.99, LAT, window=60, at=t)[0].value)
    before = store.range("rate", REQ, start=T0 - 600, end=T0 - 300, step=60)
    assert before == {}


@pytest.mark.parametrize(
    ("step", "window"),
    [(60, 300), (30, 90), (10, 60), (5, 5)],  # summed per interval in SQL / row by row
)
def test_sliding_chart_windows_match_single_queries(migrated_db, step, window):
    at = T0 + 5 * 120
    store = make_store(migrated_db, at)
    traffic(store, until=60)
    traffic(store, start=60, until=121)  # a reset in the middle
    chart = store.range(
        "rate",
        REQ,
        start=T0 + 300,
        end=at,
        step=step,
        window=window,
        match={"step": "pay"},
        by=("outcome",),
    )
    for (key,), line in chart.items():
        for t, v in line:
            single = store.rate(
                REQ, window=max(window, step), at=t, match={"step": "pay", "outcome": key[1]}
            )
            assert v == pytest.approx(single[0].value), (t, key)
    counts = store.range("p50", LAT, start=T0 + 300, end=at, step=step, window=window)
    for t, v in counts[()]:
        assert v == pytest.approx(store.quantile(0.5, LAT, window=max(window, step), at=t)[0].value)


def test_gauge_chart_reads_the_latest_value_per_point(migrated_db):
    store = make_store(migrated_db, T0 + 600)
    store.write((T0 + 10 * i, "paywatch_notification_backlog", {}, float(i)) for i in range(31))
    chart = store.range(
        "latest", "paywatch_notification_backlog", start=T0, end=T0 + 300, step=100, window=30
    )
    assert chart == {(): [(T0, 0.0), (T0 + 100, 10.0), (T0 + 200, 20.0), (T0 + 300, 30.0)]}
    with pytest.raises(QueryError):
        store.range("median", "x", start=T0, end=T0 + 10, step=1)
    with pytest.raises(QueryError):
        store.range("rate", "x", start=T0, end=T0 + 10**6, step=1)


def test_latest_over_hours_finds_samples_not_yet_rolled_up(migrated_db):
    """A fresh platform: raw samples only. A 2-hour 'is it there' check (absent-data
    alerts) must find them, not read the still-empty rollups and call the metric absent."""
    store = make_store(migrated_db, T0 + 30)
    store.write([(T0 + 20, "paywatch_trial_balance_ok", {"instance": "w1"}, 1.0)])
    assert store.source_for(7200, T0 + 30 - 7200) is not RAW
    assert [
        s.value
        for s in store.latest("paywatch_trial_balance_ok", at=T0 + 30, max_age=7200, agg="min")
    ] == [1.0]
    assert store.latest("paywatch_orders_processing", at=T0 + 30, max_age=7200) == []


def test_latest_aggregates_the_replicas_as_asked(migrated_db):
    """Two workers export the same database-wide backlog: max, not their sum."""
    store = make_store(migrated_db, T0 + 60)
    backlog = "paywatch_compensation_backlog"
    store.write(
        [
            (T0 + 50, backlog, {"instance": "w1", "status": "pending"}, 600.0),
            (T0 + 55, backlog, {"instance": "w2", "status": "pending"}, 590.0),
            (T0 + 55, backlog, {"instance": "w2", "status": "manual"}, 3.0),
        ]
    )
    assert values(store.latest(backlog, at=T0 + 60, by=("status",), agg="max")) == {
        (("status", "manual"),): 3.0,
        (("status", "pending"),): 600.0,
    }
    assert store.latest(backlog, at=T0 + 60, match={"status": "pending"})[0].value == 1190.0
    assert store.latest(backlog, at=T0 + 60, agg="min")[0].value == 3.0
    with pytest.raises(QueryError):
        store.latest(backlog, at=T0 + 60, agg="median")


# -- rollups and retention ---------------------------------------------------------------------
def rollup_rows(db, table: str, name: str) -> list[tuple]:
    with db.engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text(
                    f'SELECT bucket, labels, "last", "min", "max", "sum", "count" FROM {table}'
                    " WHERE name = :n ORDER BY labels, bucket"
                ),
                {"n": name},
            )
        ]


def test_rollups_fold_last_min_max_sum_count_idempotently_and_incrementally(db_url):
    from paycore import Database

    dbs = []
    for _ in range(2):  # one store rolled up at every minute, one at the end only
        db = Database(db_url) if not dbs else dbs[0]
        dbs.append(db)
    db = dbs[0]
    end = T0 + 5 * 720  # one hour
    store = make_store(db, end)
    traffic(store, until=720, batch=True)
    once = TimeSeriesStore(db.engine, clock=lambda: end)
    once.rollup(end)
    whole_m1 = rollup_rows(db, "metric_rollup_1m", REQ)
    whole_h1 = rollup_rows(db, "metric_rollup_1h", REQ)
    with db.engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM metric_rollup_1m"))
        conn.execute(sa.text("DELETE FROM metric_rollup_1h"))
    step = TimeSeriesStore(db.engine, clock=lambda: end)
    for k in (1, 2, 3, 10, 17, 29, 30, 44, 59, 60, 61):  # now and then, as a sampler would
        step.rollup(T0 + 60 * k + 7)
    step.rollup(end)
    step.rollup(end)  # again: nothing changes
    assert rollup_rows(db, "metric_rollup_1m", REQ) == whole_m1
    assert rollup_rows(db, "metric_rollup_1h", REQ) == whole_h1
    ok = [r for r in whole_m1 if '"outcome":"ok"' in r[1] and '"step":"pay"' in r[1]]
    assert len(ok) == 60
    # bucket [T0+60, T0+120): samples i = 12..23 carry 3 * (i + 1)
    assert ok[1] == (T0 + 60, ok[1][1], 72.0, 39.0, 72.0, 3.0 * sum(range(13, 25)), 12)
    h1 = [r for r in whole_h1 if '"outcome":"ok"' in r[1] and '"step":"pay"' in r[1]]
    assert h1 == [(T0, h1[0][1], 2160.0, 3.0, 2160.0, 3.0 * sum(range(1, 721)), 720)]
    db.dispose()


def long_history(db, now: float, days: float) -> TimeSeriesStore:
    """A counter growing 6 per minute (0.1/s), one sample a minute, rolled up."""
    store = make_store(db, now, sample_interval=60.0)
    n = int(days * 1440)
    store.write((now - 60 * (n - i), "c_total", {"k": "a"}, 6.0 * i) for i in range(n + 1))
    store.rollup(now)
    return store


def test_long_windows_read_the_rollups(migrated_db):
    now = T0 + 3 * 86400
    store = long_history(migrated_db, now, 3)
    assert store.source_for(600, now - 600) is RAW
    assert store.source_for(3 * 3600, now - 3 * 3600) is M1
    assert store.source_for(2.5 * 86400, now - 2.5 * 86400) is H1
    assert store.source_for(600, now - 7 * 3600) is M1  # raw already pruned back then
    assert store.source_for(3600, now - 8 * 86400) is H1
    deleted = store.prune(now + 60, raw_retention=0, m1_retention=86400 + 60)
    assert deleted["metric_samples"] == 3 * 1440 + 1
    assert deleted["metric_rollup_1m"] == 2 * 1440
    assert store.rate("c_total", window=600, at=now) == []  # raw samples are gone
    for window in (3 * 3600, 20 * 3600, 2.5 * 86400):
        rows = store.rate("c_total", window=window, at=now, by=("k",))
        assert values(rows) == {(("k", "a"),): pytest.approx(0.1)}, window
    chart = store.range("rate", "c_total", start=now - 2.5 * 86400, end=now, step=3600)
    assert len(chart[()]) == 61
    assert all(v == pytest.approx(0.1) for _, v in chart[()][1:])
    latest = store.latest("c_total", at=now, max_age=3 * 3600)
    assert latest[0].value == pytest.approx(6.0 * (3 * 1440 - 1))  # the last folded minute


def test_prune_keeps_what_is_within_retention(migrated_db):
    now = T0 + 86400
    store = long_history(migrated_db, now, 1)
    out = store.prune(now)  # 6 h raw, 7 d of 1 m, 90 d of 1 h
    assert out["metric_samples"] == 1440 - 6 * 60
    assert out["metric_rollup_1m"] == 0 and out["metric_rollup_1h"] == 0
    assert store.prune(now) == {"metric_samples": 0, "metric_rollup_1m": 0, "metric_rollup_1h": 0}
    with migrated_db.engine.connect() as conn:
        oldest = conn.execute(sa.text("SELECT MIN(ts) FROM metric_samples")).scalar_one()
    assert oldest >= now - 6 * 3600


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
