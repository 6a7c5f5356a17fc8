"""The Drills and operations pages (issue 18, point 8): real knob state, pickers that offer
only actionable rows, tables that refresh after an action, pay orgs validated, 64-bit ids
exact, date pickers, a warning for an unfinished day, panels that fail alone, user text
inert. AppTests over a migrated SQLite database; the sandbox channel over real HTTP."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from types import SimpleNamespace

import pytest
import sqlalchemy as sa
from sqlalchemy import insert, select

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from console.audit import recent  # noqa: E402
from console.reports.context import PageContext  # noqa: E402
from console.safe import md  # noqa: E402
from paycore.db.schema import (  # noqa: E402
    CompensationTask,
    Notification,
    ReconDifference,
    ReconRun,
)
from paycore.errors import DayNotOver, InvalidContext, UnknownPayOrg  # noqa: E402

ORGS = ("SANDBOX_A", "SANDBOX_B", "SANDBOX_C")
ADMIN = "drill-admin-token"
#: above 2^53: a JavaScript number cannot hold it (it would show ...048 as ...050)
BIG = 387985099441922048
HOSTILE = ("![px](http://127.0.0.1:9/p.png)", "**bold**", "<img src=x onerror=alert(1)>")
CSV_HEAD = "channel_txn_no,channel_ref,kind,amount,currency,status,settled_at\n"


# -- fixtures and helpers -------------------------------------------------------------------
@pytest.fixture
def platform(sqlite_url):
    """A migrated SQLite pay core with the configured pay orgs (what the pages read)."""
    from paycore import Database, PayCore

    db = Database(sqlite_url)
    core = PayCore(db)
    yield SimpleNamespace(paycore=core, settings=SimpleNamespace(pay_orgs=ORGS))
    core.lock.close()
    db.dispose()


def _page(module: str, platform, user: str, role: str, upload: bytes | None = None) -> None:
    """Render an operations page; ``upload`` answers ``st.file_uploader`` (AppTest has no
    file uploader element)."""
    import importlib
    import io

    import streamlit as st

    from console.reports.context import PageContext

    class Upload(io.BytesIO):
        name = "statement.csv"

    original = st.file_uploader
    if upload is not None:
        st.file_uploader = lambda *a, **k: Upload(upload)  # type: ignore[assignment]
    try:
        importlib.import_module(module).render(PageContext(platform, user, role))
    finally:
        st.file_uploader = original  # type: ignore[assignment]


def _app(
    module: str,
    platform,
    user: str = "olga",
    role: str = "operator",
    upload: bytes | None = None,
    query: dict[str, str] | None = None,
) -> AppTest:
    at = AppTest.from_function(
        _page, args=(module, platform, user, role, upload), default_timeout=60
    )
    for k, v in (query or {}).items():
        at.query_params[k] = v
    return at.run()


def _ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def _button(at: AppTest, key: str):
    return next(b for b in at.button if b.key == key)


def _has_button(at: AppTest, key: str) -> bool:
    return any(b.key == key for b in at.button)


def _texts(at: AppTest) -> list[str]:
    """Every string the page rendered through Markdown."""
    out: list[str] = []
    for kind in (
        "title",
        "subheader",
        "markdown",
        "caption",
        "error",
        "warning",
        "info",
        "success",
        "toast",
    ):
        out += [str(e.value) for e in getattr(at, kind)]
    out += [str(m.label) for m in at.metric]
    return out


def _table(at: AppTest, column: str):
    """The first table with ``column``."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def _assert_inert(at: AppTest) -> None:
    """No hostile string reached Markdown unescaped; each was shown escaped."""
    texts = _texts(at)
    joined = "\n".join(texts)
    assert "![px](" not in joined and "**bold**" not in joined
    assert not re.search(r"(?<!\\)<img", joined), joined
    assert md(HOSTILE[0]) in joined  # shown, as its characters


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


def _difference(
    core,
    did: int,
    *,
    run_id: int = 1,
    day: str = "2026-01-01",
    note: str = "",
    ref: str = "X1",
    status: str = "open",
) -> None:
    with core.db.session() as s:
        s.execute(
            insert(ReconDifference).values(
                id=did,
                run_id=run_id,
                kind="amount_mismatch",
                pay_org_no="SANDBOX_A",
                day=day,
                ref=ref,
                our_amount=100,
                channel_amount=90,
                our_status="success",
                channel_status="success",
                resolution="manual",
                status=status,
                note=note,
                created_at=datetime.now(UTC),
            )
        )


def _statement(day: date, *refs: str) -> bytes:
    at = f"{day.isoformat()}T10:00:00+00:00"
    return (CSV_HEAD + "".join(f"{r},,pay,700,CNY,success,{at}\n" for r in refs)).encode()


def _counts(core) -> tuple[int, int]:
    with core.db.session() as s:
        return (
            s.execute(select(sa.func.count()).select_from(ReconRun)).scalar_one(),
            s.execute(select(sa.func.count()).select_from(ReconDifference)).scalar_one(),
        )


