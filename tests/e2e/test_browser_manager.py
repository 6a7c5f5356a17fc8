"""The manager in a real browser: the SLA report after real traffic, against the database,
and the fund report in money.

The stack is ``browser_stack.console_stack`` (sandbox, API and console processes over one
SQLite file). Traffic goes through the API in two batches: the first is left until the
API's sampler has folded it into the 1-minute rollups (and a newer minute has started,
so the report trusts that bucket), the second is still in raw samples only. The report
must stitch both: its trade-creation and pay counts equal the rows in ``trades`` and
``pay_orders``, for 1 hour and for 1, 7, 30 and 90 days alike. The fund report then reads
in money (``13,580.16 CNY``, as the ledger says) and an empty period says so.
Screenshots: ``manager_*.png``.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from browser_stack import artifacts, browser, console_stack, login, select, wait  # noqa: F401

from collectors import TimeSeriesStore
from console.reports.funds import format_money, fund_report
from paycore import Database
from paycore.db.schema import PayOrder, Trade

pytestmark = pytest.mark.timeout(420)
REQ = "paywatch_link_requests_total"
VIEWPORT = {"width": 1366, "height": 768}


def db_counts(engine: sa.Engine) -> tuple[int, int]:
    with engine.connect() as conn:
        return (
            conn.execute(sa.select(sa.func.count()).select_from(Trade)).scalar_one(),
            conn.execute(sa.select(sa.func.count()).select_from(PayOrder)).scalar_one(),
        )


def sampled(engine: sa.Engine, step: str) -> int:
    """What the store holds of ``step`` over the last hour (the sampler's writes so far)."""
    got = TimeSeriesStore(engine).count(REQ, window=3600, at=time.time(), match={"step": step})
    return round(sum(s.value or 0 for s in got))


def wait_sampled(engine: sa.Engine) -> tuple[int, int]:
    """Until the API's sampler has written every trade and pay the database holds."""
    trades, pays = db_counts(engine)
    wait(
        lambda: sampled(engine, "trade_create") == trades and sampled(engine, "pay") == pays,
        f"the sampler to write {trades} trade creations and {pays} pays",
        timeout=60,
    )
    return trades, pays


def folded_into_minutes(engine: sa.Engine, since: float) -> bool:
    """The 1-minute rollup holds a bucket a minute newer than ``since``: the report now
    reads what came before from the rollup, not from raw samples."""
    with engine.connect() as conn:
        newest = conn.execute(
            sa.text("SELECT MAX(bucket) FROM metric_rollup_1m WHERE name = :n"), {"n": REQ}
        ).scalar()
    return newest is not None and float(newest) - 60 > since


def sla_rows(page: Any) -> dict[str, dict[str, str]]:
    """The SLA table as {name: {column: text}} (the cells of the grid's fallback table)."""
    grid = page.get_by_test_id("stDataFrame").first
    header = grid.locator("thead th").all_text_contents()
    rows = {}
    for tr in grid.locator("tbody tr").all():
        cells = dict(zip(header, tr.locator("td").all_text_contents(), strict=False))
        if cells.get("name"):
            rows[cells["name"]] = cells
    return rows


WINDOWS = {
    "1 hour": ("1h", 3600),
    "1 day": ("1d", 86400),
    "7 days": ("7d", 7 * 86400),
    "30 days": ("30d", 30 * 86400),
    "90 days": ("90d", 90 * 86400),
}


def tables_text(page: Any) -> str:
    """The text of every table cell on the page."""
    return " ".join(
        " ".join(g.locator("td").all_text_contents())
        for g in page.get_by_test_id("stDataFrame").all()
    )


def set_date(page: Any, label: str, key: str, day: str, expect: Any) -> None:
    """Type ``day`` (YYYY-MM-DD) into a date input's year, month and day fields; leaving
    the field commits it, and the URL then names it."""
    for part, value in zip(("year", "month", "day"), day.split("-"), strict=True):
        page.get_by_role("spinbutton", name=f"{part}, {label}").click()
        page.keyboard.type(value)
    page.get_by_role("heading", name="Fund report").click()
    expect(page).to_have_url(re.compile(rf"[?&]{key}={day}\b"))


def open_window(page: Any, label: str, expect: Any) -> dict[str, dict[str, str]]:
    """Pick the window; wait for the page drawn for it (its caption names the window's
    start) and read the table."""
    key, seconds = WINDOWS[label]
    select(page, "Window", label)
    expect(page).to_have_url(re.compile(rf"[?&]window={key}\b"))
    now = time.time()
    starts = {time.strftime("%Y-%m-%d %H:", time.gmtime(now - seconds + d)) for d in (-90, 0, 90)}
    pattern = "|".join(re.escape(s) for s in starts)
    expect(
        page.get_by_text(re.compile(rf"^({pattern})\d\d … .*Requests are counted"))
    ).to_be_visible()
    return wait(lambda: (r := sla_rows(page)) and "trade_create" in r and r, "the SLA table")


def test_manager_sla_counts_equal_the_database_and_funds_read_as_money(console_stack, browser):
    from playwright.sync_api import expect

    stack, shots = console_stack, artifacts()
    page = browser.new_page(viewport=VIEWPORT)
    try:
        stack.pay(6, prefix="early", amount=123_456)
        early = time.time()
        wait_sampled(stack.engine)
        login(page, stack.console, "manager")
        page.get_by_role("link", name="Fund report").click()
        expect(page.get_by_role("heading", name="Fund report")).to_be_visible()
        wait(
            lambda: folded_into_minutes(stack.engine, early),
            "the first batch in the 1-minute rollups",
            timeout=200,
        )
        stack.pay(5, prefix="late", amount=123_456)
        trades, pays = wait_sampled(stack.engine)
        assert (trades, pays) == (11, 11)
        plan = TimeSeriesStore(stack.engine).window_plan(REQ, window=30 * 86400, at=time.time())
        assert "1m" in [p.name for p in plan] and plan[-1].name == "raw"

        page.get_by_role("link", name="SLA report").click()
        expect(page.get_by_role("heading", name="SLA report")).to_be_visible()
        verified = []
        for label, shot in (
            ("30 days", "01_sla_30d"),
            ("1 hour", "02_sla_1h"),
            ("90 days", None),
            ("7 days", None),
            ("1 day", None),
        ):
            rows = open_window(page, label, expect)
            create, pay = rows["trade_create"], rows["pay"]
            got = (int(create["requests"]), int(create["good"]), int(pay["good"]))
            verified.append((label, got, (trades, trades, pays)))
            assert got == (trades, trades, pays), (label, create, pay)
            assert create["status"] == "met" and create["availability"] == "100.000 %"
            assert pay["error budget"] == "100.0 % left" and pay["burn rate"] == "0.00×"
            assert rows["refund"]["status"] == "no traffic"
            expect(page.get_by_text("No data for this period")).to_have_count(0)
            if shot:
                page.screenshot(path=shots / f"manager_{shot}.png", full_page=True)
        # the chart below the table: bars in the "met" colour (missed would be red)
        chart = page.get_by_test_id("stPlotlyChart").first
        chart.scroll_into_view_if_needed()
        fills = wait(
            lambda: chart.locator(".bars path").evaluate_all(
                "ps => ps.map(p => getComputedStyle(p).fill)"
            ),
            "the SLA chart's bars",
        )
        assert set(fills) == {"rgb(46, 125, 50)"}, fills  # MET: every target with traffic met
        chart.screenshot(path=shots / "manager_05_sla_chart.png")
        print(
            "verified (window, report requests/good/pay good, database trades/pay orders):",
            verified,
        )

        # the fund report: money with currency and separators, as the ledger says
        wait(lambda: _all_paid(stack.engine), "the sandbox to settle every pay", timeout=60)
        page.get_by_role("link", name="Fund report").click()
        expect(page.get_by_role("heading", name="Fund report")).to_be_visible()
        db = Database(stack.db_url)
        try:  # the page's default period: the last 30 days and today
            today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
            rep = fund_report(db, today - timedelta(days=30), today + timedelta(days=1))
        finally:
            db.dispose()
        fee = rep.total("CNY").platform_income
        clearing = rep.subject("1002", "CNY")
        assert clearing is not None and clearing.income == 11 * 123_456
        expect(page.get_by_test_id("stMetricValue").first).to_have_text(format_money(fee, "CNY"))
        money = format_money(clearing.income, "CNY")
        assert money == "13,580.16 CNY"
        grid_text = wait(lambda: money in (t := tables_text(page)) and t, f"{money} in a table")
        assert f" {clearing.income} " not in f" {grid_text} "  # never bare minor units
        assert re.search(r"\d{1,3}(,\d{3})*\.\d{2} CNY", grid_text)
        page.screenshot(path=shots / "manager_03_funds.png", full_page=True)
        fund_chart = page.get_by_test_id("stPlotlyChart").first
        fund_chart.scroll_into_view_if_needed()
        fund_chart.screenshot(path=shots / "manager_06_funds_chart.png")

        # an empty period says so instead of drawing empty axes
        set_date(page, "From (UTC, inclusive)", "from", "2020-01-01", expect)
        set_date(page, "To (UTC, inclusive)", "to", "2020-01-31", expect)
        expect(page.get_by_text("No data for this period").first).to_be_visible()
        expect(page.get_by_test_id("stPlotlyChart")).to_have_count(0)
        page.screenshot(path=shots / "manager_04_funds_empty.png", full_page=True)
    except Exception:
        page.screenshot(path=shots / "manager_failure.png", full_page=True)
        raise
    for name in (
        "01_sla_30d",
        "02_sla_1h",
        "03_funds",
        "04_funds_empty",
        "05_sla_chart",
        "06_funds_chart",
    ):
        assert (shots / f"manager_{name}.png").stat().st_size > 10_000


def _all_paid(engine: sa.Engine) -> bool:
    with engine.connect() as conn:
        return not conn.execute(
            sa.select(sa.func.count()).select_from(Trade).where(Trade.status != "paid")
        ).scalar_one()
