"""The SLA report's counts against the database, to the request, for every window.

A known traffic history is played through real pay cores (one per process, with an
injected clock) while samplers write their registries into the store the way the
running sampler does (a sample every 5 s, rollups every minute, pruning every hour):
six process lifetimes spread over 35 days, a restart under the same instance (a
counter reset), a sampler stalled for 7 minutes while requests went on, a second
replica, and the newest minutes not yet rolled up. Then the
report is asked about 1 h .. 90 d: its counts must equal the trades and pay orders in
the database (and the errors and guard outcomes the history made) in each window, on
SQLite and PostgreSQL. The window plans themselves are checked as pure functions.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from collectors import CoreMetrics, Sampler, TimeSeriesStore
from collectors.store_math import Level, Piece, plan
from console.reports.sla import WINDOWS, sla_report
from paycore import CreateTrade, PayCore, PayRequest, PayTool
from paycore.db.schema import PayOrder, Trade
from paycore.errors import IdempotencyConflict

NOW = 1_800_001_235.0  # 20 min 35 s into an hour: the current hour and minute are partial
DAY = 86400.0
INCLUDE = ("paywatch_link_requests", "paywatch_guard_calls")


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def dt(self) -> datetime:
        return datetime.fromtimestamp(self.t, UTC)


@dataclass
class Ledger:
    """What the history did that the database does not hold (refusals, errors, guard)."""

    events: list[tuple[float, str, str]] = field(default_factory=list)  # (t, step, outcome)

    def count(self, lo: float, hi: float, step: str, outcome: str) -> int:
        return sum(1 for t, s, o in self.events if lo < t <= hi and (s, o) == (step, outcome))


class Process:
    """One platform process: its registry, pay core and sampler (samples at ``phase``
    + 5 k seconds), as ``paywatch serve`` builds them."""

    def __init__(self, db, clock: Clock, instance: str, phase: float) -> None:
        self.metrics = CoreMetrics(CollectorRegistry())
        self.core = PayCore(db, clock=clock.dt, metrics=self.metrics)
        self.store = TimeSeriesStore(db.engine, clock=lambda: clock.t)
        self.sampler = Sampler(
            self.metrics.registry, self.store, instance=instance, include=INCLUDE
        )
        self.phase = phase

    @property
    def started(self) -> bool:
        return self.sampler._last_ts is not None

    def tick(self, t: float) -> None:
        self.sampler.sample_once(t)
        self.sampler.maintain(t)

    def close(self) -> None:
        self.core.lock.close()


@dataclass
class History:
    db: object
    merchant: str
    clock: Clock = field(default_factory=Clock)
    ledger: Ledger = field(default_factory=Ledger)
    rng: random.Random = field(default_factory=lambda: random.Random(18))
    n: int = 0

    def event(self, proc: Process, t: float) -> None:
        """One request at ``t``: mostly a trade and its channel pay; sometimes a refused
        replay, a channel error or guard outcomes (recorded in the ledger)."""
        self.clock.t = t
        roll = self.rng.random()
        if roll < 0.1 and self.n:
            with pytest.raises(IdempotencyConflict):
                proc.core.trades.create(self.merchant, self._trade(f"h{self.n}", 999))
            self.ledger.events.append((t, "trade_create", "rejected"))
            return
        if roll < 0.2:
            proc.metrics.observe("pay", "error", "channel_down", "SANDBOX_A", seconds=0.2)
            self.ledger.events.append((t, "pay", "error"))
            for outcome in ("pass", "error", "pass"):
                proc.metrics.guard_outcome("risk", "link.pay", outcome, 0.001)
                self.ledger.events.append((t, "risk", outcome))
            return
        self.n += 1
        no = f"h{self.n}"
        proc.core.trades.create(self.merchant, self._trade(no, 1_000 + self.n))
        proc.core.payments.pay(self.merchant, PayRequest(no, (PayTool("channel", 1_000 + self.n),)))

    def _trade(self, no: str, amount: int) -> CreateTrade:
        return CreateTrade(
            trade_type="instant",
            amount=amount,
            currency="CNY",
            user_id="u1",
            order_type="goods",
            sub_type="physical",
            pay_org_no="SANDBOX_A",
            out_trade_no=no,
        )

    def run(
        self,
        procs: list[Process],
        start: float,
        end: float,
        *,
        last_event: float,
        stall: tuple[float, float] = (0.0, 0.0),
    ) -> None:
        """Every process samples from ``start`` to ``end`` (5 s apart, at its phase) except
        during ``stall`` (the database unreachable: nothing written, requests go on);
        requests arrive 5-30 s apart until ``last_event``, each to one process."""
        t_event = start + self.rng.uniform(1, 5)
        t = start
        while t <= end:
            for p in procs:
                ts = t + p.phase
                while t_event < ts and t_event <= last_event:
                    # a process serves once its sampler has run (Platform.start)
                    self.event(self.rng.choice([q for q in procs if q.started]), t_event)
                    t_event += self.rng.uniform(5, 30)
                if ts <= end and not stall[0] <= ts < stall[1]:
                    self.clock.t = ts
                    p.tick(ts)
            t += 5.0


def play(db) -> History:
    """The known history (see the module docstring)."""
    clock = Clock()
    clock.t = NOW - 36 * DAY
    first = PayCore(db, clock=clock.dt)
    merchant = first.merchants.onboard(
        "sla shop", products=[("goods", "physical")], pay_orgs=["SANDBOX_A"]
    ).merchant.merchant_id
    first.lock.close()
    h = History(db, merchant, clock)
    lifetimes = [  # (start, minutes, instance)
        (NOW - 35 * DAY, 20, "api-1"),
        (NOW - 10 * DAY, 20, "api-1"),
        (NOW - 3 * DAY + 1020, 15, "api-1"),
        (NOW - 14 * 3600 + 1500, 10, "api-2"),
        (NOW - 5 * 3600, 20, "api-2"),
    ]
    for start, minutes, instance in lifetimes:
        proc = Process(db, clock, instance, 0.0)
        h.run([proc], start, start + 60 * minutes, last_event=start + 60 * minutes - 6)
        proc.close()
    # the current run: api-1 from 50 min ago, restarted 20 min ago under the same
    # instance (its counters drop to 0: a reset), with a second replica from 10 min ago
    a = Process(db, clock, "api-1", 0.0)
    h.run([a], NOW - 3000, NOW - 1215, last_event=NOW - 1222)
    a.close()
    a2 = Process(db, clock, "api-1", 0.0)  # its sampler stalls for 7 minutes on the way
    h.run([a2], NOW - 1200, NOW - 600, last_event=NOW - 603, stall=(NOW - 1180, NOW - 780))
    b = Process(db, clock, "api-3", 2.5)
    h.run([a2, b], NOW - 600, NOW, last_event=NOW - 1)
    a2.close()
    b.close()
    clock.t = NOW
    return h


def db_counts(db, lo: float, hi: float) -> tuple[int, int]:
    """Trades and pay orders created in (lo, hi]."""
    lo_dt, hi_dt = datetime.fromtimestamp(lo, UTC), datetime.fromtimestamp(hi, UTC)
    with db.engine.connect() as conn:
        out = []
        for table in (Trade, PayOrder):
            out.append(
                conn.execute(
                    sa.select(sa.func.count())
                    .select_from(table)
                    .where(table.created_at > lo_dt, table.created_at <= hi_dt)
                ).scalar_one()
            )
    return out[0], out[1]


@pytest.fixture
def history(migrated_db):
    return migrated_db, play(migrated_db)


def test_sla_counts_equal_the_database_for_every_window(history):
    db, h = history
    store = TimeSeriesStore(db.engine, clock=lambda: NOW)
    seen = {}
    for name, window in [*WINDOWS.items(), ("30min", 1800.0), ("10min", 600.0)]:
        lo = NOW - window
        rows = {(r.kind, r.name): r for r in sla_report(store, None, now=NOW, window_s=window)}
        trades, pay_orders = db_counts(db, lo, NOW)
        create, pay, risk = (
            rows[("link", "trade_create")],
            rows[("link", "pay")],
            rows[("dependency", "risk")],
        )
        got = (create.good, create.excluded, pay.good, pay.bad, risk.good, risk.bad)
        want = (
            trades,
            h.ledger.count(lo, NOW, "trade_create", "rejected"),
            pay_orders,
            h.ledger.count(lo, NOW, "pay", "error"),
            h.ledger.count(lo, NOW, "risk", "pass"),
            h.ledger.count(lo, NOW, "risk", "error"),
        )
        assert got == want, (name, got, want)
        assert create.total == create.good and pay.total == pay_orders + pay.bad
        if pay.total:
            assert pay.availability == pytest.approx(pay_orders / pay.total)
            assert pay.burn_rate == pytest.approx((pay.bad / pay.total) / (1 - pay.slo))
            assert pay.budget_left == pytest.approx(1 - pay.bad / ((1 - pay.slo) * pay.total))
        seen[name] = trades
        print(
            f"{name}: report trade_create={create.good} pay={pay.good}+{pay.bad} errors, "
            f"database trades={trades} pay_orders={pay_orders}"
        )
    # each window holds more than the shorter one: every lifetime is somewhere
    assert 0 < seen["10min"] < seen["30min"] < seen["1h"] < seen["6h"] < seen["1d"]
    assert seen["1d"] < seen["7d"] < seen["30d"] < seen["90d"]
    assert seen["90d"] == db_counts(db, 0, NOW)[0]
    check_plans(store)
    check_old_rollups(db, seen)


def check_plans(store: TimeSeriesStore) -> None:
    """30 days: whole hours from the hourly rollups, the newest hours from minutes, the
    newest minutes (not folded yet) from raw samples, and nothing read twice."""
    pieces = store.window_plan("paywatch_link_requests_total", window=WINDOWS["30d"], at=NOW)
    assert [p.name for p in pieces][-3:] == ["1h", "1m", "raw"]
    assert pieces[-1].hi == NOW and pieces[-1].hi_closed
    assert pieces[-1].lo >= NOW - 180  # the raw tail is minutes, not hours
    for a, b in zip(pieces, pieces[1:], strict=False):
        assert a.hi == b.lo and not a.hi_closed and not b.lo_open
    short = store.window_plan("paywatch_link_requests_total", window=3600.0, at=NOW)
    assert [p.name for p in short] == ["raw", "1m", "raw"]
    assert short[0].lo == NOW - 3600 and short[0].lo_open


def check_old_rollups(db, seen: dict[str, int]) -> None:
    """Buckets folded before migration 0011 (no ``inc``) still count, the old way: exact
    for lifetimes without a reset inside a bucket (these, older than 7 days)."""
    with db.engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE metric_rollup_1h SET inc = NULL WHERE bucket < :t"),
            {"t": NOW - 7 * DAY},
        )
    store = TimeSeriesStore(db.engine, clock=lambda: NOW)
    for name in ("90d", "30d"):
        counted = store.count(
            "paywatch_link_requests_total",
            window=WINDOWS[name],
            at=NOW,
            match={"step": "trade_create", "outcome": "ok"},
        )
        assert counted[0].value == seen[name], name


# -- window plans (pure) ---------------------------------------------------------------------
def levels(now: float, *, h1_until: float, m1_until: float) -> list[Level]:
    return [
        Level("1h", 3600.0, now - 90 * DAY, h1_until),
        Level("1m", 60.0, now - 7 * DAY, m1_until),
        Level("raw", 0.0, now - 6 * 3600 + 300),
    ]


def covers(pieces: list[Piece], lo: float, hi: float, times: Callable[[], list[float]]) -> None:
    """Every time in (lo, hi] is in exactly one piece; none outside."""
    for t in times():
        inside = [
            p
            for p in pieces
            if (p.lo < t if p.lo_open else p.lo <= t) and (t <= p.hi if p.hi_closed else t < p.hi)
        ]
        assert len(inside) == (1 if lo < t <= hi else 0), (t, inside)


def test_plan_covers_each_sample_once():
    now = NOW
    lv = levels(now, h1_until=3600 * (now // 3600) - 3600, m1_until=60 * (now // 60) - 60)
    rng = random.Random(7)
    for window in (60.0, 3600.0, 5 * 3600.0, DAY, 2.5 * DAY, 7 * DAY, 30 * DAY, 90 * DAY):
        pieces = plan(now - window, now, lv)
        assert pieces[-1].name == "raw" and pieces[-1].hi == now

        def times(window: float = window) -> list[float]:
            return [now - window * rng.random() for _ in range(500)] + [now, now - window]

        lo = now - window
        if lo >= now - 6 * 3600 + 300:  # raw still holds the start: exact
            assert pieces[0].lo == lo and pieces[0].lo_open
            covers(pieces, lo, now, times)
        else:  # widened to the bucket that holds it
            assert pieces[0].lo <= lo and lo - pieces[0].lo < (60 if window < 6 * DAY else 3600)


def test_plan_without_rollups_reads_raw_and_never_beyond_retention():
    lv = levels(NOW, h1_until=float("-inf"), m1_until=float("-inf"))
    assert plan(NOW - 3600, NOW, lv) == [Piece("raw", NOW - 3600, NOW, True, True)]
    far = plan(NOW - 30 * DAY, NOW, lv)
    assert far == [Piece("raw", NOW - 6 * 3600 + 300, NOW, False, True)]
