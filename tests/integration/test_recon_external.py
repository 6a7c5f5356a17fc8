"""T+1 reconciliation against the sandbox channel's statement, over real HTTP, on PostgreSQL.

The sandbox is seeded through its HTTP API (pays and refunds the pay core sends it) and
its state (``app.state.sandbox``: when a transaction settles, one it books that we never
sent), its knobs, and the pay core's own settlements. Callbacks are held back (ten
minutes), so each side books a transaction exactly when the test says.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
import sqlalchemy as sa
from conftest import SandboxWorld, Shop

from paycore import ChannelResult, RefundRequest
from paycore.db.schema import ReconDifference, ReconRun
from paycore.recon import RESOLUTION, reconcile_day

ORG = Shop.ORG
DAY = date(2030, 3, 10)


def at(hh: int, mm: int, ss: int = 0, day: date = DAY) -> datetime:
    return datetime.combine(day, time(hh, mm, ss), tzinfo=UTC)


class World(SandboxWorld):
    """The pay core (PostgreSQL) and the sandbox channel (HTTP), with both clocks in hand."""

    def __init__(self, db_url: str) -> None:
        super().__init__(db_url, at(8, 0), channel_now=at(0, 0), seed=11)

    def pay(self, amount: int, when: datetime):  # type: ignore[override]
        self.clock.now = when
        return super().pay(amount)

    def channel_settles(self, txn_no: str, when: datetime):
        self.channel_now = when
        return self.sandbox.settle(ORG, txn_no)

    def we_settle(self, txn_no: str, when: datetime, amount: int) -> str:
        self.clock.now = when
        return self.core.payments.on_channel_result(
            ChannelResult(ORG, txn_no, "success", amount, "CNY")
        )

    def both_settle(self, txn_no: str, channel_at: datetime, ours_at: datetime) -> None:
        txn = self.channel_settles(txn_no, channel_at)
        assert self.we_settle(txn_no, ours_at, txn.settled_amount) == "settled"

    def differences(self) -> list[tuple]:
        with self.db.session() as s:
            return sorted(
                s.execute(
                    sa.select(
                        ReconDifference.id,
                        ReconDifference.kind,
                        ReconDifference.ref,
                        ReconDifference.resolution,
                        ReconDifference.our_amount,
                        ReconDifference.channel_amount,
                        ReconDifference.our_status,
                        ReconDifference.day,
                        ReconDifference.pay_org_no,
                    )
                ).all()
            )


def seed_day(w: World) -> dict[str, set[str]]:
    """One day with every class of discrepancy; returns the expected refs per class."""
    for i in range(3):  # clean: both sides the same
        _, item = w.pay(1_000 + i, at(9, i))
        w.both_settle(item.channel_txn_no, at(10, i), at(10, i, 1))
    t, item = w.pay(5_000, at(9, 30))  # a refund, reconciled like any other line
    w.both_settle(item.channel_txn_no, at(10, 30), at(10, 30, 1))
    w.clock.now = at(10, 40)
    refund = w.core.refunds.refund(w.shop.mid, RefundRequest(t.out_trade_no, "rf-1", 1_200))
    assert w.front.wait_idle(10)
    w.both_settle(refund.pay_orders[0].items[0].channel_txn_no, at(15, 0), at(15, 0, 2))
    # missing ours: the channel books a transaction we never sent
    w.sandbox.accept(ORG, "pay", "GHOST-1", 777, "CNY", "http://127.0.0.1:9/callback")
    w.channel_settles("GHOST-1", at(11, 0))
    # missing at the channel: we booked a success the channel never settled
    _, missing = w.pay(2_000, at(11, 30))
    assert w.we_settle(missing.channel_txn_no, at(12, 0), 2_000) == "settled"
    # amount mismatch: the channel settles one unit more than the callback told us
    w.sandbox.update_knobs(ORG, {"amount_mismatch_rate": 1.0})
    _, diff = w.pay(3_000, at(12, 30))
    w.sandbox.update_knobs(ORG, {"amount_mismatch_rate": 0.0})
    assert w.channel_settles(diff.channel_txn_no, at(13, 0)).settled_amount == 3_001
    assert w.we_settle(diff.channel_txn_no, at(13, 0, 1), 3_000) == "settled"
    # status mismatch: the channel settled, its callback never came: ours is processing
    _, stuck = w.pay(4_000, at(13, 30))
    w.channel_settles(stuck.channel_txn_no, at(14, 0))
    # timing gaps across midnight: the channel before it and we after, and the reverse
    _, late = w.pay(600, at(23, 50))
    w.both_settle(late.channel_txn_no, at(23, 59, 30), at(0, 0, 20, DAY + timedelta(days=1)))
    _, early = w.pay(700, at(23, 55))
    w.both_settle(early.channel_txn_no, at(0, 0, 5, DAY + timedelta(days=1)), at(23, 59, 50))
    # the next day's business is not part of this day
    _, nextday = w.pay(800, at(9, 0, 0, DAY + timedelta(days=1)))
    nd = DAY + timedelta(days=1)
    w.both_settle(nextday.channel_txn_no, at(10, 0, 0, nd), at(10, 0, 1, nd))
    return {
        "missing_ours": {"GHOST-1"},
        "missing_channel": {missing.channel_txn_no},
        "amount_mismatch": {diff.channel_txn_no},
        "status_mismatch": {stuck.channel_txn_no},
        "timing_gap": {late.channel_txn_no, early.channel_txn_no},
    }


@pytest.fixture
def world(pg_url):
    with World(pg_url) as w:
        yield w


@pytest.fixture
def any_world(db_url):
    """The same world on SQLite as well as PostgreSQL."""
    with World(db_url) as w:
        yield w


def by_class(rows: list[tuple]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for row in rows:
        out.setdefault(row[1], set()).add(row[2])
    return out


def test_seeded_day_reconciles_into_exactly_its_differences(world):
    expected = seed_day(world)
    world.clock.now = at(3, 0, 0, DAY + timedelta(days=1))  # T+1
    report = reconcile_day(world.core, world.gateway, ORG, DAY)
    assert report.counts == {k: len(v) for k, v in expected.items()}
    assert report.added == 6 and report.matched == 5 and report.checked == 9
    rows = world.differences()
    assert by_class(rows) == expected
    assert {(r[1], r[3]) for r in rows} == {(k, RESOLUTION[k]) for k in expected}
    assert {(r[7], r[8]) for r in rows} == {(DAY.isoformat(), ORG)}
    amounts = {r[1]: (r[4], r[5], r[6]) for r in rows if r[1] != "timing_gap"}
    assert amounts == {
        "missing_ours": (None, 777, ""),
        "missing_channel": (2_000, None, "success"),
        "amount_mismatch": (3_000, 3_001, "success"),
        "status_mismatch": (4_000, 4_000, "processing"),
    }
    # re-running the day (from the gateway, or the same lines handed over) adds nothing
    again = reconcile_day(world.core, world.gateway, ORG, DAY)
    lines = world.gateway.statement(ORG, DAY)
    third = reconcile_day(world.core, lambda org, day: iter(lines), ORG, DAY, chunk=2)
    assert again.added == third.added == 0
    assert again.counts == third.counts == report.counts
    assert world.differences() == rows
    with world.db.session() as s:
        runs = s.execute(sa.select(ReconRun.kind, ReconRun.status, ReconRun.cursor)).all()
    assert runs == [("external", "done", 9)]


def test_interrupted_run_resumes_where_it_stopped(world):
    expected = seed_day(world)
    lines = world.gateway.statement(ORG, DAY)

    def breaks_after_five(org, day):
        for n, line in enumerate(lines):
            if n == 5:
                raise ConnectionError("statement download cut off")
            yield line

    with pytest.raises(ConnectionError):
        reconcile_day(world.core, breaks_after_five, ORG, DAY, chunk=2)
    with world.db.session() as s:
        run = s.execute(sa.select(ReconRun)).scalar_one()
        assert (run.status, run.cursor) == ("failed", 4)  # two chunks of two committed
    report = reconcile_day(world.core, world.gateway, ORG, DAY, chunk=2)
    assert report.resumed_from == 4 and report.checked == 9
    assert report.counts == {k: len(v) for k, v in expected.items()}
    assert by_class(world.differences()) == expected


@pytest.mark.parametrize(
    ("knob", "kind", "resolution"),
    [
        ("statement_missing_rate", "missing_channel", "compensation"),
        ("statement_amount_diff_rate", "amount_mismatch", "manual"),
        ("statement_extra_rate", "missing_ours", "manual"),
    ],
)
def test_statement_knobs_map_to_their_class(any_world, knob, kind, resolution):
    world = any_world
    refs = set()
    for i in range(3):
        _, item = world.pay(900 + i, at(9, i))
        world.both_settle(item.channel_txn_no, at(10, i), at(10, i, 1))
        refs.add(item.channel_txn_no)
    world.sandbox.update_knobs(ORG, {knob: 1.0})
    report = reconcile_day(world.core, world.gateway, ORG, DAY)
    assert report.counts == {kind: 3}
    rows = world.differences()
    assert {(r[1], r[3]) for r in rows} == {(kind, resolution)}
    if kind == "missing_ours":  # phantom lines beside our three, which still match
        assert report.matched == 3 and all(r[2].startswith("EXTRA") for r in rows)
    else:
        assert {r[2] for r in rows} == refs
    assert reconcile_day(world.core, world.gateway, ORG, DAY).added == 0
    assert world.differences() == rows
