"""The compensation and notification pages (issue 18, point 8): pickers that offer only
actionable rows, tables that refresh after an action, 64-bit ids exact, user text inert.
AppTests over a migrated SQLite database."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import insert

pytest.importorskip("streamlit.testing.v1")

from ops_page_app import (
    BIG,
    HOSTILE,
    _app,
    _button,
    _ok,
    _table,
    _texts,
    platform,  # noqa: F401 - fixture
)

from console.audit import recent  # noqa: E402
from console.reports.context import PageContext  # noqa: E402
from paycore.db.schema import CompensationTask, Notification  # noqa: E402


def _task(
    core,
    status: str,
    biz_key: str,
    *,
    kind: str = "refund_retry",
    task_id: int | None = None,
    note: str = "",
    error: str = "",
) -> int:
    now = datetime.now(UTC)
    tid = task_id or core.ids.next_id()
    with core.db.session() as s:
        s.execute(
            insert(CompensationTask).values(
                id=tid,
                kind=kind,
                biz_key=biz_key,
                merchant_id="m1",
                payload="{}",
                status=status,
                attempts=1,
                max_attempts=5,
                next_run_at=now,
                last_error=error,
                note=note,
                created_at=now,
                updated_at=now,
            )
        )
    return tid


def _notification(core, nid: int, status: str, *, error: str = "") -> None:
    now = datetime.now(UTC)
    with core.db.session() as s:
        s.execute(
            insert(Notification).values(
                id=nid,
                event_id=f"e{nid}",
                merchant_id="m",
                event_type="trade.paid",
                trade_id=None,
                payload="{}",
                url="http://x",
                status=status,
                attempts=8,
                next_attempt_at=now,
                last_error=error,
                created_at=now,
            )
        )


# -- compensation: the picker offers only tasks an action applies to ------------------------
def test_compensation_picker_offers_only_actionable_tasks_and_refreshes(platform):
    """Old code: the picker listed done (and running) tasks, whose actions can only fail."""
    core = platform.paycore
    done = _task(core, "done", "k-done", task_id=BIG)
    running = _task(core, "running", "k-running")
    pending = _task(core, "pending", "k-pending", task_id=BIG + 1)
    failed = _task(core, "failed", "k-failed")
    manual = _task(core, "manual", "k-manual")
    at = _app("console.pages.ops_compensation", platform)
    _ok(at)
    assert set(at.selectbox(key="comp_task").options) == {
        f"{t} · refund_retry · k-{s} · {s}"
        for t, s in ((pending, "pending"), (failed, "failed"), (manual, "manual"))
    }
    ids = _table(at, "biz_key")["id"]
    assert str(done) in list(ids) and str(BIG + 1) in list(ids)  # exact, as text
    assert {str(running), str(done)} <= set(ids)  # the table still shows every task
    at.selectbox(key="comp_task").select(failed)
    _button(at, "comp_retry").click().run()
    _ok(at)
    assert any(f"Task {failed} will run again" in s.value for s in at.success)
    tasks = _table(at, "biz_key").set_index("id")
    assert tasks.loc[str(failed), "status"] == "pending"  # the table read again
    at.selectbox(key="comp_task").select(manual)
    at.text_input(key="comp_note").input("refunded at the bank by hand")
    _button(at, "comp_resolve").click().run()
    _ok(at)
    assert any(f"Task {manual} resolved" in s.value for s in at.success)
    assert _table(at, "biz_key").set_index("id").loc[str(manual), "status"] == "done"
    assert not any(f"{manual} ·" in o for o in at.selectbox(key="comp_task").options)
    assert at.text_input(key="comp_note").value == ""  # the note went with the action
    rows = recent(core.db.engine, action="compensation.resolve")
    assert rows[0]["target"] == f"task:{manual}" and rows[0]["role"] == "operator"
    # a view of done tasks offers nothing to act on
    at.selectbox(key="url_status").select("done").run()
    _ok(at)
    assert not [s for s in at.selectbox if s.key == "comp_task"]
    assert any("No task in this view can be retried" in c.value for c in at.caption)


def test_compensation_user_text_is_inert(platform):
    core = platform.paycore
    for i, text in enumerate(HOSTILE):
        _task(core, "failed", f"k{i}", note=text, error=text)
    _task(core, "pending", HOSTILE[0])
    at = _app("console.pages.ops_compensation", platform)
    _ok(at)
    assert set(_table(at, "biz_key")["note"]) >= set(HOSTILE)  # tables show them as text
    joined = "\n".join(_texts(at))
    assert "![px](" not in joined and "**bold**" not in joined and "<img" not in joined
    viewer = _app("console.pages.ops_compensation", platform, "vic", "viewer")
    _ok(viewer)
    assert not [b for b in viewer.button if b.key in ("comp_resolve", "comp_retry")]


# -- notifications: only resendable ones are offered; the table refreshes --------------------
def test_notification_picker_offers_resendable_ones_and_refreshes(platform):
    from console.pages.ops_notifications import _delivery
    from console.reports.ops import resend_notification

    core = platform.paycore
    _notification(core, BIG, "gave_up", error=HOSTILE[0])
    _notification(core, 8, "pending")
    _notification(core, 9, "delivered")
    at = _app("console.pages.ops_notifications", platform)
    _ok(at)
    assert at.selectbox(key="nt_id").options == [f"{BIG} · trade.paid · m · gave_up"]
    assert list(_table(at, "event_id")["id"]) == [str(BIG), "8"]  # exact, as text
    assert list(_table(at, "event_id")["last_error"])[0] == HOSTILE[0]  # a table: text
    assert "![px](" not in "\n".join(_texts(at))
    _button(at, "nt_resend").click().run()
    _ok(at)
    assert any(f"Notification {BIG} queued" in s.value for s in at.success)
    assert _table(at, "event_id").set_index("id").loc[str(BIG), "status"] == "pending"
    assert not [s for s in at.selectbox if s.key == "nt_id"]  # nothing left to resend here
    assert any("No notification in this view can be resent" in c.value for c in at.caption)
    assert recent(core.db.engine, action="notification.resend")[0]["target"] == (
        f"notification:{BIG}"
    )
    at.selectbox(key="url_view").select("delivered").run()
    assert at.selectbox(key="nt_id").options == ["9 · trade.paid · m · delivered"]
    c = PageContext(platform, "olga", "operator")
    delivery = _delivery(c)
    try:
        with pytest.raises(ValueError, match="is pending"):
            resend_notification(core.db, delivery, 8, "olga")
    finally:
        delivery.close()
