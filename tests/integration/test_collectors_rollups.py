"""The database time-series store's rollups and retention on SQLite and PostgreSQL: folding is
idempotent and incremental, long windows read the rollups, pruning keeps what is within
retention."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from store_traffic import REQ, T0, make_store, traffic, values

from collectors import TimeSeriesStore
from collectors.store_sql import H1, M1, RAW


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
