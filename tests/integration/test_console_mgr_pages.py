"""AppTest tests of the operations pages' actions: each page's ``render(ctx)`` over a seeded
platform on a tmp SQLite database, role gating and one action each (resolve a task, resend
a notification, resolve a difference, upload a statement)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert, select

pytest.importorskip("streamlit.testing.v1")
from mgr_page_app import (
    _app,
    _button,
    _ok,
    platform,  # noqa: F401 - fixture
)
from streamlit.testing.v1 import AppTest  # noqa: E402

from console.audit import recent  # noqa: E402
from paycore.db.schema import CompensationTask, Notification, ReconDifference  # noqa: E402
from paycore.jobs.tasks import TaskQueue  # noqa: E402


def test_compensation_resolve_needs_a_note_and_is_audited(platform):
    core = platform.paycore
    q = TaskQueue(core.db, core.ids, clock=core.clock)
    q.enqueue(None, "refund_retry", "k1", {"x": 1}, merchant_id="m1")
    task_id = q.list()[0].id
    at = _app("console.pages.ops_compensation", platform, "olga", "operator")
    _ok(at)
    _button(at, "comp_resolve").click().run()
    _ok(at)
    assert any("note is required" in e.value for e in at.error)
    assert q.get(task_id).status == "pending"
    at.text_input(key="comp_note").input("refunded at the bank by hand")
    _button(at, "comp_resolve").click().run()
    _ok(at)
    task = q.get(task_id)
    assert task.status == "done" and "resolved by olga: refunded at the bank" in task.note
    rows = recent(core.db.engine, action="compensation.resolve")
    assert rows and rows[0]["actor"] == "olga" and rows[0]["role"] == "operator"
    assert rows[0]["target"] == f"task:{task_id}" and rows[0]["detail"]["ok"] is True


def test_compensation_viewer_cannot_act(platform):
    core = platform.paycore
    TaskQueue(core.db, core.ids, clock=core.clock).enqueue(None, "notify", "k1", {})
    at = _app("console.pages.ops_compensation", platform, "vic", "viewer")
    _ok(at)
    assert not [b for b in at.button if b.key in ("comp_resolve", "comp_retry")]
    assert any("Read-only" in i.value for i in at.info)
    with core.db.session() as s:
        assert s.execute(select(CompensationTask.status)).scalar_one() == "pending"


def test_notification_resend(platform):
    core = platform.paycore
    now = datetime.now(UTC)
    with core.db.session() as s:
        s.execute(
            insert(Notification).values(
                id=7,
                event_id="e7",
                merchant_id="m",
                event_type="trade.paid",
                trade_id=None,
                payload="{}",
                url="http://x",
                status="gave_up",
                attempts=8,
                next_attempt_at=now,
                last_error="boom",
                created_at=now,
            )
        )
    at = _app("console.pages.ops_notifications", platform, "olga", "operator")
    _ok(at)
    _button(at, "nt_resend").click().run()
    _ok(at)
    with core.db.session() as s:
        row = s.get(Notification, 7)
        assert row is not None and (row.status, row.attempts) == ("pending", 0)
    rows = recent(core.db.engine, action="notification.resend")
    assert rows and rows[0]["target"] == "notification:7"
    viewer = _app("console.pages.ops_notifications", platform, "vic", "viewer")
    _ok(viewer)
    assert not [b for b in viewer.button if b.key == "nt_resend"]


def test_reconciliation_resolve_difference(platform):
    core = platform.paycore
    with core.db.session() as s:
        s.execute(
            insert(ReconDifference).values(
                id=5,
                run_id=1,
                kind="amount_mismatch",
                pay_org_no="SANDBOX_A",
                day="2026-01-01",
                ref="X1",
                our_amount=100,
                channel_amount=90,
                our_status="success",
                channel_status="success",
                resolution="manual",
                status="open",
                note="",
                created_at=datetime.now(UTC),
            )
        )
    at = _app("console.pages.ops_reconciliation", platform, "olga", "operator")
    _ok(at)
    at.selectbox(key="url_days").select("all days").run()  # the day filter starts at yesterday
    at.text_input(key="rc_note").input("channel fee withheld, booked")
    _button(at, "rc_resolve").click().run()
    _ok(at)
    with core.db.session() as s:
        row = s.get(ReconDifference, 5)
        assert row is not None and row.status == "resolved" and "channel fee" in row.note
    assert recent(core.db.engine, action="recon.resolve_difference")[0]["target"] == "difference:5"


def _upload_page(platform, data: bytes) -> None:
    """The reconciliation page with ``st.file_uploader`` answering ``data`` (AppTest has
    no file uploader element)."""
    import io

    import streamlit as st

    from console.pages.ops_reconciliation import render
    from console.reports.context import PageContext

    class Upload(io.BytesIO):
        name = "statement.csv"

    original = st.file_uploader
    st.file_uploader = lambda *a, **k: Upload(data)  # type: ignore[assignment]
    try:
        render(PageContext(platform, "olga", "operator"))
    finally:
        st.file_uploader = original  # type: ignore[assignment]


def test_reconciliation_upload_runs_the_statement(platform):
    from datetime import date

    csv_text = (
        "channel_txn_no,channel_ref,kind,amount,currency,status,settled_at\n"
        "Z1,,pay,700,CNY,success,2026-01-01T10:00:00+00:00\n"
    )
    at = AppTest.from_function(
        _upload_page, args=(platform, csv_text.encode()), default_timeout=60
    ).run()
    _ok(at)
    at.selectbox(key="rc_up_org").select("SANDBOX_A")
    at.date_input(key="rc_up_day").set_value(date(2026, 1, 1))
    _button(at, "rc_run").click().run()
    _ok(at)
    assert any("1 lines checked" in s.value for s in at.success)
    with platform.paycore.db.session() as s:
        diff = s.execute(select(ReconDifference)).scalar_one()
        assert (diff.kind, diff.ref, diff.day) == ("missing_ours", "Z1", "2026-01-01")
    audit = recent(platform.paycore.db.engine, action="recon.upload")
    assert audit and audit[0]["target"] == "recon:SANDBOX_A:2026-01-01"
