"""Roles that hold, sessions and login throttling (issue 18, points 2 and 5).

Storage-level tests run on SQLite and PostgreSQL; the console shell is driven with
Streamlit's AppTest over a migrated SQLite file, signing in through the login form.
Single sign-on needs an identity provider: its decisions are tested through the functions
the shell calls with the identity (``oidc_action``, ``sign_in``, ``sign_out``); the
``st.login``/``st.logout`` round trip itself is not exercised here.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest  # noqa: E402

from console import auth  # noqa: E402
from console.audit import recent  # noqa: E402
from console.safe import md  # noqa: E402

APP = str(Path(__file__).resolve().parents[2] / "console" / "app.py")
PAGES = Path(__file__).resolve().parents[2] / "console" / "pages"
PASSWORD = "correct-horse-battery"
HOSTILE = ["![px](http://127.0.0.1:9/p.png)", "**bold**", "<img src=x onerror=alert(1)>"]
IDLE = timedelta(minutes=30)
T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


@pytest.fixture
def engine(db_url):
    eng = sa.create_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def console_db(sqlite_url, tmp_path, monkeypatch):
    """A migrated SQLite file the console process (AppTest) runs on, with users."""
    url = sqlite_url
    monkeypatch.setenv("PAYWATCH_DATABASE_URL", url)
    monkeypatch.setenv("PAYWATCH_VAR_DIR", str(tmp_path / "var"))
    for name in ("PROMETHEUS_URL", "REDIS_URL", "CONSOLE_IDLE_MINUTES"):
        monkeypatch.delenv(f"PAYWATCH_{name}", raising=False)
    eng = sa.create_engine(url)
    for name, role in (
        ("vera", "viewer"),
        ("otto", "operator"),
        ("ada", "admin"),
        ("adam", "admin"),
    ):
        auth.create_user(eng, name, PASSWORD, role)
    yield eng
    eng.dispose()


# -- helpers -----------------------------------------------------------------------------


def _shell() -> None:
    """The console shell (console/app.py) run as AppTest's main script, so every run goes
    through it (AppTest.from_file(app.py) runs later pages alone, Streamlit's legacy mode)."""
    import runpy
    from pathlib import Path

    import console

    runpy.run_path(str(Path(console.__file__).with_name("app.py")), run_name="__main__")


def _open(shell: bool = True) -> AppTest:
    at = AppTest.from_function(_shell) if shell else AppTest.from_file(APP)
    at.default_timeout = 60
    return at.run()


def _sign_in(at: AppTest, name: str, password: str = PASSWORD) -> AppTest:
    at.text_input(key="login_username").input(name)
    at.text_input(key="login_password").input(password)
    return at.button[0].click().run()  # the login form's submit button


def _page(at: AppTest, page: str) -> AppTest:
    return at.switch_page(str(PAGES / f"{page}.py")).run()


def _texts(at: AppTest) -> str:
    parts = [e.value for e in at.title] + [e.value for e in at.markdown]
    parts += [e.value for e in at.caption] + [e.value for e in at.error]
    parts += [e.value for e in at.warning] + [e.value for e in at.info]
    parts += [e.value for e in at.success] + [e.value for e in at.subheader]
    return "\n".join(str(p) for p in parts)


def _actions(engine, action: str) -> list[dict]:
    return recent(engine, 500, action=action, admin=True)


def _switches(engine) -> int:
    with engine.connect() as conn:
        return conn.execute(sa.text("select count(*) from stability_switches")).scalar_one()


def _signed_in(at: AppTest) -> bool:
    return any("Signed in as" in c.value for c in at.sidebar.caption)


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
    at.selectbox(key="sw_target").select("coupon").run()
    at.text_input(key="sw_reason").input("coupon slow")
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
    at.selectbox(key="sw_target").select("coupon").run()
    at.text_input(key="sw_reason").input("coupon slow")
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


# -- login throttling ---------------------------------------------------------------------


class FakeTime:
    """A clock that only ``sleep`` moves; records every wait."""

    def __init__(self) -> None:
        self.now, self.slept = T0, []

    def clock(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(round(seconds, 3))
        self.now += timedelta(seconds=seconds)


def _attempt(engine, t: FakeTime, name: str, password: str, client: str = "10.0.0.9"):
    before = len(t.slept)
    result = auth.attempt_login(engine, name, password, client=client, sleep=t.sleep, clock=t.clock)
    return result, sum(t.slept[before:])


def test_failures_wait_longer_and_longer(engine):
    """Old code: every attempt was answered at once (no throttle existed)."""
    auth.create_user(engine, "olive", PASSWORD, "operator")
    t = FakeTime()
    waits = [_attempt(engine, t, "olive", "wrong-password")[1] for _ in range(9)]
    assert waits == [0, 0, 0, 1, 2, 4, 8, 16, 30]
    result, waited = _attempt(engine, t, "olive", PASSWORD)  # held 30 s (cap), then in
    assert result.user == auth.User("olive", "operator") and waited == 30
    assert _attempt(engine, t, "olive", "wrong-password")[1] == 30  # the client still counts
    assert len(_actions(engine, "login_failed")) == 10


def test_throttle_is_per_user_and_per_client(engine):
    auth.create_user(engine, "olive", PASSWORD, "operator")
    t = FakeTime()
    for i in range(5):  # five failures for olive, each from a different client
        _attempt(engine, t, "olive", "wrong-password", client=f"10.0.1.{i}")
    assert _attempt(engine, t, "olive", "wrong-password", client="10.0.2.1")[1] == 4
    for i in range(5):  # five failures from one client, each for a different name
        _attempt(engine, t, f"ghost{i}", "wrong-password", client="10.0.3.1")
    assert _attempt(engine, t, "ghost9", "wrong-password", client="10.0.3.1")[1] == 4
    assert _attempt(engine, t, "ghost9", "wrong-password", client="10.0.4.1")[1] == 0
    t.now += timedelta(minutes=16)  # forgotten after 15 quiet minutes
    assert _attempt(engine, t, "olive", "wrong-password", client="10.0.2.1")[1] == 0


def test_concurrent_attempts_take_turns_across_processes(db_url):
    """Eight attempts at once from two console processes (two engines) on one user: the
    passwords are checked one turn at a time, not all at once (each check's audit row
    is written right after it)."""
    from paycore import Database

    dbs = [Database(db_url), Database(db_url)]
    engine = dbs[0].engine
    auth.create_user(engine, "olive", PASSWORD, "operator")
    throttle = auth.Throttle(free=1, base_s=0.5, cap_s=0.5)
    threads = [
        threading.Thread(
            target=auth.attempt_login,
            args=(dbs[i % 2].engine, "olive", "wrong-password"),
            kwargs={"client": f"10.0.0.{i}", "throttle": throttle},
        )
        for i in range(8)
    ]
    try:
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        checked = sorted(r["at"] for r in _actions(engine, "login_failed"))
    finally:
        for db in dbs:
            db.dispose()
    gaps = [(b - a).total_seconds() for a, b in zip(checked, checked[1:], strict=False)]
    assert len(checked) == 8
    assert min(gaps) >= 0.4, gaps  # one check per 0.5 s turn, whoever asks


def test_refused_sign_ins_look_the_same_to_operators(engine):
    auth.create_user(engine, "olive", PASSWORD, "operator")
    auth.create_user(engine, "dora", PASSWORD, "viewer")
    auth.disable_user(engine, "dora")
    t = FakeTime()
    for name, password in (
        ("olive", "wrong-password"),
        ("nobody", "wrong-password"),
        ("dora", PASSWORD),
    ):
        assert _attempt(engine, t, name, password, client=f"c-{name}")[0].user is None
    seen = {r["actor"]: r for r in recent(engine, action="login_failed")}
    assert set(seen) == {"olive", "nobody", "dora"}
    details = [{k: v for k, v in r["detail"].items() if k != "client"} for r in seen.values()]
    assert all(d == details[0] for d in details), details
    assert details[0]["reason"] == auth.REFUSED and "_admin" not in details[0]
    admin = {
        r["actor"]: r["detail"]["_admin"]["cause"]
        for r in recent(engine, action="login_failed", admin=True)
    }
    assert admin == {"olive": "wrong_password", "nobody": "unknown_user", "dora": "disabled"}


def test_login_form_answers_later_after_three_failures(console_db):
    at = _open()
    took = []
    for _ in range(4):
        start = time.monotonic()
        at = _sign_in(at, "vera", "wrong-password")
        took.append(time.monotonic() - start)
        assert any("Invalid user name or password" in e.value for e in at.error)
    # the fourth waits its second (counted from the failure before it, so a little of it
    # may already have passed when this attempt started); the first three do not wait
    assert max(took[:3]) < 0.7 <= took[3], took
    assert any(c.value.startswith("Answered after 1 s") for c in at.caption), took
    assert len(_actions(console_db, "login_failed")) == 4
    at = _sign_in(at, "vera")  # the right password still gets in (after its wait)
    assert _signed_in(at)


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
