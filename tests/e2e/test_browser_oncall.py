"""The on-call views in a real browser (issue 18, points 4 and 7), at 1366x768.

* The metrics source is down (``PAYWATCH_PROMETHEUS_URL`` at a closed port): the
  Overview's database-backed panels (active alerts, backlogs) still render, each metrics
  panel says its source is unavailable, and no traceback text is anywhere on the page;
  the drill-down the same.
* An uncaught error (the console started on a database it cannot open), through
  ``paywatch console`` and through ``streamlit run console/app.py`` directly, shows
  Streamlit's generic line only: ``showErrorDetails`` is "none" both ways.
* With traffic, the active alerts (summary, severity, resource, since, runbook) are above
  the fold, every panel says when it was updated and refreshes by itself; an operator
  silences an alert from there.
* The drill-down with ``?org=SANDBOX_B`` filters its headline.

Screenshots: ``oncall_NN_<what>.png``.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from browser_stack import (  # noqa: F401
    ROOT,
    ConsoleStack,
    Processes,
    artifacts,
    browser,
    console_stack,
    login,
    wait,
)
from conftest import free_port

pytestmark = pytest.mark.timeout(420)
VIEWPORT = {"width": 1366, "height": 768}
#: what a traceback or a server path looks like on a page
TRACEBACK = re.compile(r'Traceback|\.py"|\.py:\d|File "|site-packages|/work/|/tmp/')
UPDATED = re.compile(r"updated \d\d:\d\d:\d\d UTC")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def put_alert(
    engine: sa.Engine,
    rule: str,
    labels: dict[str, str],
    summary: str,
    *,
    severity: str = "page",
    state: str = "firing",
    ago: float = 600,
) -> None:
    """An alert row as the alert engine writes it (a worker would; none runs here)."""
    full = {**labels, "alertname": rule, "severity": severity}
    now = time.time()
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into alert_states (fingerprint, rule, labels, annotations, severity, state,"
                " value, active_since, fired_at, resolved_at, last_eval) values (:fp, :rule,"
                " :labels, :notes, :sev, :state, 1, :since, :fired, null, :now)"
            ),
            {
                "fp": f"{rule}-{len(full)}-{time.monotonic_ns()}",
                "rule": rule,
                "labels": json.dumps(dict(sorted(full.items()))),
                "notes": json.dumps({"summary": summary, "runbook": f"docs/runbook.md#{rule}"}),
                "sev": severity,
                "state": state,
                "since": now - ago,
                "fired": now - ago if state == "firing" else None,
                "now": now,
            },
        )


def body_text(page: Any) -> str:
    return str(page.locator("body").inner_text())


def new_page(browser: Any) -> Any:
    return browser.new_context(viewport=VIEWPORT).new_page()


def open_link(page: Any, stack: Any, query: str) -> None:
    """The drill-down at ``/oncall_link?<query>`` (the session cookie keeps the user in)."""
    from playwright.sync_api import expect

    page.goto(f"{stack.console}/oncall_link?{query}")
    expect(page.get_by_role("heading", name="Link drill-down")).to_be_visible(timeout=30_000)


# -- a metrics outage ----------------------------------------------------------------------
def test_metrics_outage_leaves_database_panels_and_shows_no_traceback(tmp_path, browser):
    from playwright.sync_api import expect

    stack = ConsoleStack(
        tmp_path, extra_env={"PAYWATCH_PROMETHEUS_URL": f"http://127.0.0.1:{closed_port()}"}
    )
    stack.setup()
    try:
        stack.start()
        put_alert(
            stack.engine,
            "compensation_backlog_high",
            {"status": "pending"},
            "150 compensation tasks pending",
            severity="ticket",
        )
        page = new_page(browser)
        login(page, stack.console, "viewer")
        expect(page.get_by_text("150 compensation tasks pending")).to_be_visible(timeout=30_000)
        expect(page.get_by_text("Compensation pending")).to_be_visible()
        outage = page.get_by_text(re.compile("The metrics source is unavailable"))
        # core links, channel health, guard fallbacks, routing, dependencies
        wait(lambda: outage.count() == 5, "five metrics panels saying the source is down")
        expect(page.get_by_text(re.compile(r"updated .* from the database")).first).to_be_visible()
        page.screenshot(path=str(artifacts() / "oncall_01_metrics_outage.png"), full_page=True)
        text = body_text(page)
        assert not TRACEBACK.search(text), TRACEBACK.search(text)
        assert "Backlogs" in text and "Active alerts" in text

        page.get_by_role("link", name="Link drill-down").click()
        expect(page.get_by_role("heading", name="Link drill-down")).to_be_visible()
        wait(lambda: outage.count() == 2, "the drill-down's two panels saying so")
        page.screenshot(path=str(artifacts() / "oncall_02_drilldown_outage.png"))
        assert not TRACEBACK.search(body_text(page))
    except Exception:
        for name in stack.procs.procs:
            print(f"--- {name} log ---\n{stack.procs.tail(name)}", file=sys.stderr)
        raise
    finally:
        stack.stop()


def _broken_env(tmp_path: Path) -> dict[str, str]:
    import os

    (tmp_path / "afile").write_text("")  # the database's "directory" is a file
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYWATCH_")}
    return env | {
        "PAYWATCH_DATABASE_URL": f"sqlite:///{tmp_path}/afile/pw.db",
        "PAYWATCH_VAR_DIR": str(tmp_path / "var"),
    }


def _generic_error_only(browser: Any, url: str, shot: str) -> None:
    page = new_page(browser)
    page.goto(url)
    wait(lambda: page.get_by_test_id("stException").count(), f"the error at {url}", timeout=60)
    page.screenshot(path=str(artifacts() / shot))
    text = body_text(page)
    assert not TRACEBACK.search(text), TRACEBACK.search(text)
    assert "This app has encountered an error" in text
    assert "FileExistsError" not in text and "afile" not in text


def test_a_forced_error_shows_no_traceback_however_the_console_starts(tmp_path, browser):
    """The console on a database it cannot open fails in the app script itself. Streamlit's
    default ("full") shows the exception (FileExistsError), its message with the path and a
    traceback with server paths (console/app.py, paycore/db/engine.py ...)."""
    env = _broken_env(tmp_path)
    procs = Processes(env, tmp_path)
    cli_port, direct_port = free_port(), free_port()
    procs.start("console", "console", "--port", str(cli_port))
    log = open(tmp_path / "direct.log", "w")  # noqa: SIM115 - closed below
    direct = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streamlit",
            "run",
            str(ROOT / "console" / "app.py"),
            "--server.port",
            str(direct_port),
            "--server.headless",
            "true",
        ],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    procs.procs["direct"] = direct  # stopped (process group) with the others
    try:
        procs.wait_http("console", f"http://127.0.0.1:{cli_port}/_stcore/health", timeout=90)
        procs.wait_http("direct", f"http://127.0.0.1:{direct_port}/_stcore/health", timeout=90)
        _generic_error_only(
            browser, f"http://127.0.0.1:{cli_port}", "oncall_03_error_paywatch_console.png"
        )
        _generic_error_only(
            browser, f"http://127.0.0.1:{direct_port}", "oncall_04_error_streamlit_run.png"
        )
    finally:
        procs.stop()
        log.close()


# -- a normal day: alerts above the fold, updated captions, silencing -------------------------
def test_alerts_above_the_fold_updated_and_silenced(console_stack, browser):  # noqa: F811
    from playwright.sync_api import expect

    stack = console_stack
    stack.pay(6)
    put_alert(
        stack.engine,
        "slo_pay_success",
        {"step": "pay"},
        "pay is burning its 0.999 success SLO error budget",
        ago=840,
    )
    put_alert(
        stack.engine,
        "breaker_open",
        {"resource": "channel.SANDBOX_B"},
        "breaker for channel.SANDBOX_B has kept calls away for a minute",
    )
    put_alert(
        stack.engine,
        "pending_postings_high",
        {},
        "620 ledger postings not yet applied",
        severity="ticket",
        state="pending",
    )
    page = new_page(browser)
    login(page, stack.console, "viewer")
    summaries = [
        "pay is burning its 0.999 success SLO error budget",
        "breaker for channel.SANDBOX_B has kept calls away for a minute",
        "620 ledger postings not yet applied",
    ]
    for s in summaries:
        expect(page.get_by_text(s)).to_be_visible(timeout=30_000)
    runbooks = page.get_by_role("button", name="Runbook")
    expect(runbooks).to_have_count(3)
    for el in [*(page.get_by_text(s) for s in summaries), runbooks.last]:
        box = el.bounding_box()
        assert box is not None and box["y"] + box["height"] <= VIEWPORT["height"], (el, box)
    text = body_text(page)
    assert "step=pay" in text and "resource=channel.SANDBOX_B" in text
    assert re.search(r"firing since \d\d:\d\d:\d\d UTC \(14 min\)", text), text
    assert '{"' not in text  # no raw label JSON
    first = page.get_by_text(UPDATED).first
    expect(first).to_be_visible()
    page.screenshot(path=str(artifacts() / "oncall_05_overview_alerts.png"))
    # the panels refresh by themselves: the alerts' "updated" time moves without a click
    before = first.inner_text()
    wait(
        lambda: page.get_by_text(UPDATED).first.inner_text() != before,
        "the alerts panel refreshing itself",
        timeout=40,
    )
    captions = page.get_by_text(UPDATED)
    assert captions.count() >= 4  # alerts, core links, channel health, guard, backlogs
    runbooks.first.click()
    expect(page.get_by_text("docs/runbook.md#slo_pay_success")).to_be_visible()
    section = page.get_by_text(re.compile("Pays are failing fast enough"))
    expect(section).to_be_visible()
    page.screenshot(path=str(artifacts() / "oncall_06_runbook.png"))
    page.wait_for_timeout(12_000)  # an alerts refresh later, the runbook is still open
    expect(section).to_be_visible()
    assert page.get_by_text("Silence an alert").count() == 0  # a viewer has no such action

    op = new_page(browser)
    login(op, stack.console, "operator")
    op.get_by_text("Silence an alert").click()
    op.get_by_role("combobox", name="Alert").click()
    op.get_by_role("option", name=re.compile("breaker for channel.SANDBOX_B")).click()
    op.get_by_role("textbox", name="Comment (why)").fill("channel team is on it")
    op.get_by_role("button", name="Silence", exact=True).click()
    expect(op.get_by_text(re.compile("^Silenced"))).to_be_visible(timeout=30_000)
    expect(op.get_by_text(re.compile(r"silenced until .* by olive"))).to_be_visible()
    op.screenshot(path=str(artifacts() / "oncall_07_silenced.png"))
    with stack.engine.connect() as conn:
        row = conn.execute(sa.text("select matchers, creator, comment from alert_silences")).one()
    assert json.loads(row.matchers)["resource"] == "channel.SANDBOX_B"
    assert (row.creator, row.comment) == ("olive", "channel team is on it")


# -- the drill-down's filters ------------------------------------------------------------------
def _requests(page: Any) -> str:
    metric = page.get_by_test_id("stMetric").filter(has_text="Requests/s")
    return str(metric.get_by_test_id("stMetricValue").inner_text()).strip()


def test_drilldown_org_filter_applies_to_the_headline(console_stack, browser):  # noqa: F811
    from playwright.sync_api import expect

    stack = console_stack
    stack.pay(8, org="SANDBOX_A")
    time.sleep(6)  # the API's sampler writes every 5 s
    page = new_page(browser)
    login(page, stack.console, "viewer")
    open_link(page, stack, "link=pay&window=15m")
    wait(lambda: _requests(page) not in ("", "–"), "traffic on the unfiltered headline", timeout=60)
    chart = page.get_by_test_id("stPlotlyChart")
    chart.scroll_into_view_if_needed()
    expect(chart.locator("path.point").first).to_be_visible()  # markers: sparse points show
    page.screenshot(path=str(artifacts() / "oncall_08_drilldown_all.png"))
    open_link(page, stack, "link=pay&window=15m&org=SANDBOX_B")
    expect(page.get_by_text("pay · SANDBOX_B · last 15 min").first).to_be_visible()
    expect(page.get_by_role("combobox", name="Pay org")).to_have_value("SANDBOX_B")
    wait(lambda: _requests(page) == "–", "the SANDBOX_B headline without traffic")
    expect(
        page.get_by_text("No traffic recorded for this link through this pay org")
    ).to_be_visible()
    page.screenshot(path=str(artifacts() / "oncall_09_drilldown_sandbox_b.png"))
    assert "org=SANDBOX_B" in page.url
    open_link(page, stack, "link=pay&window=15m&org=SANDBOX_A")
    wait(lambda: _requests(page) not in ("", "–"), "the SANDBOX_A headline with traffic")
    assert not TRACEBACK.search(body_text(page))
