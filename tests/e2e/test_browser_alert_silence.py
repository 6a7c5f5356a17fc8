"""A silence made in the console is a silence in Alertmanager too (issue 22, Proof).

A real browser (Debian's Chromium) signs in to the console as an operator, opens
On-call → Alerts, starts a silence from a firing alert's labels and sees the alert
marked silenced; Alertmanager (a REAL 0.25, started by the test) then lists the silence
and shows the alert suppressed by it. Ending the silence in the console expires it in
Alertmanager and the alert is active there again.

No worker runs in the console stack: the test drives the same
:class:`alerts.AlertmanagerSync` the worker runs after each evaluation, with
``mirror_silences`` on, over the console's database. Screenshots:
``alert_silence_NN_<what>.png``.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from browser_stack import artifacts, browser, console_stack, login  # noqa: F401
from test_alertmanager import Alertmanager, am, until  # noqa: F401
from test_alertmanager_silences import am_silences
from test_browser_oncall import VIEWPORT, put_alert

from alerts import AlertmanagerNotifier, AlertmanagerSync
from alerts.am_silences import paywatch_id
from alerts.silences import SilenceStore

pytestmark = pytest.mark.timeout(420)
SUMMARY = "breaker for channel.SANDBOX_B has kept calls away for a minute"


def am_alert(server: Alertmanager) -> dict[str, Any] | None:
    found = server.alerts()
    return found[0] if found else None


def am_state(server: Alertmanager) -> str:
    a = am_alert(server)
    return a["status"]["state"] if a else ""


def test_a_console_silence_silences_the_alert_in_alertmanager(
    console_stack,  # noqa: F811
    browser,  # noqa: F811
    am: Alertmanager,  # noqa: F811
) -> None:
    from playwright.sync_api import expect

    stack = console_stack
    put_alert(stack.engine, "breaker_open", {"resource": "channel.SANDBOX_B"}, SUMMARY)
    notifier = AlertmanagerNotifier(
        am.url, env="e2e", resend_interval=2.0, retries=0, mirror_silences=True
    )
    sync = AlertmanagerSync(stack.engine, SilenceStore(stack.engine), ["breaker_open"], [notifier])
    tick = lambda: sync.run(time.time())  # noqa: E731 - what the worker does every evaluation
    try:
        until(lambda: am_state(am) == "active", 30, tick)

        page = browser.new_context(viewport=VIEWPORT).new_page()
        login(page, stack.console, "operator")
        page.goto(f"{stack.console}/oncall_alerts")
        expect(page.get_by_role("heading", name="Alerts", exact=True)).to_be_visible(timeout=30_000)
        expect(page.get_by_text(SUMMARY)).to_be_visible(timeout=30_000)
        assert page.get_by_text(re.compile("silenced until")).count() == 0

        page.get_by_role("combobox", name="Start from an alert's labels").click()
        page.get_by_role("option", name=re.compile(r"breaker_open · resource=channel")).click()
        matchers = page.get_by_role("textbox", name=re.compile("^Matchers"))
        expect(matchers).to_have_value(re.compile("resource=channel.SANDBOX_B"))
        page.get_by_role("textbox", name="For (e.g. 30m, 2h, 1d)").fill("2h")
        page.get_by_role("textbox", name="Comment (why)").fill("channel team is on it")
        page.get_by_role("button", name="Silence", exact=True).click()
        expect(page.get_by_text(re.compile(r"Silence #\d+ made"))).to_be_visible(timeout=30_000)
        badge = page.get_by_text(re.compile(r"silenced until .* by olive"))
        expect(badge).to_be_visible(timeout=30_000)
        badge.scroll_into_view_if_needed()
        page.screenshot(path=str(artifacts() / "alert_silence_01_console.png"))
        (made,) = SilenceStore(stack.engine).active()
        assert made.creator == "olive" and made.matchers["resource"] == "channel.SANDBOX_B"

        # the worker's next syncs: the silence is in Alertmanager and the alert suppressed
        until(lambda: am_state(am) == "suppressed", 30, tick)
        (mirrored,) = am_silences(am)
        assert paywatch_id(mirrored) == made.id
        assert (mirrored["createdBy"], mirrored["status"]["state"]) == ("olive", "active")
        assert mirrored["comment"].startswith("channel team is on it")
        assert {(m["name"], m["value"]) for m in mirrored["matchers"]} >= {
            ("alertname", "breaker_open"),
            ("resource", "channel.SANDBOX_B"),
        }
        assert am_alert(am)["status"]["silencedBy"] == [mirrored["id"]]  # type: ignore[index]

        # ended in the console: expired in Alertmanager, the alert active there again
        page.get_by_role("button", name="End silence").click()
        expect(page.get_by_text(f"Silence #{made.id} ended.")).to_be_visible(timeout=30_000)
        expect(page.get_by_text(re.compile("silenced until"))).to_have_count(0, timeout=30_000)
        until(lambda: not am_silences(am) and am_state(am) == "active", 30, tick)
        assert [s["id"] for s in am_silences(am, "expired")] == [mirrored["id"]]
        page.screenshot(path=str(artifacts() / "alert_silence_02_ended.png"))
    finally:
        sync.close()
