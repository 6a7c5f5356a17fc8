"""Roles that hold (issue 18, point 2): the console shell, driven with Streamlit's AppTest over
a migrated SQLite file and signed into through the login form, applies a new role, a reset
password, a disabled or removed user and the idle timeout at the next click; the session
cookie, the CLI's user commands and their audit rows.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

pytest.importorskip("streamlit")

from console_shell import (
    HOSTILE,
    IDLE,
    PASSWORD,
    _actions,
    _open,
    _page,
    _sign_in,
    _signed_in,
    _switches,
    _texts,
    console_db,  # noqa: F401 - fixture
)

from console import auth  # noqa: E402
from console.audit import recent  # noqa: E402
from console.safe import md  # noqa: E402

# -- roles that hold (the shell) ---------------------------------------------------------


@pytest.mark.parametrize("shell", [True, False], ids=["shell", "page-alone"])
def test_demoted_operator_cannot_act_at_the_next_click(console_db, shell):
    """Old code: the session kept "operator"; the switch was proposed after the demotion
    and audited with the role "operator"."""
    at = _sign_in(_open(shell), "otto")
    assert _signed_in(at), _texts(at)
    at = _page(at, "sre_switches")
    assert not at.exception, at.exception
    at.selectbox(key="sw_kind").select("degrade")
    at.selectbox(key="sw_target").select("notification").run()
    at.text_input(key="sw_reason").input("notification slow")
    at.number_input(key="sw_hours").set_value(1.0).run()

    assert auth.set_role(console_db, "otto", "viewer")  # an admin demotes otto now
    at.button(key="sw_apply").click().run()

    assert not at.exception, at.exception
    assert _switches(console_db) == 0
    assert not _actions(console_db, "switch.propose")
    assert "viewer" in _texts(at)
    assert not [b for b in at.button if b.key == "sw_apply"]
    if shell:  # the page says why, under its own URL, and the sidebar says what changed
        assert any("needs the operator role" in e.value for e in at.error), _texts(at)
        assert any("changed from operator to viewer" in w.value for w in at.sidebar.warning)
        assert at.session_state["user"] == {"username": "otto", "role": "viewer"}


def test_promotion_takes_effect_and_actions_are_audited_with_the_role_now(console_db):
    at = _sign_in(_open(), "vera")
    auth.set_role(console_db, "vera", "operator")
    at = _page(at.run(), "sre_switches")  # her next click shows the SRE pages
    assert not at.exception, at.exception
    at.selectbox(key="sw_kind").select("degrade")
    at.selectbox(key="sw_target").select("notification").run()
    at.text_input(key="sw_reason").input("notification slow")
    at.number_input(key="sw_hours").set_value(1.0).run()
    at.button(key="sw_apply").click().run()
    assert not at.exception, at.exception
    assert [(r["actor"], r["role"]) for r in _actions(console_db, "switch.propose")] == [
        ("vera", "operator")
    ]


@pytest.mark.parametrize("change", ["password", "disable", "remove"])
def test_reset_disable_remove_end_the_open_session(console_db, change):
    """Old code: the session went on as if nothing happened."""
    at = _sign_in(_open(), "otto")
    assert _signed_in(at)
    if change == "password":
        auth.set_password(console_db, "otto", "a-new-password-1")
    elif change == "disable":
        auth.disable_user(console_db, "otto")
    else:
        auth.remove_user(console_db, "otto")
    at = _page(at, "oncall_depmap")
    assert not at.exception, at.exception
    assert not _signed_in(at)
    assert at.text_input(key="login_username") is not None
    assert any("session has ended" in i.value for i in at.info)
    assert "user" not in at.session_state
    with console_db.connect() as conn:
        assert conn.execute(sa.text("select count(*) from console_sessions")).scalar_one() == 0


def test_disabled_user_cannot_sign_in_until_enabled(console_db):
    auth.disable_user(console_db, "otto")
    at = _sign_in(_open(), "otto")
    assert not _signed_in(at)
    assert any("disabled" in e.value for e in at.error)
    at = _sign_in(at, "otto", "wrong-password-1")
    assert any("Invalid user name or password" in e.value for e in at.error)
    auth.enable_user(console_db, "otto")
    at = _sign_in(at, "otto")
    assert _signed_in(at)


def test_logout_ends_the_session_server_side(console_db):
    at = _sign_in(_open(), "vera")
    token = at.session_state["console_session"]
    assert auth.session_user(console_db, token, idle=IDLE).username == "vera"
    at.button(key="logout").click().run()
    assert not _signed_in(at)
    assert auth.session_user(console_db, token, idle=IDLE) is None
    assert [r["detail"]["via"] for r in _actions(console_db, "logout")] == ["local"]


def test_sidebar_escapes_the_user_name(console_db):
    """Old code: the name went into the caption's Markdown as it was."""
    for i, name in enumerate(HOSTILE):
        auth.create_user(console_db, name, PASSWORD, "viewer")
        at = _sign_in(_open(), name)
        assert not at.exception, at.exception
        caption = next(c.value for c in at.sidebar.caption if "Signed in as" in c.value)
        assert name not in caption and f"**{md(name)}**" in caption, i
        assert caption.count("**") == 2  # only ours, around the escaped name


