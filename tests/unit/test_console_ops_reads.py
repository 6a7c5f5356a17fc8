"""Console operations reads (SQLite and PostgreSQL): compensation and notification rows,
reconciliation reads and resolving a difference, statement CSV errors, manual items."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import insert

from console.reports.ops import (
    compensation_rows,
    manual_items,
    notification_rows,
    parse_statement_csv,
    recon_differences,
    recon_runs,
    resolve_difference,
)
from paycore import PayRequest, PayTool
from paycore.db.schema import Notification, NotificationAttempt, ReconDifference
from paycore.jobs.tasks import TaskQueue

# -- operations reads ------------------------------------------------------------------------


def test_compensation_rows_filter(core):
    q = TaskQueue(core.db, core.ids, clock=core.clock)
    q.enqueue(None, "refund_retry", "k1", {"a": 1}, merchant_id="m1")
    q.enqueue(None, "notify", "k2", {})
    t = q.list()[0]
    q.resolve_manually(next(x.id for x in q.list() if x.biz_key == "k2"), "ops", "done by hand")
    assert {r.biz_key for r in compensation_rows(core.db)} == {"k1", "k2"}
    assert [r.biz_key for r in compensation_rows(core.db, status="pending")] == ["k1"]
    assert [r.biz_key for r in compensation_rows(core.db, kind="notify")] == ["k2"]
    assert compensation_rows(core.db, kind="notify", status="pending") == []
    done = compensation_rows(core.db, status="done")[0]
    assert "resolved by ops: done by hand" in done.note and t.id


def test_notification_rows_with_attempts(core):
    now = datetime.now(UTC)
    with core.db.session() as s:
        for i, status in enumerate(("pending", "gave_up", "delivered"), start=1):
            s.execute(
                insert(Notification).values(
                    id=i,
                    event_id=f"e{i}",
                    merchant_id="m",
                    event_type="trade.paid",
                    trade_id=None,
                    payload="{}",
                    url="http://x",
                    status=status,
                    attempts=i,
                    next_attempt_at=now,
                    last_error="boom",
                    created_at=now,
                )
            )
        s.execute(
            insert(NotificationAttempt),
            [
                {
                    "id": 10,
                    "notification_id": 1,
                    "at": now,
                    "status_code": 500,
                    "error": "e",
                    "duration_ms": 5,
                },
                {
                    "id": 11,
                    "notification_id": 2,
                    "at": now,
                    "status_code": None,
                    "error": "t",
                    "duration_ms": 3000,
                },
                {
                    "id": 12,
                    "notification_id": 2,
                    "at": now + timedelta(seconds=1),
                    "status_code": 502,
                    "error": "",
                    "duration_ms": 7,
                },
            ],
        )
    rows = {r.id: r for r in notification_rows(core.db)}
    assert set(rows) == {1, 2}
    assert [a.status_code for a in rows[2].history] == [None, 502]
    assert rows[1].history[0].duration_ms == 5
    assert [r.id for r in notification_rows(core.db, statuses=("delivered",))] == [3]


def _diff(i: int, **kw):
    base = {
        "id": i,
        "run_id": 1,
        "kind": "missing_ours",
        "pay_org_no": "SANDBOX_A",
        "day": "2026-01-01",
        "ref": f"ref{i}",
        "our_amount": None,
        "channel_amount": 5,
        "our_status": "",
        "channel_status": "success",
        "resolution": "manual",
        "status": "open",
        "note": "",
        "created_at": datetime.now(UTC),
    }
    return base | kw


def test_recon_reads_and_resolving_a_difference(shop, core):
    from paycore.recon import reconcile_day

    day = date(2026, 1, 1)
    lines = parse_statement_csv(
        "channel_txn_no,channel_ref,kind,amount,currency,status,settled_at\n"
        "X1,,pay,700,CNY,success,2026-01-01T10:00:00+00:00\n"
    )
    rep = reconcile_day(core, lambda org, d: lines, "SANDBOX_A", day)
    assert rep.counts == {"missing_ours": 1}
    runs = recon_runs(core.db, kind="external")
    assert len(runs) == 1 and runs[0].status == "done" and runs[0].day == "2026-01-01"
    assert recon_runs(core.db, pay_org_no="SANDBOX_B") == []
    with core.db.session() as s:
        s.execute(insert(ReconDifference), [_diff(900, kind="amount_mismatch", day="2026-01-02")])
    diffs = recon_differences(core.db, day="2026-01-01")
    assert [d.ref for d in diffs] == ["X1"] and diffs[0].channel_amount == 700
    assert [d.id for d in recon_differences(core.db, kind="amount_mismatch")] == [900]
    assert len(recon_differences(core.db, pay_org_no="SANDBOX_A", status="open")) == 2
    with pytest.raises(ValueError):
        resolve_difference(core.db, 900, "ops", "  ", datetime.now(UTC))
    assert resolve_difference(core.db, 900, "ops", "booked by hand", datetime.now(UTC))
    assert not resolve_difference(core.db, 900, "ops", "again", datetime.now(UTC))
    resolved = recon_differences(core.db, status="resolved")
    assert [d.id for d in resolved] == [900] and "resolved by ops: booked by hand" in resolved[
        0
    ].note
    assert json.dumps(runs[0].stats)


def test_statement_csv_errors():
    with pytest.raises(ValueError, match="lacks columns"):
        parse_statement_csv("channel_txn_no,amount\nX,1\n")
    head = "channel_txn_no,kind,amount,currency,status,settled_at\n"
    with pytest.raises(ValueError, match="line 2"):
        parse_statement_csv(head + "X,pay,abc,CNY,success,2026-01-01T00:00:00+00:00\n")
    with pytest.raises(ValueError, match="offset"):
        parse_statement_csv(head + "X,pay,1,CNY,success,2026-01-01T00:00:00\n")
    assert parse_statement_csv(head.encode()) == []


def test_manual_items(shop, core):
    from sqlalchemy import update

    from paycore.db.schema import PayItem

    t = shop.trade(amount=500)
    po = core.payments.pay(shop.mid, PayRequest(t.out_trade_no, (PayTool("channel", 500),)))
    assert manual_items(core.db) == []
    with core.db.session() as s:
        s.execute(update(PayItem).where(PayItem.id == po.items[0].id).values(manual=True))
    rows = manual_items(core.db)
    assert [r.id for r in rows] == [po.items[0].id] and rows[0].amount == 500
