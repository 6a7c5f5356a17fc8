"""Drills and operations in a real browser (issue 18, point 8), as an operator uses them.

The platform runs with the ``paywatch`` CLI (sandbox channel, API, console) over SQLite
(:mod:`browser_stack`). The operator opens Drills and finds the knob controls at what the
sandbox runs (set first through the sandbox's admin API with the token the CLI shares
through the var dir); the compensation picker lists no done task; reconciliation offers
only the configured pay orgs (a ``*`` on record from old data is never offered), warns
about an unfinished day, and after a run its tables show the new run with its 64-bit id
exact (a JavaScript number would round it). Screenshots: ``ops_NN_<what>.png``.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from browser_stack import artifacts, browser, console_stack, login, wait  # noqa: F401

pytestmark = pytest.mark.timeout(420)
KNOBS = {"error_rate": 0.35, "timeout_rate": 0.1, "latency_ms": 250.0, "fail_rate": 0.2}


def _admin_token(stack: Any) -> str:
    """The sandbox's admin token as the CLI sandbox reads it (``sandbox_admin_token()``:
    ``PAYWATCH_SANDBOX_ADMIN_TOKEN``, else ``var/sandbox_admin_token``)."""
    from runtime.settings import Settings

    return Settings.from_env(stack.procs.env).sandbox_admin_token()


def _put_knobs(stack: Any, org: str, changes: dict[str, float]) -> dict[str, Any]:
    def up() -> bool:
        try:
            return httpx.get(f"{stack.sandbox}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    wait(up, "the sandbox channel")
    r = httpx.put(
        f"{stack.sandbox}/admin/knobs/{org}",
        json=changes,
        headers={"X-Sandbox-Admin": _admin_token(stack)},
        timeout=5,
    )
    assert r.status_code == 200, r.text
    return dict(r.json())


def _get_knobs(stack: Any, org: str) -> dict[str, Any]:
    r = httpx.get(
        f"{stack.sandbox}/admin/knobs", headers={"X-Sandbox-Admin": _admin_token(stack)}, timeout=5
    )
    assert r.status_code == 200, r.text
    return dict(r.json()[org])


def _seed_tasks(engine: sa.Engine) -> dict[str, int]:
    """One compensation task per status, with ids above 2^53 as the platform makes them."""
    from paycore.db.schema import CompensationTask

    now = datetime.now(UTC)
    ids = {
        s: 388_000_000_000_000_000 + i
        for i, s in enumerate(("pending", "running", "done", "failed", "manual"))
    }
    with engine.begin() as conn:
        for status, tid in ids.items():
            conn.execute(
                sa.insert(CompensationTask.__table__).values(
                    id=tid,
                    kind="refund_retry",
                    biz_key=f"k-{status}",
                    merchant_id="m1",
                    payload="{}",
                    status=status,
                    attempts=1,
                    max_attempts=5,
                    next_run_at=now,
                    last_error="",
                    note="",
                    created_at=now,
                    updated_at=now,
                )
            )
    return ids


def _seed_star_run(engine: sa.Engine) -> None:
    """A run for pay org ``*`` as the old console recorded it."""
    from paycore.db.schema import ReconRun

    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.insert(ReconRun.__table__).values(
                id=7,
                kind="external",
                pay_org_no="*",
                day="2020-01-01",
                status="done",
                cursor=1,
                stats="{}",
                started_at=now,
                finished_at=now,
            )
        )


def _open(page: Any, link: str, heading: str) -> None:
    from playwright.sync_api import expect

    page.get_by_role("link", name=link, exact=True).click()
    expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible(timeout=30_000)


def _options(page: Any, label: str) -> list[str]:
    """The options a selectbox offers (opened, read, closed); a click that lands while
    the page is still settling is tried again."""
    box = page.get_by_role("combobox", name=label, exact=True)
    box.scroll_into_view_if_needed()
    listbox = page.get_by_role("listbox")
    for _ in range(10):
        box.click()
        try:
            listbox.get_by_role("option").first.wait_for(timeout=3_000)
        except Exception:  # noqa: BLE001 - not open yet: close and click again
            page.keyboard.press("Escape")
            continue
        texts = [t.strip() for t in listbox.get_by_role("option").all_inner_texts()]
        page.keyboard.press("Escape")
        return texts
    raise AssertionError(f"the {label} selectbox did not open")


def _set_date(page: Any, label: str, day: Any) -> None:
    """Type ``day`` into a date input's year, month and day fields; closing the calendar
    that typing opens commits it."""
    year = page.get_by_role("spinbutton", name=f"year, {label}", exact=True)
    year.click()
    page.keyboard.type(day.strftime("%Y%m%d"))
    page.keyboard.press("Escape")


def _grid(page: Any, column: str) -> list[dict[str, str]]:
    """Rows of the first table with ``column``: the cell texts of the ``<table role=grid>``
    a data grid keeps inside its canvas (drawn once the grid is on screen)."""
    for frame in page.get_by_test_id("stDataFrame").all():
        frame.scroll_into_view_if_needed()
        header = [h.strip() for h in frame.locator("thead th").all_text_contents()]
        if column in header:
            return [
                dict(zip(header, tr.locator("td").all_text_contents(), strict=False))
                for tr in frame.locator("tbody tr").all()
            ]
    return []


def test_operator_drills_and_operations(console_stack, browser, tmp_path):  # noqa: F811
    from playwright.sync_api import expect

    stack = console_stack
    out = artifacts()
    _put_knobs(stack, "SANDBOX_A", KNOBS)
    tasks = _seed_tasks(stack.engine)
    _seed_star_run(stack.engine)
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    login(page, stack.console, "operator")

    # Drills: the controls start at the sandbox's knobs
    _open(page, "Drills", "Drills")
    expect(page.get_by_role("heading", name="Channel knobs")).to_be_visible()
    labels = {
        "error_rate": "Error rate (503)",
        "timeout_rate": "Timeout rate",
        "fail_rate": "Fail (callback failed) rate",
    }
    for knob, label in labels.items():
        slider = page.locator(f'input[type=range][aria-label="{label}"]')
        expect(slider).to_have_count(1)
        assert float(slider.input_value()) == KNOBS[knob], (knob, slider.input_value())
    latency = page.get_by_role("spinbutton", name="Median latency (ms)")
    expect(latency).to_have_value(f"{KNOBS['latency_ms']:.2f}")
    page.screenshot(path=str(out / "ops_01_drills_knobs_at_sandbox_values.png"))
    latency.fill("300")
    latency.press("Enter")
    page.get_by_role("button", name="Apply knobs").click()
    expect(
        page.get_by_text(re.compile(r"^Knobs applied to SANDBOX_A: .*latency_ms 300"))
    ).to_be_visible(timeout=30_000)
    assert _get_knobs(stack, "SANDBOX_A")["latency_ms"] == 300.0
    expect(latency).to_have_value("300.00")

    # Compensation: the picker lists no done (or running) task
    _open(page, "Compensation", "Compensation queue")
    offered = _options(page, "Task")
    assert offered and not [o for o in offered if o.endswith("· done") or "running" in o]
    assert {o.split(" ")[0] for o in offered} == {
        str(tasks[s]) for s in ("pending", "failed", "manual")
    }  # exact 64-bit ids
    ids = {r.get("id") for r in wait(lambda: _grid(page, "biz_key"), "the task table")}
    assert str(tasks["done"]) in ids  # the table shows it, exactly; the picker does not
    page.get_by_role("combobox", name="Task", exact=True).click()
    page.screenshot(path=str(out / "ops_02_compensation_picker_actionable_only.png"))
    page.keyboard.press("Escape")

    # Reconciliation: configured pay orgs only; an unfinished day needs a confirmation
    _open(page, "Reconciliation", "Reconciliation")
    assert _options(page, "Statement pay org") == ["SANDBOX_A", "SANDBOX_B", "SANDBOX_C"]
    assert "*" in _options(page, "Pay org")  # the filter shows what is on record
    today = datetime.now(UTC).date()
    yesterday = today - timedelta(days=1)
    statement = tmp_path / "statement.csv"
    statement.write_text(
        "channel_txn_no,channel_ref,kind,amount,currency,status,settled_at\n"
        f"B1,,pay,700,CNY,success,{yesterday.isoformat()}T10:00:00+00:00\n"
        f"B2,,pay,900,CNY,success,{yesterday.isoformat()}T11:00:00+00:00\n"
    )
    page.locator("input[type=file]").set_input_files(str(statement))
    _set_date(page, "Statement day (UTC)", today)
    expect(page.get_by_text(f"{today.isoformat()} is not over yet (UTC)")).to_be_visible()
    expect(page.get_by_role("button", name="Reconcile", exact=True)).to_be_disabled()
    page.get_by_text("Reconcile the unfinished day anyway").scroll_into_view_if_needed()
    page.screenshot(path=str(out / "ops_03_reconciliation_unfinished_day.png"))
    _set_date(page, "Statement day (UTC)", yesterday)
    expect(page.get_by_text(f"{today.isoformat()} is not over yet (UTC)")).to_have_count(0)
    page.get_by_role("button", name="Reconcile", exact=True).click()
    expect(page.get_by_text(re.compile(r"^Run \d+ \(SANDBOX_A"))).to_be_visible(timeout=30_000)
    with stack.engine.connect() as conn:
        run_id = conn.execute(
            sa.text("select id from recon_runs where pay_org_no='SANDBOX_A'")
        ).scalar_one()
    assert run_id > 2**53
    expect(page.get_by_text(f"Run {run_id} (SANDBOX_A {yesterday.isoformat()})")).to_be_visible()
    # the filters moved to the run, and the tables read again: it is there, its id exact
    expect(page.get_by_role("combobox", name="Pay org", exact=True)).to_have_value("SANDBOX_A")
    runs = wait(lambda: _grid(page, "cursor"), "the runs table")
    assert [r["id"] for r in runs] == [str(run_id)], runs
    diffs = wait(lambda: _grid(page, "channel_amount"), "the differences table")
    assert {r["ref"] for r in diffs} == {"B1", "B2"} and {r["run_id"] for r in diffs} == {
        str(run_id)
    }
    page.get_by_role("heading", name="Runs").scroll_into_view_if_needed()
    page.screenshot(path=str(out / "ops_04_reconciliation_refreshed_exact_id.png"))
    with stack.engine.connect() as conn:
        orgs = conn.execute(sa.text("select distinct pay_org_no from recon_differences")).all()
    assert [o[0] for o in orgs] == ["SANDBOX_A"]  # no bogus "*" difference

    # the sandbox goes away: the knobs panel says so, the rest of Drills still works
    stack.procs.stop("sandbox")
    _open(page, "Drills", "Drills")
    expect(page.get_by_text(re.compile(r"^The sandbox channel is unavailable"))).to_be_visible(
        timeout=30_000
    )
    expect(page.locator("input[type=range]")).to_have_count(0)
    expect(page.get_by_role("heading", name="Drill reports")).to_be_visible()
    expect(page.get_by_text("Traceback")).to_have_count(0)
    page.screenshot(path=str(out / "ops_05_drills_sandbox_down.png"))
