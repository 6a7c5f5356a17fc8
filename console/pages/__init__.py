"""Shared helpers for the console pages: the cached platform, the signed-in user,
role checks and audited actions. Page files are run by ``st.navigation``."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import streamlit as st

from console.audit import record
from console.auth import User, can
from console.bootstrap import Platform, build_platform
from console.settings import Settings

PAGES_DIR = Path(__file__).resolve().parent
T = TypeVar("T")


@st.cache_resource(show_spinner=False)
def _platform(database_url: str, var_dir: str, sandbox_url: str, prometheus_url: str) -> Platform:
    return build_platform(Settings.from_env(), role="console", channels=False)


def platform() -> Platform:
    """The console's platform, built once per database (role "console", no channels)."""
    s = Settings.from_env()
    return _platform(s.database_url, s.var_dir, s.sandbox_url, s.prometheus_url or "")


def current_user() -> User | None:
    raw = st.session_state.get("user")
    if isinstance(raw, User):
        return raw
    if isinstance(raw, dict) and raw.get("username") and raw.get("role"):
        return User(str(raw["username"]), str(raw["role"]))
    return None


def require(action: str) -> User:
    """The signed-in user if allowed ``action``; otherwise an error and the page stops."""
    user = current_user()
    if user is None or not can(user.role, action):
        st.error("You are not allowed to open this page.")
        st.stop()
    assert user is not None
    return user


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
        st.error(f"{action} failed: {exc}")
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
    return Settings.from_env().sandbox_admin_token()


def fmt(value: float | None, spec: str = ".3f") -> str:
    return "–" if value is None else format(value, spec)
