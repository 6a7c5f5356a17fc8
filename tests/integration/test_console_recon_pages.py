"""Reconciliation from the console (issue 18, point 8): the function that runs it validates the
pay org and the day; the page's date pickers, exact ids, a warning for an unfinished day,
tables that refresh after an upload, configured pay orgs only, user text inert. AppTests
over a migrated SQLite database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import insert, select

pytest.importorskip("streamlit.testing.v1")

from ops_page_app import (
    BIG,
    CSV_HEAD,
    HOSTILE,
    ORGS,
    _app,
    _assert_inert,
    _button,
    _ok,
    _table,
    platform,  # noqa: F401 - fixture
)

from console.audit import recent  # noqa: E402
from console.safe import md  # noqa: E402
from paycore.db.schema import ReconDifference, ReconRun  # noqa: E402
from paycore.errors import DayNotOver, InvalidContext, UnknownPayOrg  # noqa: E402


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
