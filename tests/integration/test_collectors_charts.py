"""The database time-series store's charts on SQLite and PostgreSQL: range points equal single
queries, sliding windows, gauges and the latest value across replicas."""

from __future__ import annotations

import pytest
from store_traffic import LAT, REQ, T0, make_store, traffic, values

from collectors import QueryError
from collectors.store_sql import RAW


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