# -- reconciliation: the function that runs it validates the pay org and the day ------------
def test_reconcile_day_refuses_star_and_unknown_orgs_and_records_nothing(platform):
    """Old code: pay org ``*`` was reconciled (a run and a bogus ``missing_ours``)."""
    from console.reports.ops import parse_statement_csv
    from paycore.recon import reconcile_day

    core = platform.paycore
    day = date(2026, 1, 1)
    lines = parse_statement_csv(_statement(day, "Z1"))
    with pytest.raises(InvalidContext, match="pay_org_no"):
        reconcile_day(core, lambda o, d: lines, "*", day, pay_orgs=ORGS)
    with pytest.raises(InvalidContext, match="pay_org_no"):
        reconcile_day(core, lambda o, d: lines, "*", day)  # never a valid pay org
    with pytest.raises(UnknownPayOrg, match="SANDBOX_Z is not a configured pay org"):
        reconcile_day(core, lambda o, d: lines, "SANDBOX_Z", day, pay_orgs=ORGS)
    assert _counts(core) == (0, 0)
    assert reconcile_day(core, lambda o, d: lines, "SANDBOX_A", day, pay_orgs=ORGS).counts == {
        "missing_ours": 1
    }


def test_reconcile_day_refuses_an_unfinished_day_unless_allowed(platform):
    from paycore.recon import reconcile_day

    core = platform.paycore
    today = datetime.now(UTC).date()
    with pytest.raises(DayNotOver, match=f"{today.isoformat()} is not over"):
        reconcile_day(core, lambda o, d: [], "SANDBOX_A", today, unfinished_ok=False)
    with pytest.raises(DayNotOver):
        reconcile_day(
            core, lambda o, d: [], "SANDBOX_A", today + timedelta(days=3), unfinished_ok=False
        )
    assert _counts(core) == (0, 0)
    done = reconcile_day(
        core, lambda o, d: [], "SANDBOX_A", today - timedelta(days=1), unfinished_ok=False
    )
    assert done.status == "done"
    assert reconcile_day(core, lambda o, d: [], "SANDBOX_A", today).status == "done"  # default


def test_reconcile_statement_is_checked_before_anything_is_recorded(platform):
    """The console's upload path: configured orgs only, unfinished day only if confirmed."""
    from console.reports.ops import parse_statement_csv, reconcile_statement

    core = platform.paycore
    past = datetime.now(UTC).date() - timedelta(days=2)
    lines = parse_statement_csv(_statement(past, "Z1"))
    for org, error in (("*", InvalidContext), ("SANDBOX_Z", UnknownPayOrg), ("", InvalidContext)):
        with pytest.raises(error):
            reconcile_statement(core, lines, org, past, pay_orgs=ORGS)
    today = datetime.now(UTC).date()
    with pytest.raises(DayNotOver):
        reconcile_statement(core, lines, "SANDBOX_A", today, pay_orgs=ORGS)
    assert _counts(core) == (0, 0)
    seen: list[int] = []
    rep = reconcile_statement(core, lines, "SANDBOX_A", past, pay_orgs=ORGS, progress=seen.append)
    assert rep.counts == {"missing_ours": 1} and seen == [1]


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


# -- reconciliation --------------------------------------------------------------------------
def _run_row(core, run_id: int, day: str, org: str = "SANDBOX_A") -> None:
    now = datetime.now(UTC)
    with core.db.session() as s:
        s.execute(
            insert(ReconRun).values(
                id=run_id,
                kind="external",
                pay_org_no=org,
                day=day,
                status="done",
                cursor=1,
                stats="{}",
                started_at=now,
                finished_at=now,
            )
        )


def test_reconciliation_day_is_a_date_picker_and_ids_are_exact(platform):
    """Old code: a free-text day ("yesterday" matched nothing) and ids as numbers."""
    core = platform.paycore
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    _run_row(core, BIG, yesterday)
    _run_row(core, 77, "2026-01-01")
    _difference(core, BIG + 1, run_id=BIG, day=yesterday, note=HOSTILE[1])
    _difference(core, 5, day="2026-01-01", ref="X5")
    at = _app("console.pages.ops_reconciliation", platform)
    _ok(at)
    assert at.date_input(key="url_day").value.isoformat() == yesterday  # default: yesterday
    runs = _table(at, "cursor")
    assert list(runs["id"]) == [str(BIG)]  # exact, as text (a number would be ...050)
    diffs = _table(at, "channel_amount")
    assert (list(diffs["id"]), list(diffs["run_id"])) == ([str(BIG + 1)], [str(BIG)])
    assert list(diffs["note"]) == [HOSTILE[1]]
    assert any("1 open difference(s) on other days (2026-01-01)" in c.value for c in at.caption)
    # a shared link with a day, and one with a day nobody can read
    linked = _app("console.pages.ops_reconciliation", platform, query={"day": "2026-01-01"})
    assert list(_table(linked, "cursor")["id"]) == ["77"]
    bad = _app("console.pages.ops_reconciliation", platform, query={"day": "yesterday"})
    assert bad.date_input(key="url_day").value.isoformat() == yesterday
    assert list(_table(bad, "cursor")["id"]) == [str(BIG)]
    every = _app("console.pages.ops_reconciliation", platform, query={"days": "all days"})
    assert set(_table(every, "cursor")["id"]) == {str(BIG), "77"}


