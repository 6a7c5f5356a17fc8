"""External reconciliation of a rerouted pay's first org: the statement line of the old
transaction (A took the pay after all and answered late) matches the reroute, whose late
success was booked and refunded in full at A as an exception; it is not missing_ours.
SQLite and PostgreSQL, the sandbox channel over real HTTP (tests/integration/reroute_world.py).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

from conftest import Clock

# the sandbox, the callback receiver and the rerouting front
from reroute_world import (  # noqa: F401
    A,
    B,
    jobs,
    receiver,
    sandbox,
    settled_at_b,
    wait_until,
    world,
)

from paycore.channels import ChannelRequest
from paycore.channels.client import StatementLine
from paycore.jobs import refund_txn_no
from paycore.recon import reconcile_day


def _line(txn: str, kind: str, amount: int, status: str = "success") -> StatementLine:
    return StatementLine(txn, f"ch-{txn}", kind, amount, "CNY", status, datetime.now(UTC))


def _recon(world, org: str, lines: list[StatementLine]):
    return reconcile_day(world.core, lambda o, d: list(lines), org, datetime.now(UTC).date())


def _rerouted_pay(world, amount: int):
    world.knobs(A, outage_rate=1.0)
    t, po = world.pay(amount)
    settled_at_b(world, t, po.id, amount)
    (reroute,) = world.reroutes(po.id)
    world.knobs(A)
    return t, po, reroute


def test_a_late_success_at_the_first_org_matches_its_reroute(world):
    t, po, reroute = _rerouted_pay(world, 1_000)
    old = ChannelRequest("pay", A, reroute.from_txn, 1_000, "CNY", world.shop.mid, t.id, po.id)
    world.gateway.send(old, world.notify(A))  # A took it after all; its callback comes late
    assert wait_until(lambda: world.receiver.of(A, reroute.from_txn) == ["exception"])
    late = _line(reroute.from_txn, "pay", 1_000)
    report = _recon(world, A, [late])
    assert (report.checked, report.matched, report.counts) == (1, 1, {}), report.counts

    # the full refund at A (x<reroute id>) matches its exception_refund posting as well
    clock = Clock(datetime.now(UTC))
    _, handlers, worker = jobs(world, clock)
    handlers.enqueue_open_exceptions()
    for _ in range(50):
        worker.run_once()
        if world.exceptions()[0].status == "resolved":
            break
        clock.advance(600)
        time.sleep(0.05)
    assert world.exceptions()[0].status == "resolved"
    refund = _line(refund_txn_no(reroute.id), "refund", 1_000)
    report = _recon(world, A, [late, refund])
    assert (report.checked, report.matched, report.counts) == (2, 2, {}), report.counts
    # B's statement has the pay that stayed there, matched as any other
    item = world.item(po.id)
    report = _recon(world, B, [_line(item.channel_txn_no, "pay", 1_000)])
    assert (report.matched, report.counts) == (1, {}), report.counts


def test_the_old_transaction_failed_at_the_first_org_matches(world):
    _, _, reroute = _rerouted_pay(world, 400)
    report = _recon(world, A, [_line(reroute.from_txn, "pay", 400, "failed")])
    assert (report.matched, report.counts) == (1, {}), report.counts


def test_money_the_first_org_took_that_we_never_booked_is_still_a_difference(world):
    _, _, reroute = _rerouted_pay(world, 700)  # A's late callback never came
    ghost = _line("GHOST-R", "pay", 5)
    report = _recon(world, A, [_line(reroute.from_txn, "pay", 700), ghost])
    assert report.matched == 0 and report.counts == {"missing_ours": 2}, report.counts
    import sqlalchemy as sa

    from paycore.db.schema import ReconDifference

    with world.core.db.session() as s:
        notes = dict(s.execute(sa.select(ReconDifference.ref, ReconDifference.note)).all())
    assert f"rerouted to {B}" in notes[reroute.from_txn] and "not booked" in notes[reroute.from_txn]
    assert notes["GHOST-R"] == "unknown to us"
