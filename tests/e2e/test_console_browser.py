"""The console in a real browser: an operator degrades a weak dependency, the pay link falls
back, and the overview counts the fallbacks.

The platform runs as a person runs it, with the ``paywatch`` CLI in separate processes
(sandbox channel, pay core API, Streamlit console) over one SQLite file. Chromium is
Debian's (``apt-get install chromium``), driven by Playwright with ``executable_path``, so
no browser download is needed. Screenshots go to ``$PAYWATCH_ARTIFACTS`` (default
``artifacts/browser/`` at the repository root).

The weak dependency is ``risk``: the pay link calls it through the guard
(``paycore.payments._preflight``, edge ``link.pay -> risk`` in the default dependency map)
with the fallback "allow below the risk threshold". Degraded calls are counted by
``CoreMetrics`` as ``paywatch_guard_outcomes_total{resource="risk",outcome="degraded"}``;
the API process's sampler writes them to the database every 5 s under its own instance,
and the overview reads them back through ``MetricsQuery``.
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from browser_stack import Processes as Stack
from browser_stack import artifacts as _artifacts
from browser_stack import chromium_path as _chromium
from browser_stack import select as _select
from browser_stack import wait as _wait
from conftest import _unavailable, free_port

ROOT = Path(__file__).resolve().parents[2]
OPERATOR, PASSWORD = "olive", "operator-password-1"
REASON = "risk service brown-out (browser e2e)"
TRADES = 4
pytestmark = pytest.mark.timeout(300)


def _guard_count(api: str, resource: str, outcome: str) -> float:
    """``paywatch_guard_outcomes_total`` of the API process, from its ``/metrics``."""
    text = httpx.get(f"{api}/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("paywatch_guard_outcomes_total{") and (
            f'resource="{resource}"' in line and f'outcome="{outcome}"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_operator_degrades_risk_and_overview_counts_the_fallbacks(tmp_path):
    chromium = _chromium()
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError as exc:
        _unavailable("Playwright", exc)
    shots = _artifacts()
    api_port, sandbox_port, console_port = free_port(), free_port(), free_port()
    db_url = f"sqlite:///{tmp_path}/pw.db"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAYWATCH_")}
    env |= {
        "PAYWATCH_DATABASE_URL": db_url,
        "PAYWATCH_VAR_DIR": str(tmp_path / "var"),
        "PAYWATCH_API_URL": f"http://127.0.0.1:{api_port}",
        "PAYWATCH_SANDBOX_URL": f"http://127.0.0.1:{sandbox_port}",
    }
    api, console = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{console_port}"
    stack = Stack(env, tmp_path)

    migrated = stack.cli("migrate")
    assert migrated.returncode == 0, migrated.stderr
    from console.auth import create_user

    engine = sa.create_engine(db_url)
    create_user(engine, OPERATOR, PASSWORD, "operator")
    added = stack.cli(
        "merchant",
        "add",
        "--name",
        "browser shop",
        "--product",
        "goods:physical",
        "--pay-org",
        "SANDBOX_A",
    )
    assert added.returncode == 0, added.stderr
    token = dict(ln.split(":", 1) for ln in added.stdout.strip().splitlines())["token"].strip()

    page = None
    try:
        stack.start("sandbox", "sandbox", "--port", str(sandbox_port))
        stack.start("api", "serve", "--port", str(api_port), "--log-level", "warning")
        stack.start("console", "console", "--port", str(console_port))
        stack.wait_http("api", f"{api}/readyz")
        stack.wait_http("console", f"{console}/_stcore/health", timeout=90)
        assert _guard_count(api, "risk", "degraded") == 0

        with sync_playwright() as pw:
            browser = pw.chromium.launch(
                executable_path=chromium,
                headless=True,
                args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"],
            )
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1600})
                page.set_default_timeout(30_000)
                _login(page, console, expect)
                page.screenshot(path=shots / "01_signed_in.png", full_page=True)
                _degrade_risk(page, expect)
                page.screenshot(path=shots / "02_switch_applied.png", full_page=True)

                paid = _pay_through_degraded_risk(api, token)
                degraded = _guard_count(api, "risk", "degraded")
                assert degraded >= TRADES, degraded

                row = _overview_guard_row(page, expect, "risk", at_least=degraded)
                page.screenshot(path=shots / "03_overview_fallbacks.png", full_page=True)
                # the overview shows calls in the window as rate x window, and the store's
                # rate divides by the seconds the young series spans: at least the count
                assert row["degraded"] >= degraded > 0, (row, degraded)
                assert row["fallback"] == 0, row  # the switch, not a failing risk check
            except Exception:
                if page is not None:
                    page.screenshot(path=shots / "failure.png", full_page=True)
                    (shots / "failure.html").write_text(page.content())
                raise
            finally:
                browser.close()
        assert paid == TRADES
    except Exception:
        for name in stack.procs:
            print(f"--- {name} log ---\n{stack.tail(name)}", file=sys.stderr)
        raise
    finally:
        stack.stop()

    # the switch came from the browser, by the operator, with reason and expiry; both audits
    from console.schema import ConsoleAudit
    from stability.schema import AuditEntry, Switch

    with engine.connect() as conn:
        audit = conn.execute(sa.select(ConsoleAudit).order_by(ConsoleAudit.id)).all()
        switches = conn.execute(sa.select(Switch)).all()
        switch_audit = conn.execute(sa.select(AuditEntry)).all()
    engine.dispose()
    assert (OPERATOR, "operator", "login") in [(a.actor, a.role, a.action) for a in audit]
    proposed = [a for a in audit if a.action == "switch.propose"]
    assert [(a.actor, a.role, a.target) for a in proposed] == [(OPERATOR, "operator", "risk")]
    detail = json.loads(proposed[0].detail)
    assert detail["ok"] is True and detail["kind"] == "degrade" and detail["reason"] == REASON
    assert [
        (s.kind, s.target, s.status, s.actor, s.reason, s.requires_approval) for s in switches
    ] == [("degrade", "risk", "active", OPERATOR, REASON, False)]
    hours = (switches[0].expires_at - switches[0].created_at).total_seconds() / 3600
    assert 1.9 < hours <= 2.0, hours  # "Expires in hours": 2
    assert any(
        a.actor == OPERATOR and a.target == "risk" and a.reason == REASON for a in switch_audit
    )
    for name in ("01_signed_in", "02_switch_applied", "03_overview_fallbacks"):
        assert (shots / f"{name}.png").stat().st_size > 10_000


def _login(page: Any, console: str, expect: Any) -> None:
    page.goto(console)
    page.get_by_role("textbox", name="User name").fill(OPERATOR)
    page.get_by_role("textbox", name="Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text(f"Signed in as {OPERATOR} (operator)")).to_be_visible()
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()


def _degrade_risk(page: Any, expect: Any) -> None:
    page.get_by_role("link", name="Switches and limits").click()
    expect(page.get_by_role("heading", name="Switches and limits")).to_be_visible()
    _select(page, "Kind", "degrade")
    _select(page, "Target", "risk")
    reason = page.get_by_role("textbox", name="Reason (required)")
    reason.fill(REASON)
    reason.press("Enter")
    hours = page.get_by_label("Expires in hours (required, at most 168)")
    hours.fill("2")
    hours.press("Enter")
    expect(hours).to_have_value("2.00")
    page.get_by_role("button", name="Apply switch").click()
    # the confirmation (also shown as a toast)
    expect(
        page.get_by_test_id("stAlertContentSuccess").get_by_text(
            re.compile(r"Switch #\d+ is active\.")
        )
    ).to_be_visible()


def _pay_through_degraded_risk(api: str, token: str) -> int:
    """Pay trades until the API has seen the switch (the guard took the fallback), then a
    few more; every one must still be paid (risk is weak). Returns the paid count."""
    http = httpx.Client(base_url=api, headers={"Authorization": f"Bearer {token}"}, timeout=10)
    n = 0

    def pay_one() -> bool:
        nonlocal n
        n += 1
        no = f"browser-{n}"
        r = http.post(
            "/v1/trades",
            json={
                "out_trade_no": no,
                "trade_type": "instant",
                "amount": 2_000,
                "currency": "CNY",
                "user_id": "u1",
                "order_type": "goods",
                "sub_type": "physical",
                "pay_org_no": "SANDBOX_A",
            },
        )
        assert r.status_code == 200, r.text
        r = http.post(
            f"/v1/trades/{no}/pay", json={"tools": [{"tool": "channel", "amount": 2_000}]}
        )
        assert r.status_code == 200, r.text
        return _guard_count(api, "risk", "degraded") > 0

    with http:
        # the switch reaches the API process within a second (polling)
        _wait(pay_one, "the API to apply the risk degradation", timeout=20)
        before = n
        for _ in range(TRADES - 1):
            pay_one()
        numbers = [f"browser-{i}" for i in range(before, n + 1)]

        def all_paid() -> bool:
            return all(
                http.get(f"/v1/trades/{no}").json()["trade"]["status"] == "paid" for no in numbers
            )

        _wait(all_paid, "the degraded-risk payments to be paid", timeout=30)
    return len(numbers)


def _overview_guard_row(
    page: Any, expect: Any, resource: str, *, at_least: float
) -> dict[str, float]:
    """The overview's "Guard fallbacks" row of ``resource``, read from the table in the
    browser once the API's sampler has written it and the page's 5 s fragment refreshed.

    The sampler writes every 5 s, so it may have caught the first calls but not yet the
    last: wait for ``degraded`` to reach ``at_least`` (a row that never does times out).

    ``st.dataframe`` draws on a canvas; the cells are in the ``<table role=grid>`` inside it
    (fallback content: no layout, so text contents rather than inner texts or roles).
    """
    page.get_by_role("link", name="Overview").click()
    expect(page.get_by_role("heading", name="Guard fallbacks")).to_be_visible()
    grid = page.get_by_test_id("stDataFrame").filter(
        has=page.locator("th", has_text=re.compile(r"^degraded$"))
    )

    def row() -> dict[str, float] | None:
        if not grid.count():
            return None
        header = grid.first.locator("thead th").all_text_contents()
        for tr in grid.first.locator("tbody tr").all():
            cells = dict(zip(header, tr.locator("td").all_text_contents(), strict=False))
            if cells.get("resource") == resource and float(cells.get("degraded") or 0) >= at_least:
                return {k: float(v) for k, v in cells.items() if k != "resource"}
        return None

    found = _wait(row, f"a {resource} row in Guard fallbacks with {at_least}+ degraded", timeout=60)
    grid.first.scroll_into_view_if_needed()
    expect(page.get_by_text("No degraded or fallback calls in the window.")).to_have_count(0)
    return found
