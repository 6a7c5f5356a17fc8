"""The SRE's switches in a real browser (issue 18): a hostile reason stays inert on the
approval card, the approver sees impact and before/after and gets a confirmation, a weak
dependency is degraded from the dependency map in three clicks, "Now in force" reverts
it with one click and a confirmation, and a second apply of one switch is refused.

Screenshots: ``artifacts/browser/sre_*.png``.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from browser_stack import artifacts, browser, console_stack, login, select, wait  # noqa: F401
from conftest import free_port

pytestmark = pytest.mark.timeout(420)
VIEWPORT = {"width": 1366, "height": 768}


class PixelServer:
    """A tiny HTTP server that counts every request (the "tracking pixel")."""

    def __init__(self) -> None:
        self.hits: list[str] = []
        hits = self.hits

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                hits.append(self.path)
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return None

        self.port = free_port()
        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def pixel_hits(self) -> list[str]:
        return [h for h in self.hits if "tracking-pixel" in h]


@pytest.fixture
def pixel() -> Iterator[PixelServer]:
    srv = PixelServer()
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.server.shutdown()
        srv.server.server_close()


class Clicks:
    """Counts the clicks a person makes (the page's clicks go through here)."""

    def __init__(self) -> None:
        self.n = 0

    def __call__(self, locator: Any) -> None:
        locator.click()
        self.n += 1


def _switches(engine: sa.Engine) -> list[tuple]:
    with engine.connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text(
                    "select id, kind, target, status, actor, approved_by from stability_switches "
                    "order by id"
                )
            )
        ]


def _confirmed(page: Any, pattern: str) -> None:
    """The action's confirmation: a success box (and a toast) saying ``pattern``."""
    from playwright.sync_api import expect

    expect(
        page.get_by_test_id("stAlertContentSuccess").filter(has_text=re.compile(pattern))
    ).to_be_visible()
    expect(page.get_by_test_id("stToastText").filter(has_text=re.compile(pattern))).to_have_count(1)


def _idle(page: Any) -> None:
    """Wait until the script run has finished (no "Running..." status)."""
    from playwright.sync_api import expect

    page.wait_for_timeout(300)
    expect(page.get_by_test_id("stStatusWidget")).to_have_count(0, timeout=30_000)


def _choose(page: Any, label: str, option: str) -> None:
    """``select`` from browser_stack, tried again when a late rerun closed the list."""
    from playwright.sync_api import Error

    for attempt in range(3):
        try:
            select(page, label, option)
            return
        except (Error, AssertionError):
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
            _idle(page)


def _open(page: Any, console: str, who: str, link: str, heading: str) -> None:
    from playwright.sync_api import expect

    login(page, console, who)
    page.get_by_role("link", name=link).click()
    expect(page.get_by_role("heading", name=heading)).to_be_visible()