def test_idle_minutes_setting_is_validated():
    from runtime.settings import Settings

    assert Settings.from_env({}).console_idle_minutes == 30
    assert Settings.from_env({"PAYWATCH_CONSOLE_IDLE_MINUTES": "45"}).console_idle_minutes == 45
    for bad in ("0", "721", "ten", "-5"):
        with pytest.raises(ValueError, match="PAYWATCH_CONSOLE_IDLE_MINUTES"):
            Settings.from_env({"PAYWATCH_CONSOLE_IDLE_MINUTES": bad})


def test_idle_timeout_from_the_setting_ends_the_session(console_db, monkeypatch):
    monkeypatch.setenv("PAYWATCH_CONSOLE_IDLE_MINUTES", "1")
    at = _sign_in(_open(), "vera")
    token = at.session_state["console_session"]
    with console_db.begin() as conn:  # the last click was two minutes ago
        conn.execute(
            sa.text("update console_sessions set last_seen_at = :t"),
            {"t": datetime.now(UTC) - timedelta(minutes=2)},
        )
    at = _page(at, "oncall_depmap")
    assert not _signed_in(at)
    assert auth.session_user(console_db, token, idle=IDLE) is None


# -- cookie, audit view, CLI ---------------------------------------------------------------


def test_cookie_snippet_is_strict_and_deletes():
    from console.pages import cookie_script

    set_ = cookie_script("tok-EN_1")
    assert "paywatch_session=tok-EN_1" in set_ and "SameSite=Strict" in set_
    assert "Path=/" in set_ and "'; Secure'" in set_
    assert f"Max-Age={int(auth.SESSION_LIFETIME.total_seconds())}" in set_
    gone = cookie_script(None)
    assert "paywatch_session=;" in gone and "Max-Age=0" in gone


def test_cli_disable_enable_remove_are_audited(console_db, monkeypatch):
    from runtime.cli import main

    monkeypatch.setenv("PAYWATCH_ACTOR", "root-on-host")
    assert main(["user", "disable", "--name", "otto"]) == 0
    assert auth.verify(console_db, "otto", PASSWORD) is None
    assert main(["user", "enable", "--name", "otto"]) == 0
    assert auth.verify(console_db, "otto", PASSWORD) is not None
    assert main(["user", "remove", "--name", "otto"]) == 0
    assert main(["user", "remove", "--name", "otto"]) == 2  # no such user
    assert main(["user", "disable", "--name", "ada"]) == 0
    assert main(["user", "disable", "--name", "adam"]) == 2  # the last enabled admin
    rows = [
        (r["actor"], r["role"], r["action"], r["target"], r["detail"]["ok"])
        for r in recent(console_db, 20)
    ][::-1]
    assert rows == [
        ("root-on-host", "cli", "user.disable", "user:otto", True),
        ("root-on-host", "cli", "user.enable", "user:otto", True),
        ("root-on-host", "cli", "user.remove", "user:otto", True),
        ("root-on-host", "cli", "user.remove", "user:otto", False),
        ("root-on-host", "cli", "user.disable", "user:ada", True),
        ("root-on-host", "cli", "user.disable", "user:adam", False),
    ]
