"""Shared helpers for the console pages: the cached platform, the signed-in user,
role checks and audited actions. Page files are run by ``st.navigation``.

The signed-in user is resolved afresh on every run (:func:`current_user`): the browser
session holds only a session token (in ``st.session_state`` and in the
``paywatch_session`` cookie, so a reload keeps the user signed in), and the token is
looked up in ``console_sessions`` joined with the user's row each time. A demoted,
disabled or removed user, or one whose password was reset, gets the new state at the
next click.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from console import host
from console.audit import record
from console.auth import (
    SESSION_COOKIE,
    SESSION_LIFETIME,
    User,
    can,
    load_user,
    session_user,
)
from console.safe import md

__all__ = [
    "ENDED_KEY",
    "NOTICE_KEY",
    "PAGES_DIR",
    "Platform",
    "ROLE_CHANGED_KEY",
    "SESSION_KEY",
    "SHELL_KEY",
    "audited",
    "client_address",
    "cookie_script",
    "current_user",
    "fmt",
    "forget_session",
    "idle_timeout",
    "leave_legacy_pages",
    "now",
    "oidc_roles",
    "platform",
    "put_cookie",
    "require",
    "sandbox_token",
    "start_session",
]

PAGES_DIR = Path(__file__).resolve().parent
T = TypeVar("T")
Platform = Any  # runtime.bootstrap.Platform, built by the console's host

#: ``st.session_state`` keys: this browser session's token and what the shell shows once
SESSION_KEY = "console_session"
ENDED_KEY = "console_session_ended"
NOTICE_KEY = "console_notice"
ROLE_CHANGED_KEY = "console_role_changed"
SHELL_KEY = "console_shell_ran"


@st.cache_resource(show_spinner=False)
def _platform(database_url: str, var_dir: str, sandbox_url: str, prometheus_url: str) -> Platform:
    return host.build_platform()


def platform() -> Platform:
    """The console's platform, built once per database (role "console", no channels).

    In a fragment's own rerun (a panel refreshing itself) the user is checked again
    first: the shell does not run then, and a removed user's open page must not go on
    showing fresh data (:func:`_check_in_fragment`)."""
    s = host.settings()
    built = _platform(s.database_url, s.var_dir, s.sandbox_url, s.prometheus_url or "")
    _check_in_fragment()
    return built


def _check_in_fragment() -> None:
    """Once per fragment-only run: when the session has ended or the role changed, rerun
    the whole app, so the shell shows the login screen or what the new role may see."""
    from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

    ctx = get_script_run_ctx()
    runs = getattr(ctx, "fragment_ids_this_run", None) if ctx is not None else None
    if not runs or getattr(ctx, "_paywatch_checked", None) is runs:
        return
    ctx._paywatch_checked = runs  # type: ignore[union-attr]
    seen = st.session_state.get("user")
    if not isinstance(seen, dict):
        return  # the login screen has no fragments
    user = current_user(click=False)
    if user is None or user.role != seen.get("role"):
        st.rerun(scope="app")


def leave_legacy_pages() -> None:
    """Make the next run go through ``console/app.py``.

    Streamlit treats an app with a ``pages/`` folder beside its main script as a legacy
    multipage app until the first ``st.navigation`` call of the process: a first request
    for ``/sre_switches`` after a start would run that page file alone, without the
    shell (no sign-in, no navigation, the automatic page list shown). Every page calls
    this (through :func:`require`): it switches the legacy mode off and reruns, so the
    shell resolves the requested page. (The shell needs no rerun: run as the legacy main
    page, its own ``st.navigation`` takes over. A session the shell has already served,
    which only Streamlit's AppTest puts back into legacy mode, is not rerun: that would
    drop the click being tested; the page's own :func:`require` guards it.)
    """
    try:
        from streamlit.runtime.pages_manager import PagesManager
    except ImportError:  # pragma: no cover - another Streamlit layout
        return
    if getattr(PagesManager, "uses_pages_directory", False):
        PagesManager.uses_pages_directory = False
        if not st.session_state.get(SHELL_KEY):
            st.rerun()


def client_address() -> str:
    """The client for login throttling: the connection's address; behind a local reverse
    proxy the address that proxy saw (the last ``X-Forwarded-For`` hop, which a client
    cannot forge); else "local"."""
    try:
        ip = st.context.ip_address
        forwarded = st.context.headers.get("X-Forwarded-For")
    except Exception:  # noqa: BLE001 - no client context (tests, bare mode)
        return "local"
    if isinstance(ip, str) and ip:
        return ip[:64]
    hops = [h.strip() for h in (forwarded if isinstance(forwarded, str) else "").split(",")]
    return (hops[-1] or "local")[:64]


def oidc_roles() -> Mapping[str, str]:
    """``[console.oidc_roles]`` of ``secrets.toml`` (e-mail → role), read every run."""
    try:
        return dict(st.secrets.get("console", {}).get("oidc_roles", {}))
    except Exception:  # noqa: BLE001 - no secrets file
        return {}


def idle_timeout() -> timedelta:
    return timedelta(minutes=host.settings().console_idle_minutes)


def _cookie_token() -> str | None:
    try:
        value = st.context.cookies.get(SESSION_COOKIE)
    except Exception:  # noqa: BLE001 - no client context
        return None
    return value if isinstance(value, str) and value else None


def start_session(token: str, user: User) -> None:
    """Remember the new session in this browser session (the cookie follows)."""
    st.session_state[SESSION_KEY] = token
    st.session_state.pop(ENDED_KEY, None)
    _remember(user)


def forget_session(notice: str | None = None) -> None:
    """Drop this browser session's user (the server-side session is ended elsewhere)."""
    for key in (SESSION_KEY, "user", ROLE_CHANGED_KEY):
        st.session_state.pop(key, None)
    if notice:
        st.session_state[NOTICE_KEY] = notice


def _remember(user: User) -> None:
    prev = st.session_state.get("user")
    if (
        isinstance(prev, dict)
        and prev.get("username") == user.username
        and prev.get("role") not in (None, user.role)
    ):
        st.session_state[ROLE_CHANGED_KEY] = (str(prev["role"]), user.role)
    st.session_state["user"] = {"username": user.username, "role": user.role}


def current_user(*, click: bool = True) -> User | None:
    """The signed-in user as the database has it now, or ``None``.

    The session token comes from this browser session, else from the cookie (a reload);
    an ended session (logout, idle, expiry, disabled/removed user, reset password) leaves
    a notice for the login screen. A ``user`` put into ``st.session_state`` by server code
    without a session (tests, embedding) is re-read from ``console_users`` too. Only a
    ``click`` (not a page refreshing itself) counts as activity for the idle timeout.
    """
    engine = platform().db.engine
    token = st.session_state.get(SESSION_KEY) or _cookie_token()
    if token:
        user = session_user(
            engine, token, idle=idle_timeout(), oidc_roles=oidc_roles(), touch=click
        )
        if user is not None:
            st.session_state[SESSION_KEY] = token
            _remember(user)
            return user
        had = SESSION_KEY in st.session_state or "user" in st.session_state
        forget_session(
            "Your session has ended (logged out, idle, or changed by an admin): sign in again."
            if had
            else None
        )
        st.session_state[ENDED_KEY] = True
        return None
    raw = st.session_state.get("user")
    name = (
        raw.username
        if isinstance(raw, User)
        else (raw.get("username") if isinstance(raw, dict) else None)
    )
    if not name:
        return None
    user = load_user(engine, str(name))
    if user is None:
        forget_session()
        return None
    _remember(user)
    return user


def require(action: str) -> User:
    """The signed-in user if allowed ``action``; otherwise an error and the page stops."""
    leave_legacy_pages()
    user = current_user()
    if user is None or not can(user.role, action):
        role = f" (your role is {user.role})" if user is not None else " (sign in first)"
        st.error(f"You are not allowed to open this page{role}.")
        st.stop()
    assert user is not None
    return user


def cookie_script(token: str | None) -> str:
    """The snippet that stores ``token`` in the session cookie (``None``: deletes it).

    ``SameSite=Strict`` (never sent from another site), ``Secure`` on HTTPS, path ``/``;
    the token only ever travels in this cookie, never in the URL.
    """
    if token is None:
        value, age = "", 0
    else:
        value, age = token, int(SESSION_LIFETIME.total_seconds())
    cookie = json.dumps(f"{SESSION_COOKIE}={value}; Path=/; Max-Age={age}; SameSite=Strict")
    return (
        f"<script>document.cookie = {cookie} + (location.protocol === 'https:' ? "
        "'; Secure' : '');</script>"
    )


def put_cookie(token: str | None) -> None:
    """Set (or with ``None`` delete) the session cookie in the browser."""
    st.html(cookie_script(token), unsafe_allow_javascript=True)


def audited(
    user: User, action: str, target: str, detail: dict[str, Any], fn: Callable[[], T]
) -> T | None:
    """Run ``fn`` and write the console audit row (with the outcome); show errors."""
    engine = platform().db.engine
    try:
        result = fn()
    except Exception as exc:  # noqa: BLE001 - every failure is shown and audited
        record(
            engine,
            actor=user.username,
            role=user.role,
            action=action,
            target=target,
            detail={**detail, "ok": False, "error": str(exc)[:500]},
        )
        st.error(f"{md(action)} failed: {md(exc)}")
        return None
    record(
        engine,
        actor=user.username,
        role=user.role,
        action=action,
        target=target,
        detail={**detail, "ok": True},
    )
    return result


def now() -> float:
    return time.time()


def sandbox_token() -> str:
    return host.settings().sandbox_admin_token()


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)
