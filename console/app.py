"""The paywatch console: ``streamlit run console/app.py``.

Builds the platform once, signs the user in (local users; OIDC via ``st.login`` only when
``[auth]`` is configured in ``secrets.toml``), and shows the pages the user's role allows.
"""

from __future__ import annotations

import os

import streamlit as st

from console.audit import record
from console.auth import (
    User,
    ensure_bootstrap_admin,
    oidc_configured,
    oidc_role,
    page_allowed,
    verify,
)
from console.pages import PAGES_DIR, current_user, platform

#: (file, title, icon, section) of the pages built here; ops_/mgr_/admin_ pages are discovered
PAGES = [
    ("oncall_overview.py", "Overview", ":material/monitoring:", "On-call"),
    ("oncall_link.py", "Link drill-down", ":material/timeline:", "On-call"),
    ("oncall_depmap.py", "Dependency map", ":material/hub:", "On-call"),
    ("sre_switches.py", "Switches and limits", ":material/toggle_on:", "SRE"),
    ("sre_breakers.py", "Breakers and timeouts", ":material/electric_bolt:", "SRE"),
    ("sre_drills.py", "Drills", ":material/science:", "SRE"),
]
SECTIONS = {"ops": "Operations", "mgr": "Managers", "admin": "Admin"}
#: titles that the file name does not spell well
TITLES = {"mgr_sla.py": "SLA report", "mgr_funds.py": "Fund report"}


def _pages_for(role: str) -> dict[str, list[st.Page]]:
    nav: dict[str, list[st.Page]] = {}
    for file, title, icon, section in PAGES:
        if page_allowed(role, file) and (PAGES_DIR / file).exists():
            nav.setdefault(section, []).append(st.Page(f"pages/{file}", title=title, icon=icon))
    for prefix, section in SECTIONS.items():
        for path in sorted(PAGES_DIR.glob(f"{prefix}_*.py")):
            if page_allowed(role, path.name):
                title = (
                    TITLES.get(path.name)
                    or path.stem.split("_", 1)[1].replace("_", " ").capitalize()
                )
                nav.setdefault(section, []).append(st.Page(f"pages/{path.name}", title=title))
    return nav


def _login() -> None:
    engine = platform().db.engine
    st.title("paywatch console")
    with st.form("login"):
        username = st.text_input("User name", key="login_username")
        password = st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Log in")
    if submitted:
        user = verify(engine, username, password)
        if user is None:
            record(
                engine,
                actor=username[:64] or "-",
                role="-",
                action="login_failed",
                target="console",
            )
            st.error("Invalid user name or password.")
        else:
            st.session_state["user"] = {"username": user.username, "role": user.role}
            record(engine, actor=user.username, role=user.role, action="login", target="console")
            st.rerun()
    if oidc_configured(st.secrets):
        st.divider()
        st.button("Log in with single sign-on", on_click=st.login)


def _oidc_user() -> User | None:
    """The user signed in through ``st.login``, when OIDC is configured."""
    if not oidc_configured(st.secrets):
        return None
    try:
        if not st.user.is_logged_in:
            return None
        email = str(st.user.get("email") or "")
        roles = st.secrets.get("console", {}).get("oidc_roles", {})
    except Exception:  # noqa: BLE001 - misconfigured OIDC never blocks local login
        return None
    return User(email, oidc_role(email, roles)) if email else None


def main() -> None:
    st.set_page_config(page_title="paywatch console", layout="wide")
    ensure_bootstrap_admin(platform().db.engine, os.environ)
    user = current_user() or _oidc_user()
    if user is None:
        # a navigation of its own: Streamlit's automatic page list (every file under
        # pages/) must not show before sign-in
        st.navigation([st.Page(_login, title="Log in", url_path="login")],
                      position="hidden").run()  # fmt: skip
        st.stop()
    assert user is not None
    st.session_state["user"] = {"username": user.username, "role": user.role}
    with st.sidebar:
        st.caption(f"Signed in as **{user.username}** ({user.role})")
        if st.button("Log out", key="logout"):
            record(
                platform().db.engine,
                actor=user.username,
                role=user.role,
                action="logout",
                target="console",
            )
            st.session_state.pop("user", None)
            st.rerun()
    st.navigation(_pages_for(user.role)).run()


main()