def test_sre_switches_in_a_real_browser(console_stack, browser, pixel):  # noqa: F811
    from playwright.sync_api import expect

    shots, stack = artifacts(), console_stack
    hostile = f"![px](http://127.0.0.1:{pixel.port}/tracking-pixel.png)"
    # control: this browser does fetch such an image when it is real HTML
    probe = browser.new_page()
    probe.set_content(f'<img src="http://127.0.0.1:{pixel.port}/control.png">')
    wait(lambda: "/control.png" in pixel.hits, "the control image to be fetched", 10)
    probe.close()

    olive = browser.new_page(viewport=VIEWPORT)
    otto = browser.new_page(viewport=VIEWPORT)
    for page in (olive, otto):
        page.set_default_timeout(15_000)
    current = olive
    try:
        # 1. olive proposes a switch on a strong dependency of the core links, hostile reason
        _open(olive, stack.console, "operator", "Switches and limits", "Switches and limits")
        _idle(olive)
        _choose(olive, "Kind", "degrade")
        _choose(olive, "Target", "channel.SANDBOX_A")
        reason = olive.get_by_role("textbox", name="Reason (required)")
        reason.fill(hostile)
        reason.press("Enter")
        olive.get_by_text("I understand this affects a strong dependency / core link").click()
        olive.get_by_role("button", name="Apply switch").click()
        _confirmed(
            olive,
            r"Switch #1 is pending\. degrade channel\.SANDBOX_A until .*: it waits "
            r"for a second person's approval\.",
        )
        expect(olive.get_by_text("Needs another person's approval.")).to_be_visible()
        expect(olive.get_by_text(hostile).first).to_be_visible()  # shown as characters
        olive.screenshot(path=shots / "sre_01_proposed.png", full_page=True)

        # 2. otto opens the approval card: impact, before/after, and no request to the pixel
        current = otto
        _open(otto, stack.console, "operator2", "Switches and limits", "Switches and limits")
        card = otto.locator(".st-key-sw_card_1")
        expect(card).to_have_count(1)
        expect(card.get_by_text(hostile)).to_be_visible()
        expect(card.get_by_text("Core links failing: link.pay, link.refund")).to_be_visible()
        expect(card.get_by_text("Pay orgs: SANDBOX_A")).to_be_visible()
        expect(card.get_by_text(re.compile(r"^Merchants: "))).to_be_visible()
        expect(
            card.get_by_text(
                re.compile(
                    r"Before: called \(timeout 3000 ms\) → after: not called; (job\.\w+, )*"
                    r"link\.pay, link\.refund fail fast"  # the jobs that call the channel too
                )
            )
        ).to_be_visible()
        time.sleep(1.5)  # let any image load that the page might have started
        assert pixel.pixel_hits() == [], pixel.hits
        assert card.locator("img").count() == 0
        otto.screenshot(path=shots / "sre_02_approval_card.png", full_page=False)
        card.get_by_role("button", name="Approve").click()
        _confirmed(otto, r"Switch #1 approved: degrade channel\.SANDBOX_A is active until ")
        otto.screenshot(path=shots / "sre_03_approved.png", full_page=False)
        assert _switches(stack.engine) == [
            (1, "degrade", "channel.SANDBOX_A", "active", "olive", "otto")
        ]

        # 3. olive degrades risk from the dependency map: three clicks
        current = olive
        clicks = Clicks()
        clicks(olive.get_by_role("link", name="Dependency map"))
        expect(olive.get_by_role("heading", name="Dependency map")).to_be_visible()
        clicks(olive.get_by_role("button", name="Degrade risk"))
        expect(
            olive.get_by_role("spinbutton", name="Expires in hours (at most 168)")
        ).to_have_value("1.00")
        olive.get_by_role("textbox", name="Reason (required)").fill("risk p99 over 3 s")
        clicks(olive.get_by_role("button", name="Apply", exact=True))
        _confirmed(olive, r"Switch #2 is active\. degrade risk until ")
        assert clicks.n <= 3, clicks.n
        expect(olive.get_by_text(re.compile(r"risk: degraded \(#2 by olive until"))).to_be_visible()
        olive.screenshot(path=shots / "sre_04_degraded_from_map.png", full_page=False)
        rows = _switches(stack.engine)
        assert rows[1] == (2, "degrade", "risk", "active", "olive", None)

        # 4. the same switch again is refused with a clear message
        olive.get_by_role("link", name="Switches and limits").click()
        expect(olive.get_by_role("heading", name="Flip a switch")).to_be_visible()
        _idle(olive)
        _choose(olive, "Kind", "degrade")
        _choose(olive, "Target", "risk")
        reason = olive.get_by_role("textbox", name="Reason (required)")
        reason.fill("risk slow (second try)")
        reason.press("Enter")
        olive.get_by_role("button", name="Apply switch").click()
        refusal = olive.get_by_text(
            re.compile(
                r"switch\.propose refused: a degrade switch for risk is already active "
                r"\(#2, by olive, until \d{4}-\d\d-\d\d \d\d:\d\d UTC\)"
            )
        )
        expect(refusal).to_be_visible()
        refusal.scroll_into_view_if_needed()
        olive.screenshot(path=shots / "sre_05_second_apply_refused.png", full_page=False)
        assert len(_switches(stack.engine)) == 2

        # 5. Now in force lists both; one click and a confirmation revert risk
        olive.get_by_role("link", name="Switches and limits").click()
        now_in_force = olive.get_by_role("heading", name="Now in force")
        now_in_force.scroll_into_view_if_needed()
        expect(olive.get_by_text(re.compile(r"#2 degrade risk · by olive · until"))).to_be_visible()
        expect(
            olive.get_by_text(
                re.compile(r"#1 degrade channel\.SANDBOX_A · by olive, approved by otto")
            )
        ).to_be_visible()
        olive.screenshot(path=shots / "sre_06_now_in_force.png", full_page=False)
        olive.locator(".st-key-sw_revert_2").get_by_role("button", name="Revert").click()
        expect(olive.get_by_text(re.compile(r"Revert #2 \(degrade risk\)\?"))).to_be_visible()
        assert _switches(stack.engine)[1][3] == "active"  # the first click only asks
        olive.screenshot(path=shots / "sre_07_revert_confirm.png", full_page=False)
        olive.get_by_role("button", name="Yes, revert").click()
        _confirmed(olive, r"Switch #2 reverted: degrade risk no longer applies\.")
        olive.screenshot(path=shots / "sre_08_reverted.png", full_page=False)
        assert [r[3] for r in _switches(stack.engine)] == ["active", "reverted"]

        # 6. the admin's browser renders the same lists: still no request to the pixel
        current = browser.new_page(viewport=VIEWPORT)
        _open(current, stack.console, "admin", "Switches and limits", "Switches and limits")
        expect(current.get_by_text(hostile).first).to_be_visible()
        time.sleep(1.5)
        assert pixel.pixel_hits() == [], pixel.hits
    except Exception:
        current.screenshot(path=shots / "sre_failure.png", full_page=True)
        (shots / "sre_failure.html").write_text(current.content())
        raise
    for n in ("01_proposed", "02_approval_card", "04_degraded_from_map", "06_now_in_force"):
        assert (shots / f"sre_{n}.png").stat().st_size > 10_000
