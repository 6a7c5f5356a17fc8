"""Console sessions on SQLite and PostgreSQL (issue 18, point 2): a session follows the user's
row, ends when idle or too old, on a reset, disable or removal; the last admin stays; user
names are printable. Single sign-on needs an identity provider: its decisions are tested
through the functions the shell calls with the identity (``oidc_action``, ``sign_in``,
``sign_out``); the ``st.login``/``st.logout`` round trip itself is not exercised here.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

pytest.importorskip("streamlit")

from console_shell import (
    IDLE,
    PASSWORD,
    T0,
    _actions,
    engine,  # noqa: F401 - fixture
)

from console import auth  # noqa: E402

# -- sessions (storage) ------------------------------------------------------------------


def test_session_follows_the_user_row(engine):
    auth.create_user(engine, "olive", PASSWORD, "operator")
    token = auth.open_session(engine, "olive", client="10.0.0.1", now=T0)
    assert auth.session_user(engine, token, idle=IDLE, now=T0) == auth.User("olive", "operator")
    auth.set_role(engine, "olive", "viewer")
    assert auth.session_user(engine, token, idle=IDLE, now=T0).role == "viewer"
    assert auth.session_user(engine, "not-a-token", idle=IDLE, now=T0) is None
    with engine.connect() as conn:  # only the hash is stored
        stored = conn.execute(sa.text("select token_hash from console_sessions")).scalar_one()
    assert token not in stored and len(stored) == 64


def test_idle_and_lifetime_end_a_session(engine):
    auth.create_user(engine, "olive", PASSWORD, "operator")
    token = auth.open_session(engine, "olive", now=T0)
    t = T0
    for _ in range(20):  # active every 29 minutes: survives the 30-minute idle timeout
        t += timedelta(minutes=29)
        if t >= T0 + auth.SESSION_LIFETIME:
            break
        assert auth.session_user(engine, token, idle=IDLE, now=t) is not None, t
    assert auth.session_user(engine, token, idle=IDLE, now=T0 + auth.SESSION_LIFETIME) is None
    idle = auth.open_session(engine, "olive", now=T0)
    # a page refreshing itself (touch=False) is no activity
    assert auth.session_user(engine, idle, idle=IDLE, touch=False, now=T0 + IDLE / 2)
    assert auth.session_user(engine, idle, idle=IDLE, now=T0 + IDLE) is None
    assert auth.session_user(engine, idle, idle=IDLE, now=T0) is None  # deleted, not revived


def test_password_reset_disable_remove_revoke_sessions(engine):
    auth.create_user(engine, "olive", PASSWORD, "operator")
    auth.create_user(engine, "ann", PASSWORD, "admin")
    other = auth.open_session(engine, "ann", now=T0)
    for change in (
        lambda: auth.set_password(engine, "olive", "another-password"),
        lambda: auth.disable_user(engine, "olive", now=T0),
        lambda: auth.remove_user(engine, "olive"),
    ):
        token = auth.open_session(engine, "olive", now=T0)
        assert auth.session_user(engine, token, idle=IDLE, now=T0) is not None
        change()
        assert auth.session_user(engine, token, idle=IDLE, now=T0) is None
        auth.enable_user(engine, "olive")
    assert auth.session_user(engine, other, idle=IDLE, now=T0) is not None
    assert [u["username"] for u in auth.list_users(engine)] == ["ann"]
    assert auth.verify(engine, "olive", "another-password") is None


def test_disabled_user_is_refused_and_enable_restores(engine):
    auth.create_user(engine, "olive", PASSWORD, "operator")
    assert auth.disable_user(engine, "olive")
    assert auth.verify(engine, "olive", PASSWORD) is None
    assert auth.load_user(engine, "olive") is None
    assert {u["username"]: u["status"] for u in auth.list_users(engine)} == {"olive": "disabled"}
    assert auth.enable_user(engine, "olive")
    assert auth.verify(engine, "olive", PASSWORD) == auth.User("olive", "operator")
    assert not auth.disable_user(engine, "nobody") and not auth.remove_user(engine, "nobody")


def test_last_enabled_admin_cannot_be_locked_out(engine):
    auth.create_user(engine, "ann", PASSWORD, "admin")
    auth.create_user(engine, "bob", PASSWORD, "admin")
    assert auth.disable_user(engine, "bob")  # ann is still an enabled admin
    for change in (
        lambda: auth.disable_user(engine, "ann"),
        lambda: auth.remove_user(engine, "ann"),
        lambda: auth.set_role(engine, "ann", "manager"),
    ):
        with pytest.raises(auth.AuthError, match="last enabled admin"):
            change()
    assert auth.verify(engine, "ann", PASSWORD) == auth.User("ann", "admin")
    auth.enable_user(engine, "bob")
    assert auth.set_role(engine, "ann", "manager")


def test_user_names_must_be_printable(engine):
    for bad in ("", " ", "a\nb", "x" * 65, "tab\there"):
        with pytest.raises(auth.AuthError):
            auth.create_user(engine, bad, PASSWORD, "viewer")


# -- single sign-on ------------------------------------------------------------------------


def test_oidc_decisions():
    assert auth.oidc_action(logged_in=False, email="", had_session=False) == "none"
    assert auth.oidc_action(logged_in=False, email="a@x.io", had_session=True) == "none"
    assert auth.oidc_action(logged_in=True, email="a@x.io", had_session=False) == "sign_in"
    # the console session of this browser ended (idle, logout, revoked): end the IdP
    # sign-in too instead of silently signing back in
    assert auth.oidc_action(logged_in=True, email="a@x.io", had_session=True) == "logout"
    assert auth.oidc_action(logged_in=True, email="", had_session=False) == "logout"


def test_oidc_login_is_audited_once_and_logout_asks_for_st_logout(engine):
    """Old code: OIDC sign-ins wrote no audit row, and logout never ended the IdP sign-in."""
    email = "alice." + "x" * 70 + "@example.com"  # longer than the audit's actor column
    roles = {email: "operator"}
    user = auth.User(email, auth.oidc_role(email, roles), "oidc")
    token = auth.sign_in(engine, user, client="10.0.0.5")
    for _ in range(3):  # later runs and reloads use the session: no new login row
        assert auth.session_user(engine, token, idle=IDLE, oidc_roles=roles) == user
    assert auth.session_user(engine, token, idle=IDLE, oidc_roles={}).role == "viewer"
    logins = _actions(engine, "login")
    assert len(logins) == 1 and logins[0]["detail"]["via"] == "oidc"
    assert logins[0]["actor"] == email[:64]
    assert auth.sign_out(engine, token, user) is True  # the shell then calls st.logout
    assert auth.session_user(engine, token, idle=IDLE, oidc_roles=roles) is None
    local = auth.User("olive", "operator")
    auth.create_user(engine, "olive", PASSWORD, "operator")
    assert auth.sign_out(engine, auth.sign_in(engine, local, client="-"), local) is False
