"""The paywatch console: ``streamlit run console/app.py``.

Builds the platform once, signs the user in (local users; OIDC via ``st.login`` only when
``[auth]`` is configured in ``secrets.toml``), and shows the pages the user's role allows.
Every page has its own URL (``/sre_switches?window=1h``): a reload, a bookmark or a shared
link opens the same page; signed out, the login screen keeps the requested page and opens
it after sign-in. A page the user's role may not open says so instead of "Page not found".
"""

from __future__ import annotations

import math
import os

import streamlit as st

from console.auth import (
    User,
    attempt_login,
    ensure_bootstrap_admin,
    login_wait,
    lowest_role_for,
    oidc_action,
    oidc_configured,
    oidc_role,
    page_allowed,
    sign_in,
    sign_out,
    throttle_keys,
)
from console.pages import (
    ENDED_KEY,
    NOTICE_KEY,
    PAGES_DIR,
    ROLE_CHANGED_KEY,
    SESSION_KEY,
    SHELL_KEY,
    client_address,
    current_user,
    forget_session,
    oidc_roles,
    platform,
    put_cookie,
    start_session,
)
from console.safe import md

#: (file, title, icon, section) of the pages built here; ops_/mgr_/admin_ pages are discovered
PAGES = [
    ("oncall_overview.py", "Overview", ":material/monitoring:", "On-call"),
    ("oncall_alerts.py", "Alerts", ":material/notifications:", "On-call"),
    ("oncall_link.py", "Link drill-down", ":material/timeline:", "On-call"),
    ("oncall_depmap.py", "Dependency map", ":material/hub:", "On-call"),
    ("sre_switches.py", "Switches and limits", ":material/toggle_on:", "SRE"),
    ("sre_routing.py", "Routing", ":material/alt_route:", "SRE"),
    ("sre_breakers.py", "Breakers and timeouts", ":material/electric_bolt:", "SRE"),
    ("sre_drills.py", "Drills", ":material/science:", "SRE"),
]
SECTIONS = {"ops": "Operations", "mgr": "Managers", "admin": "Admin"}
#: titles that the file name does not spell well
TITLES = {"mgr_sla.py": "SLA report", "mgr_funds.py": "Fund report"}


def _all_pages() -> list[tuple[str, str, str | None, str]]:
    """Every page file with its title, icon and section, in navigation order."""
    pages: list[tuple[str, str, str | None, str]] = [
        p for p in PAGES if (PAGES_DIR / p[0]).exists()
    ]
    for prefix, section in SECTIONS.items():
        for path in sorted(PAGES_DIR.glob(f"{prefix}_*.py")):
            title = (
                TITLES.get(path.name) or path.stem.split("_", 1)[1].replace("_", " ").capitalize()
            )
            pages.append((path.name, title, None, section))
    return pages


def _refused(title: str, file: str):  # noqa: ANN202 - a page callable
    """A page the user's role may not open: says so (e.g. right after a demotion)."""

    def page() -> None:
        user = current_user()
        need = lowest_role_for(file) or "admin"
        st.title(title)
        role = user.role if user is not None else "none"
        st.error(
            f"Your role is {role}: {md(title)} needs the {need} role or above. "
            "Nothing on this page was done."
        )
        st.caption("Roles are checked on every click; ask an admin if your role is wrong.")

    return page


def _pages_for(role: str) -> dict[str, list[st.Page]]:
    """The navigation for ``role``: its pages in the sidebar, every other page hidden
    under its own URL, where it explains that the role may not open it."""
    nav: dict[str, list[st.Page]] = {}
    refused: list[st.Page] = []
    for file, title, icon, section in _all_pages():
        if page_allowed(role, file):
            nav.setdefault(section, []).append(
                st.Page(PAGES_DIR / file, title=title, icon=icon, url_path=file[:-3])
            )
        else:
            refused.append(
                st.Page(_refused(title, file), title=title, url_path=file[:-3], visibility="hidden")
            )
    if refused:
        nav.setdefault(next(iter(nav), ""), []).extend(refused)
    return nav


