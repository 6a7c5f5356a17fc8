"""A switch plan in a real browser (issue 20): an operator runs the "channel SANDBOX_A
outage" plan, a second operator approves it in one click, the Overview and the dependency
map show it within seconds and the pay API fails fast through SANDBOX_A only; one click
reverts it, restoring the previous state; the audit shows each step.

Screenshots: ``artifacts/browser/plans_*.png``.
"""

from __future__ import annotations

import re
import time
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from browser_stack import artifacts, browser, console_stack, login, select, wait  # noqa: F401

pytestmark = pytest.mark.timeout(420)
VIEWPORT = {"width": 1366, "height": 900}
PLAN = "channel SANDBOX_A outage"


def _pay(stack: Any, org: str) -> httpx.Response:
    """Create a trade through ``org`` and pay it with the channel; the pay answer."""
    no = f"plan-{org}-{time.monotonic_ns()}"
    with httpx.Client(
        base_url=stack.api, timeout=10, headers={"Authorization": f"Bearer {stack.token}"}
    ) as http:
        body = {
            "out_trade_no": no,
            "trade_type": "instant",
            "amount": 1_000,
            "currency": "CNY",
            "user_id": "u1",
            "order_type": "goods",
            "sub_type": "physical",
            "pay_org_no": org,
        }
        assert http.post("/v1/trades", json=body).status_code == 200
        tools = {"tools": [{"tool": "channel", "amount": 1_000}]}
        return http.post(f"/v1/trades/{no}/pay", json=tools)


def _fails_fast(r: httpx.Response) -> bool:
    return r.status_code == 503 and "channel.SANDBOX_A" in r.text


def _audit(engine: sa.Engine) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("select actor, action, target from stability_audit order by id")
        )
        return [tuple(r) for r in rows]


def _live_switches(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        q = "select kind, target from stability_switches where status in ('pending', 'active')"
        return sorted(tuple(r) for r in conn.execute(sa.text(q)))


def _confirmed(page: Any, pattern: str) -> None:
    from playwright.sync_api import expect

    expect(
        page.get_by_test_id("stAlertContentSuccess").filter(has_text=re.compile(pattern))
    ).to_be_visible()


def _open(page: Any, console: str, who: str, link: str) -> None:
    from playwright.sync_api import expect

    login(page, console, who)
    page.get_by_role("link", name=link).click()
    expect(page.get_by_role("heading", name=link)).to_be_visible()


def _node(page: Any, label: str) -> Any:
    """The dependency map's node label (SVG text) that starts with ``label``."""
    return page.locator("svg text").filter(has_text=re.compile("^" + re.escape(label)))


def test_a_channel_outage_plan_in_a_real_browser(console_stack, browser):  # noqa: F811
    from playwright.sync_api import expect

    shots, stack = artifacts(), console_stack
    assert _pay(stack, "SANDBOX_A").status_code == 200  # the channel works before
    olive, otto = browser.new_page(viewport=VIEWPORT), browser.new_page(viewport=VIEWPORT)
    for page in (olive, otto):
        page.set_default_timeout(20_000)

    # 1. olive runs the plan: one reason, one expiry; it waits for a second person
    _open(olive, stack.console, "operator", "Switches and limits")
    select(olive, "Plan to run", PLAN)
    expect(olive.get_by_text("1. force the breaker of channel.SANDBOX_A open")).to_be_visible()
    reason = olive.get_by_role("textbox", name="Why run this plan (required)")
    reason.fill("SANDBOX_A answers 502 since 10:02, INC-7")
    reason.press("Enter")
    olive.get_by_role("button", name="Run plan").click()
    _confirmed(olive, rf"Plan run #1 \({PLAN}\) proposed: it is pending, waiting for a second")
    assert _live_switches(stack.engine) == []  # nothing applies before the approval
    olive.screenshot(path=shots / "plans_01_proposed.png", full_page=True)
    olive.get_by_role("link", name="Overview").click()
    expect(olive.get_by_role("heading", name="Overview")).to_be_visible()

    # 2. otto approves it in one click
    _open(otto, stack.console, "operator2", "Switches and limits")
    card = otto.locator(".st-key-plan_card_1")
    expect(card.get_by_text(re.compile(rf"Plan run #1: {PLAN} proposed by olive"))).to_be_visible()
    expect(
        card.get_by_text("4. annotate the charts: channel SANDBOX_A outage plan")
    ).to_be_visible()
    otto.screenshot(path=shots / "plans_02_approval_card.png", full_page=False)
    card.get_by_role("button", name="Approve plan").click()
    approved = time.monotonic()
    _confirmed(otto, rf"Plan run #1 \({PLAN}\) approved: it is active until ")
    assert _live_switches(stack.engine) == [
        ("force_breaker", "channel.SANDBOX_A"),
        ("set_limit", "channel.SANDBOX_A.total"),
    ]
    active = otto.locator(".st-key-plan_active_1")
    expect(active.get_by_text(re.compile(r"→ switch #1"))).to_be_visible()
    otto.screenshot(path=shots / "plans_03_in_force.png", full_page=False)

    # 3. within seconds: the Overview says so, payments through SANDBOX_A fail fast (only)
    expect(
        olive.get_by_text(re.compile(rf"Plan in force: {PLAN} \(run #1\), by olive"))
    ).to_be_visible(timeout=15_000)
    shown_after = time.monotonic() - approved
    olive.screenshot(path=shots / "plans_04_overview.png", full_page=False)
    wait(lambda: _fails_fast(_pay(stack, "SANDBOX_A")), "pay through SANDBOX_A to fail fast", 15)
    assert _pay(stack, "SANDBOX_B").status_code == 200
    print(f"the Overview showed the plan {shown_after:.1f} s after the approval")

    # 4. the dependency map marks the channel's breaker forced open
    olive.get_by_role("link", name="Dependency map").click()
    expect(_node(olive, "channel.SANDBOX_A [forced_open]")).to_have_count(1, timeout=20_000)
    olive.screenshot(path=shots / "plans_05_depmap.png", full_page=False)

    # 5. one click reverts the whole run: the previous state is back
    active.get_by_role("button", name="Revert plan").click()
    _confirmed(otto, rf"Plan run #1 \({PLAN}\) reverted: it is reverted\.")
    assert _live_switches(stack.engine) == []
    expect(_node(olive, "channel.SANDBOX_A [forced_open]")).to_have_count(0, timeout=20_000)
    expect(_node(olive, "channel.SANDBOX_A")).to_have_count(1)
    wait(lambda: _pay(stack, "SANDBOX_A").status_code == 200, "SANDBOX_A to work again", 20)
    olive.get_by_role("link", name="Overview").click()
    expect(olive.get_by_role("heading", name="Overview")).to_be_visible()
    expect(olive.get_by_text(re.compile("Plan in force"))).to_have_count(0)
    otto.screenshot(path=shots / "plans_06_reverted.png", full_page=True)

    # 6. the audit shows each step, done and undone, and who did it
    plan = [a for a in _audit(stack.engine) if a[1].startswith("plan_")]
    assert plan == [
        ("olive", "plan_propose", PLAN),
        ("otto", "plan_approve", PLAN),
        *[("otto", "plan_step", PLAN)] * 4,
        ("otto", "plan_revert", PLAN),
        *[("otto", "plan_undo", PLAN)] * 4,
    ]
    switches = [a for a in _audit(stack.engine) if not a[1].startswith("plan_")]
    assert ("otto", "approve", "channel.SANDBOX_A") in switches
    assert ("otto", "reverted", "channel.SANDBOX_A.total") in switches
