"""Single sign-on in a real browser against a real (test) OpenID Connect provider (issue 18).

``oidc-provider-mock`` runs as the IdP on 127.0.0.1 in a thread; the console (``paywatch
console`` under :class:`browser_stack.ConsoleStack`) gets an ``[auth]`` section pointing at
it through a ``secrets.toml`` in the test's directory (``STREAMLIT_SECRETS_FILES``: the
user's home is not touched). Chromium clicks "Log in with single sign-on", types the
subject at the IdP, comes back signed in with the role from ``[console.oidc_roles]``; the
login is audited once (a reload does not audit again); "Log out" ends the IdP sign-in too
(``st.logout`` sends the browser to the IdP's end_session, which asks to confirm and
comes back), so the next page load shows the login form (not signed straight back in) and the logout
is audited. Screenshots: ``sso_NN_<what>.png``.
"""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from browser_stack import ConsoleStack, artifacts, browser, running, wait  # noqa: F401

from console.auth import SESSION_COOKIE

pytestmark = pytest.mark.timeout(300)
VIEWPORT = {"width": 1366, "height": 768}
EMAIL = "sre@example.com"


@pytest.fixture
def idp() -> Iterator[str]:
    """The OpenID Connect provider (any client id/secret is accepted); its base URL."""
    try:
        import oidc_provider_mock
        import werkzeug.serving
    except ImportError as exc:  # pragma: no cover - dev extra missing
        from conftest import _unavailable

        _unavailable("oidc-provider-mock", exc)
    server = werkzeug.serving.make_server("127.0.0.1", 0, oidc_provider_mock.app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.1,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
        server.server_close()


def _secrets(path: Path, console: str, idp_url: str) -> None:
    path.write_text(
        "[auth]\n"
        f'redirect_uri = "{console}/oauth2callback"\n'
        'cookie_secret = "sso-test-cookie-secret-0123456789abcdef"\n'
        'client_id = "paywatch-console"\n'
        'client_secret = "sso-test-client-secret"\n'
        f'server_metadata_url = "{idp_url}/.well-known/openid-configuration"\n'
        "\n[console.oidc_roles]\n"
        f'"{EMAIL}" = "operator"\n'
    )


@pytest.fixture
def sso_stack(tmp_path: Path, idp: str) -> Iterator[ConsoleStack]:
    secrets = tmp_path / "secrets.toml"
    stack = ConsoleStack(tmp_path, extra_env={"STREAMLIT_SECRETS_FILES": str(secrets)})
    _secrets(secrets, stack.console, idp)
    with running(stack):
        yield stack


def _shot(page: Any, name: str) -> None:
    page.screenshot(path=str(artifacts() / f"sso_{name}.png"))


def _audit(engine: sa.Engine, action: str) -> list[tuple[str, str, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT actor, role, detail FROM console_audit WHERE action = :a AND actor = :u"
            ),
            {"a": action, "u": EMAIL},
        ).all()
    return [tuple(r) for r in rows]


def test_sso_login_is_audited_once_and_logout_ends_the_idp_sign_in(sso_stack, browser) -> None:
    from playwright.sync_api import expect

    t0 = time.monotonic()
    page = browser.new_context(viewport=VIEWPORT).new_page()
    page.goto(sso_stack.console)
    sso = page.get_by_role("button", name="Log in with single sign-on")
    expect(sso).to_be_visible(timeout=30_000)
    _shot(page, "01_login_form")
    sso.click()

    # the IdP's authorization form: the subject typed here is also the e-mail claim
    subject = page.locator("input[name=sub]")
    expect(subject).to_be_visible(timeout=30_000)
    _shot(page, "02_idp_form")
    subject.fill(EMAIL)
    page.get_by_role("button", name="Authorize").click()

    # md() puts a zero-width space after "@" (no mailto autolink)
    shown = re.escape(EMAIL).replace("@", "@\u200b?")
    signed_in = page.get_by_text(re.compile(rf"Signed in as {shown} \(operator\)"))
    expect(signed_in).to_be_visible(timeout=30_000)
    assert page.url.startswith(sso_stack.console)
    _shot(page, "03_signed_in")
    logins = wait(lambda: _audit(sso_stack.engine, "login"), "the SSO login audit row")
    assert len(logins) == 1, logins
    assert logins[0][1] == "operator" and '"via": "oidc"' in logins[0][2], logins

    # the console's session cookie is set by a script in the page: a reload before it ran
    # would (correctly) not find the console session and open a second one
    wait(
        lambda: any(c["name"] == SESSION_COOKIE for c in page.context.cookies()),
        "the console session cookie",
    )
    page.reload()
    expect(signed_in).to_be_visible(timeout=30_000)
    time.sleep(2)  # a second (wrong) login audit would be written by now
    assert len(_audit(sso_stack.engine, "login")) == 1, "a reload audited the login again"
    assert not _audit(sso_stack.engine, "logout")

    page.get_by_role("button", name="Log out").click()
    wait(lambda: _audit(sso_stack.engine, "logout"), "the SSO logout audit row")
    # st.logout ends the IdP sign-in too (RP-initiated logout): the IdP asks to confirm,
    # then sends the browser back to the console
    end = page.get_by_role("button", name="End session")
    expect(end).to_be_visible(timeout=30_000)
    assert "/oauth2/end_session" in page.url, page.url
    _shot(page, "04_idp_end_session")
    end.click()
    expect(page.get_by_role("button", name="Log in with single sign-on")).to_be_visible(
        timeout=30_000
    )
    assert page.url.startswith(sso_stack.console), page.url
    page.wait_for_load_state("networkidle")
    # the next page load: the login form, not signed straight back in by the IdP cookie
    page.goto(sso_stack.console)
    expect(page.get_by_role("button", name="Log in with single sign-on")).to_be_visible(
        timeout=30_000
    )
    expect(page.get_by_role("textbox", name="User name")).to_be_visible()
    time.sleep(2)
    expect(page.get_by_text(re.compile(r"Signed in as"))).to_have_count(0)
    _shot(page, "05_after_logout")
    assert len(_audit(sso_stack.engine, "login")) == 1, "signed straight back in after logout"
    logouts = _audit(sso_stack.engine, "logout")
    assert len(logouts) == 1 and '"via": "oidc"' in logouts[0][2], logouts
    print(f"SSO round trip: {time.monotonic() - t0:.1f} s", file=sys.stderr)
