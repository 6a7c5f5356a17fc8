"""Admin: console users — list, create, change a role, reset a password, disable or enable,
remove (all audited), and the recent sign-in activity.

A change takes effect at the user's next click: roles are read on every run, and a
reset password, a disabled or removed user ends the user's open sessions. Nobody can
lock the console out of admins: an admin cannot disable, remove or demote themself, and
the last enabled admin cannot be disabled, removed or demoted at all.
Page convention: see :mod:`console.pages.ops_compensation`.
"""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from console.audit import recent
from console.auth import (
    ROLES,
    create_user,
    disable_user,
    enable_user,
    list_users,
    remove_user,
    set_password,
    set_role,
)
from console.panel import panel
from console.reports.context import page_context, run_audited
from console.safe import md

_FLASH = "admin_users_flash"
#: the audit actions the sign-in activity table shows
ACTIVITY = (
    "login",
    "login_failed",
    "login_throttled",
    "logout",
    "user.create",
    "user.role",
    "user.password",
    "user.disable",
    "user.enable",
    "user.remove",
)


def _outcome(ok: bool, result: Any, success: str) -> None:
    if ok and result is not False:
        st.success(success)
    else:
        st.error(f"Failed: {'no such user' if result is False else md(result)}")


def render(ctx: Any, user: Any = None) -> None:
    c = page_context(ctx, user)
    st.title("Users")
    if not c.can("user.manage"):
        st.error("Only admins manage console users.")
        return
    flash = st.session_state.pop(_FLASH, None)
    if flash:
        st.success(flash)
    engine = c.db.engine
    listing = st.container()  # filled last, so it shows what this run's action changed

    with st.form("user_create", clear_on_submit=True):
        st.subheader("New user")
        name = st.text_input("User name", key="user_new_name")
        role = st.selectbox("Role", ROLES, key="user_new_role")
        password = st.text_input(
            "Initial password (8+ characters)", type="password", key="user_new_password"
        )
        if st.form_submit_button("Create"):
            ok, res = run_audited(
                c,
                "user.create",
                f"user:{name}",
                {"role": role},
                lambda: create_user(engine, name, password, role),
            )
            _outcome(ok, res, f"User {md(name)} created as {role}.")

    with panel("Change a user", "database"):
        users = list_users(engine)
        if users:
            _change_user(c, engine, users)
    with listing, panel("Console users", "database"):
        st.dataframe(list_users(engine), hide_index=True, key="user_list")
    with panel("Sign-in activity", "database"):
        st.caption(
            "Refused sign-ins name the cause (unknown user, wrong password, disabled) "
            "here only: operators' audit views show one reason for all."
        )
        rows = recent(engine, 100, actions=ACTIVITY, admin=True)
        st.dataframe(
            [{**r, "detail": json.dumps(r["detail"], sort_keys=True)} for r in rows],
            hide_index=True,
            key="user_activity",
        )


def _change_user(c: Any, engine: Any, users: list[dict[str, Any]]) -> None:
    by_name = {u["username"]: u for u in users}
    target = st.selectbox("User", list(by_name), key="user_target")
    who = md(target)
    new_role = st.selectbox("New role", ROLES, key="user_role")
    if st.button("Change role", key="user_set_role"):
        if target == c.user and new_role != "admin":
            st.error("You cannot take the admin role from yourself.")
        else:
            ok, res = run_audited(
                c,
                "user.role",
                f"user:{target}",
                {"role": new_role},
                lambda: set_role(engine, target, new_role),
            )
            _outcome(ok, res, f"{who} is now {new_role} (from their next click).")
    new_password = st.text_input("New password", type="password", key="user_password")
    if st.button("Reset password", key="user_reset_password"):
        ok, res = run_audited(
            c,
            "user.password",
            f"user:{target}",
            {},
            lambda: set_password(engine, target, new_password),
        )
        _outcome(ok, res, f"Password of {who} reset; their open sessions have ended.")
    _disable_or_remove(c, engine, target, by_name[target]["status"] == "disabled")


def _disable_or_remove(c: Any, engine: Any, target: str, disabled: bool) -> None:
    who = md(target)
    st.subheader(f"Access of {who}")
    st.write(f"{who} is **{'disabled' if disabled else 'enabled'}**.")
    if disabled:
        if st.button("Enable user", key="user_enable"):
            _changed(
                *run_audited(
                    c, "user.enable", f"user:{target}", {}, lambda: enable_user(engine, target)
                ),
                f"{who} is enabled and may sign in again.",
            )
    elif st.button("Disable user", key="user_disable"):
        if target == c.user:
            st.error("You cannot disable yourself.")
        else:
            _changed(
                *run_audited(
                    c, "user.disable", f"user:{target}", {}, lambda: disable_user(engine, target)
                ),
                f"{who} is disabled; their open sessions have ended.",
            )
    sure = st.checkbox(
        f"Remove {who} for good (the audit log keeps their rows)", key="user_remove_confirm"
    )
    if st.button("Remove user", key="user_remove"):
        if target == c.user:
            st.error("You cannot remove yourself.")
        elif not sure:
            st.error("Tick the box to confirm the removal.")
        else:
            _changed(
                *run_audited(
                    c, "user.remove", f"user:{target}", {}, lambda: remove_user(engine, target)
                ),
                f"{who} is removed; their open sessions have ended.",
            )


def _changed(ok: bool, result: Any, success: str) -> None:
    """After a change of a user's access: the page is drawn again (so its buttons and
    lists show the new state) with the confirmation on top; a failure is shown here."""
    if ok and result is not False:
        st.session_state[_FLASH] = success
        st.rerun()
    _outcome(ok, result, success)


if __name__ == "__main__":  # run as a page by st.navigation
    from console.pages import platform, require

    _user = require("user.manage")
    render(platform(), _user)
