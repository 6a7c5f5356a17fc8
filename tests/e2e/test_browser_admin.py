"""Roles that hold, sessions and links in a real browser (issue 18, points 2 and 5).

The platform runs with the ``paywatch`` CLI (sandbox channel, API, console) over SQLite
(:mod:`browser_stack`), Chromium driven by Playwright. (1) An operator's demotion by an
admin in another browser takes effect at the operator's next click; disabling her ends her
open (self-refreshing) page. (2) The first request
to a fresh console is a deep link with a window in the URL: the login screen keeps it and
opens it after sign-in; a reload keeps the session and the page; logout and reload show
the login screen. (3) Eight wrong passwords are answered later and later, and audited
alike for a known and an unknown name. Screenshots: ``admin_NN_<what>.png``.
"""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
import sqlalchemy as sa
from browser_stack import USERS, artifacts, browser, console_stack, login  # noqa: F401

pytestmark = pytest.mark.timeout(420)
VIEWPORT = {"width": 1366, "height": 768}


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(artifacts() / f"admin_{name}.png"))


def _count(engine: sa.Engine, sql: str, **params: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql), params).scalar_one())


def _new_page(browser: Any) -> Any:
    return browser.new_context(viewport=VIEWPORT).new_page()


def choose(page: Any, label: str, option: str) -> None:
    """Pick ``option`` in the selectbox ``label`` (again if a re-draw closed the list)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    box = page.get_by_role("combobox", name=label, exact=True)
    for _ in range(4):
        box.click()
        try:
            page.get_by_role("option", name=option, exact=True).click(timeout=5_000)
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
            continue
        if box.input_value() == option:
            return
    raise AssertionError(f"could not choose {option!r} in {label!r}")


def users_page_drawn(page: Any) -> None:
    """Wait until the Users page is drawn to its end (its list fills in at the top last:
    a dropdown opened before would be re-drawn under the pointer)."""
    from playwright.sync_api import expect

    expect(page.get_by_role("heading", name="Sign-in activity")).to_be_visible(timeout=30_000)
    expect(page.get_by_role("heading", name="Console users")).to_be_visible()
    page.wait_for_timeout(500)


def test_demotion_takes_effect_at_the_next_click(console_stack, browser):
    from playwright.sync_api import expect

    stack = console_stack
    olive = _new_page(browser)
    login(olive, stack.console, "operator")
    olive.get_by_role("link", name="Switches and limits").click()
    apply = olive.get_by_role("button", name="Apply switch")
    expect(apply).to_be_visible(timeout=30_000)
    olive.get_by_role("textbox", name="Reason (required)").fill("coupon slow: shed it")
    _shot(olive, "01_operator_about_to_apply")

    adele = _new_page(browser)
    login(adele, stack.console, "admin")
    adele.goto(f"{stack.console}/admin_users")  # a typed link: the session cookie carries over
    users_page_drawn(adele)
    choose(adele, "User", "olive")
    choose(adele, "New role", "viewer")
    adele.get_by_role("button", name="Change role").click()
    expect(adele.get_by_text("olive is now viewer")).to_be_visible(timeout=30_000)
    _shot(adele, "02_admin_demotes_olive")

    apply.click()  # olive's next click: the click that would have flipped the switch
    expect(olive.get_by_text("Your role is viewer")).to_be_visible(timeout=30_000)
    expect(olive.get_by_text("changed from operator to viewer")).to_be_visible()
    expect(olive.get_by_role("button", name="Apply switch")).to_have_count(0)
    expect(olive.get_by_role("link", name="Switches and limits")).to_have_count(0)
    assert "/sre_switches" in olive.url
    _shot(olive, "03_operator_demoted_next_click")
    assert _count(stack.engine, "select count(*) from stability_switches") == 0
    assert (
        _count(stack.engine, "select count(*) from console_audit where action = 'switch.propose'")
        == 0
    )
    assert (
        _count(
            stack.engine,
            "select count(*) from console_audit where action = 'user.role' and actor = 'adele'",
        )
        == 1
    )

    # olive watches the Overview (it refreshes itself); adele disables her: the open page
    # stops at its next refresh, without a click
    olive.get_by_role("link", name="Overview").click()
    expect(olive.get_by_role("heading", name="Overview", exact=True)).to_be_visible(timeout=30_000)
    adele.reload()  # the user list as it is now
    users_page_drawn(adele)
    choose(adele, "User", "olive")
    adele.get_by_role("button", name="Disable user").click()
    expect(adele.get_by_text("olive is disabled; their open sessions have ended.")).to_be_visible(
        timeout=30_000
    )
    expect(olive.get_by_role("button", name="Log in")).to_be_visible(timeout=30_000)
    expect(olive.get_by_text("Signed in as olive")).to_have_count(0)
    _shot(olive, "04_disabled_user_open_page_ends")
    assert (
        _count(stack.engine, "select count(*) from console_sessions where username = 'olive'") == 0
    )


def test_reload_keeps_the_session_and_the_page(console_stack, browser):
    from playwright.sync_api import expect

    stack = console_stack
    name, password, _ = USERS["viewer"]
    page = _new_page(browser)
    # the first request this console process serves: a shared link, signed out
    page.goto(f"{stack.console}/oncall_link?window=6h")
    expect(page.get_by_role("button", name="Log in")).to_be_visible(timeout=60_000)
    expect(page.get_by_text("Page not found")).to_have_count(0)
    assert page.url.endswith("/oncall_link?window=6h")
    _shot(page, "05_login_keeps_the_link")
    page.get_by_role("textbox", name="User name").fill(name)
    page.get_by_role("textbox", name="Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    signed_in = page.get_by_text(re.compile(rf"Signed in as {name}"))
    expect(signed_in).to_be_visible(timeout=30_000)
    expect(page.get_by_role("heading", name="Link drill-down")).to_be_visible()
    expect(page.get_by_role("combobox", name="Window", exact=True)).to_have_value("6 hours")

    cookie = next(c for c in page.context.cookies() if c["name"] == "paywatch_session")
    assert cookie["sameSite"] == "Strict" and cookie["value"] not in page.url

    page.reload()
    expect(signed_in).to_be_visible(timeout=30_000)
    expect(page.get_by_role("heading", name="Link drill-down")).to_be_visible()
    expect(page.get_by_role("combobox", name="Window", exact=True)).to_have_value("6 hours")
    assert "/oncall_link?" in page.url and "window=6h" in page.url  # the page adds its filters
    assert cookie["value"] not in page.url
    expect(page.get_by_text("Page not found")).to_have_count(0)
    _shot(page, "06_reload_same_page_and_window")
    assert _count(stack.engine, "select count(*) from console_sessions") == 1
    assert _count(stack.engine, "select count(*) from console_audit where action = 'login'") == 1

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Log in")).to_be_visible(timeout=30_000)
    assert _count(stack.engine, "select count(*) from console_sessions") == 0
    page.reload()
    expect(page.get_by_role("button", name="Log in")).to_be_visible(timeout=30_000)
    expect(signed_in).to_have_count(0)
    assert not [c for c in page.context.cookies() if c["name"] == "paywatch_session"]
    _shot(page, "07_logout_then_reload")


def test_wrong_passwords_wait_longer_and_are_audited(console_stack, browser):
    from playwright.sync_api import expect

    from console.audit import recent

    stack = console_stack
    page = _new_page(browser)
    page.goto(stack.console)
    expect(page.get_by_role("button", name="Log in")).to_be_visible(timeout=60_000)
    tries = [("ghost", "not-a-password")] + [("vera", f"wrong-password-{i}") for i in range(7)]
    took = []  # from the click to the answer
    apart = []  # from the previous answer to this one: the wait runs from the last failure
    answered = time.monotonic()
    for i, (name, password) in enumerate(tries):
        page.get_by_role("textbox", name="User name").fill(name)
        page.get_by_role("textbox", name="Password").fill(password)
        start = time.monotonic()
        page.get_by_role("button", name="Log in").click()
        while (
            _count(stack.engine, "select count(*) from console_audit where action = 'login_failed'")
            <= i
        ):
            assert time.monotonic() - start < 60, f"attempt {i + 1} never answered"
            time.sleep(0.05)
        now = time.monotonic()
        took.append(now - start)
        apart.append(now - answered)
        answered = now
    print("answer times (s):", [round(t, 2) for t in took])
    expected = [0, 0, 0, 1, 2, 4, 8, 16]
    assert max(took[:3]) < 1.0, took
    for since_click, since_last, want in zip(took[3:], apart[3:], expected[3:], strict=True):
        assert since_last >= want - 0.3 and since_click < want + 5, (took, apart)
    expect(page.get_by_text("Invalid user name or password.")).to_be_visible()
    expect(page.get_by_text(re.compile(r"Answered after 1[56] s"))).to_be_visible()
    _shot(page, "08_eighth_wrong_password_waited")

    operator = recent(stack.engine, 20, action="login_failed")
    assert [r["actor"] for r in operator][::-1] == [n for n, _ in tries]
    shapes = {
        tuple(sorted((k, v) for k, v in r["detail"].items() if k not in ("client", "waited_s")))
        for r in operator
    }
    assert len(shapes) == 1, shapes  # "ghost" (unknown) and "vera" look the same
    causes = [
        r["detail"]["_admin"]["cause"]
        for r in recent(stack.engine, 20, action="login_failed", admin=True)
    ][::-1]
    assert causes == ["unknown_user"] + ["wrong_password"] * 7