def _login(then: str | None = None) -> None:
    """The login form; ``then`` names the page the address asks for (opened after)."""
    engine = platform().db.engine
    st.title("paywatch console")
    notice = st.session_state.pop(NOTICE_KEY, None)
    if notice:
        st.info(md(notice))
    if then:
        st.caption(f"Sign in to open {md(then)}.")
    with st.form("login"):
        username = st.text_input("User name", key="login_username")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        _try_login(engine, username, password)
    if oidc_configured(st.secrets):
        st.divider()
        st.button("Log in with single sign-on", on_click=st.login)
    put_cookie(None)  # a cookie left from an ended session goes


def _try_login(engine, username: str, password: str) -> None:  # noqa: ANN001
    client = client_address()
    wait = login_wait(engine, throttle_keys(username, client))
    note = (
        f"Repeated failed sign-ins: answering in {math.ceil(wait)} s…" if wait > 0 else "Checking…"
    )
    with st.spinner(note):
        result = attempt_login(engine, username, password, client=client)
    if result.user is not None:
        token = sign_in(
            engine, result.user, client=client, detail={"waited_s": round(result.waited_s, 1)}
        )
        start_session(token, result.user)
        st.rerun()
    if result.outcome == "disabled":
        st.error("This user is disabled: ask an admin.")
    elif result.outcome == "throttled":
        st.error(f"Too many failed sign-ins: try again in {math.ceil(result.retry_after_s)} s.")
    else:
        st.error("Invalid user name or password.")
    if result.waited_s >= 0.5:
        st.caption(
            f"Answered after {result.waited_s:.0f} s: each failed sign-in after the "
            "third makes the next one wait longer."
        )


def _oidc_user() -> User | None:
    """The single sign-on user when no console session is valid: signs them in (a new
    console session, audited once), or ends the IdP sign-in when this browser's console
    session has just ended (idle, logged out, revoked)."""
    had_session = bool(st.session_state.pop(ENDED_KEY, False))
    if not oidc_configured(st.secrets):
        return None
    try:
        logged_in = bool(st.user.is_logged_in)
        email = str(st.user.get("email") or "") if logged_in else ""
    except Exception:  # noqa: BLE001 - misconfigured OIDC never blocks local login
        return None
    action = oidc_action(logged_in=logged_in, email=email, had_session=had_session)
    if action == "logout":
        st.logout()
        st.stop()
    if action != "sign_in":
        return None
    user = User(email, oidc_role(email, oidc_roles()), "oidc")
    token = sign_in(platform().db.engine, user, client=client_address())
    start_session(token, user)
    return user


def _login_navigation() -> None:
    """Signed out: every page URL shows the login form, so the address (page, window,
    filters) is kept and opens after sign-in. Streamlit's automatic page list (every file
    under pages/) must not show before sign-in, hence a navigation of its own."""
    pages = [st.Page(_login, title="Log in", url_path="login", default=True)]
    pages += [
        st.Page(_login_to(title), title="Log in", url_path=file[:-3])
        for file, title, *_ in _all_pages()
    ]
    st.navigation(pages, position="hidden").run()


def _login_to(title: str):  # noqa: ANN202 - a page callable
    def page() -> None:
        _login(title)

    return page


def _sidebar(user: User) -> None:
    with st.sidebar:
        st.caption(f"Signed in as **{md(user.username)}** ({user.role})")
        changed = st.session_state.pop(ROLE_CHANGED_KEY, None)
        if changed:
            st.warning(
                f"Your role was changed from {changed[0]} to {changed[1]}: pages and "
                "actions follow the new role."
            )
        if st.button("Log out", key="logout"):
            _logout(user)
        token = st.session_state.get(SESSION_KEY)
        if token:
            put_cookie(token)


def _logout(user: User) -> None:
    oidc = sign_out(platform().db.engine, st.session_state.get(SESSION_KEY), user)
    forget_session()
    if oidc:
        st.logout()  # the IdP sign-in ends too, or the next run would sign straight back in
        st.stop()
    st.rerun()


def main() -> None:
    st.set_page_config(page_title="paywatch console", layout="wide")
    st.session_state[SHELL_KEY] = True
    ensure_bootstrap_admin(platform().db.engine, os.environ)
    user = current_user() or _oidc_user()
    if user is None:
        _login_navigation()
        st.stop()
    assert user is not None
    _sidebar(user)
    st.navigation(_pages_for(user.role), expanded=True).run()


main()
