"""Admin: console users — list, create, change a role, reset a password (all audited).

Page convention: see :mod:`console.pages.ops_compensation`.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from console.auth import ROLES, AuthError, create_user, list_users, set_password, set_role
from console.reports.context import page_context, run_audited


def _outcome(ok: bool, result: Any, success: str) -> None:
    if ok and result is not False:
        st.success(success)
    else:
        st.error(f"Failed: {'no such user' if result is False else result}")


def render(ctx: Any, user: Any = None) -> None:
    c = page_context(ctx, user)
    st.title("Users")
    if not c.can("user.manage"):
        st.error("Only admins manage console users.")
        return
    engine = c.db.engine
    listing = st.container()  # filled last, so it shows what this run's action changed

    with st.form("user_create", clear_on_submit=True):
        st.subheader("New user")
        name = st.text_input("User name", key="user_new_name")
        role = st.selectbox("Role", ROLES, key="user_new_role")
        password = st.text_input("Initial password (8+ characters)", type="password",
                                 key="user_new_password")  # fmt: skip
        if st.form_submit_button("Create"):
            ok, res = run_audited(c, "user.create", f"user:{name}", {"role": role},
                                  lambda: create_user(engine, name, password, role))  # fmt: skip
            _outcome(ok, res, f"User {name} created as {role}.")

    names = [u["username"] for u in list_users(engine)]
    if names:
        _change_user(c, engine, names)
    listing.dataframe(list_users(engine), hide_index=True)


def _change_user(c: Any, engine: Any, names: list[str]) -> None:
    st.subheader("Change a user")
    target = st.selectbox("User", names, key="user_target")
    new_role = st.selectbox("New role", ROLES, key="user_role")
    if st.button("Change role", key="user_set_role"):
        if target == c.user and new_role != "admin":
            st.error("You cannot take the admin role from yourself.")
        else:
            ok, res = run_audited(c, "user.role", f"user:{target}", {"role": new_role},
                                  lambda: set_role(engine, target, new_role))  # fmt: skip
            _outcome(ok, res, f"{target} is now {new_role}.")
    new_password = st.text_input("New password", type="password", key="user_password")
    if st.button("Reset password", key="user_reset_password"):
        ok, res = run_audited(c, "user.password", f"user:{target}", {},
                              lambda: set_password(engine, target, new_password))  # fmt: skip
        if not ok and isinstance(res, AuthError):
            st.error(str(res))
        else:
            _outcome(ok, res, f"Password of {target} reset.")


if __name__ == "__main__":  # run as a page by st.navigation
    from console.pages import platform, require

    _user = require("user.manage")
    render(platform(), _user)