def test_reconciliation_upload_refreshes_the_tables_with_the_new_run(platform):
    """Old code: the run did not show until the next click (and its id went through a float)."""
    core = platform.paycore
    past = datetime.now(UTC).date() - timedelta(days=3)
    at = _app("console.pages.ops_reconciliation", platform, upload=_statement(past, "Z1", "Z2"))
    _ok(at)
    assert at.selectbox(key="rc_up_org").options == list(ORGS)
    assert not [w for w in at.warning if "not over" in w.value]
    at.selectbox(key="rc_up_org").select("SANDBOX_B")
    at.date_input(key="rc_up_day").set_value(past)
    _button(at, "rc_run").click().run()
    _ok(at)
    with core.db.session() as s:
        run = s.execute(select(ReconRun)).scalar_one()
    assert run.id > 2**53 and (run.pay_org_no, run.day) == ("SANDBOX_B", past.isoformat())
    assert any(
        md(f"Run {run.id} (SANDBOX_B") in s.value and "2 lines checked" in s.value
        for s in at.success
    )
    # the filters moved to the run's org and day, and both tables read again
    assert at.selectbox(key="url_org").value == "SANDBOX_B"
    assert at.date_input(key="url_day").value == past
    assert list(_table(at, "cursor")["id"]) == [str(run.id)]
    assert set(_table(at, "channel_amount")["ref"]) == {"Z1", "Z2"}
    audit = recent(core.db.engine, action="recon.upload")
    assert audit[0]["target"] == f"recon:SANDBOX_B:{past.isoformat()}"
    assert audit[0]["detail"]["ok"] is True and audit[0]["role"] == "operator"


def test_reconciliation_of_an_unfinished_day_needs_a_confirmation(platform):
    """Old code: today's statement was reconciled without a word."""
    core = platform.paycore
    today = datetime.now(UTC).date()
    at = _app("console.pages.ops_reconciliation", platform, upload=_statement(today, "T1"))
    at.date_input(key="rc_up_day").set_value(today).run()
    _ok(at)
    assert any(
        f"{today.isoformat()} is not over yet" in w.value.replace("\\", "") for w in at.warning
    )
    assert _button(at, "rc_run").disabled
    assert _counts(core) == (0, 0)
    at.checkbox(key="rc_unfinished").check().run()
    assert not _button(at, "rc_run").disabled
    _button(at, "rc_run").click().run()
    _ok(at)
    assert _counts(core)[0] == 1
    assert recent(core.db.engine, action="recon.upload")[0]["detail"]["unfinished"] is True


def test_reconciliation_pay_org_select_lists_configured_orgs_only(platform):
    """A run on record for ``*`` (old data) may be filtered on, never reconciled again."""
    core = platform.paycore
    _run_row(core, 99, "2026-01-01", org="*")
    at = _app(
        "console.pages.ops_reconciliation",
        platform,
        query={"org": "*"},
        upload=_statement(date(2026, 1, 1), "Z1"),
    )
    _ok(at)
    assert at.selectbox(key="rc_up_org").options == list(ORGS)
    assert "*" in at.selectbox(key="url_org").options  # the filter shows what is on record


def test_reconciliation_errors_and_notes_are_inert_and_resolve_refreshes(platform):
    core = platform.paycore
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    _difference(core, 5, day=yesterday, note=HOSTILE[2])
    bad = (CSV_HEAD + f"Z1,,pay,{HOSTILE[0]},CNY,success,2026-01-01T10:00:00+00:00\n").encode()
    at = _app("console.pages.ops_reconciliation", platform, upload=bad)
    _ok(at)
    at.date_input(key="rc_up_day").set_value(date(2026, 1, 1))
    _button(at, "rc_run").click().run()
    _ok(at)
    assert any("statement CSV line 2" in e.value for e in at.error)
    _assert_inert(at)
    assert _counts(core) == (0, 1)
    at.text_input(key="rc_note").input(HOSTILE[1])
    _button(at, "rc_resolve").click().run()
    _ok(at)
    assert any("Difference 5 resolved" in s.value for s in at.success)
    assert _table(at, "channel_amount").set_index("id").loc["5", "status"] == "resolved"
    assert any("No open difference in this view" in c.value for c in at.caption)
    viewer = _app("console.pages.ops_reconciliation", platform, "vic", "viewer")
    _ok(viewer)
    assert not [b for b in viewer.button if b.key in ("rc_run", "rc_resolve")]
