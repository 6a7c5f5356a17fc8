"""AppTest of the admin Users page: gating, create, role change, password reset, audit."""

from __future__ import annotations

from datetime import timedelta
from types import SimpleNamespace

import pytest

pytest.importorskip("streamlit.testing.v1")
from streamlit.testing.v1 import AppTest  # noqa: E402

from console.audit import recent  # noqa: E402
from console.auth import create_user, list_users, verify  # noqa: E402


def _page(platform, user: str, role: str) -> None:
    from console.pages.admin_users import render
    from console.reports.context import PageContext

    render(PageContext(platform, user, role))


@pytest.fixture
def platform(sqlite_url):
    from paycore import Database, PayCore

    db = Database(sqlite_url)
    core = PayCore(db)
    yield SimpleNamespace(paycore=core)
    core.lock.close()
    db.dispose()


def _app(platform, user: str, role: str) -> AppTest:
    return AppTest.from_function(_page, args=(platform, user, role), default_timeout=60).run()


def _button(at: AppTest, key: str):
    return next(b for b in at.button if b.key == key)


def test_only_admins_manage_users(platform):
    engine = platform.paycore.db.engine
    create_user(engine, "ann", "a-long-password", "admin")
    at = _app(platform, "mia", "manager")
    assert not at.exception
    assert any("Only admins" in e.value for e in at.error)
    assert not at.button and not at.dataframe
    assert [u["username"] for u in list_users(engine)] == ["ann"]


def test_admin_creates_a_user_changes_role_and_resets_password(platform):
    engine = platform.paycore.db.engine
    create_user(engine, "ann", "a-long-password", "admin")
    at = _app(platform, "ann", "admin")
    assert not at.exception
    at.text_input(key="user_new_name").input("otto")
    at.selectbox(key="user_new_role").select("operator")
    at.text_input(key="user_new_password").input("short")
    at.button[0].click().run()  # the form's submit button
    assert any("at least 8 characters" in e.value for e in at.error)
    assert [u["username"] for u in list_users(engine)] == ["ann"]

    at.text_input(key="user_new_name").input("otto")
    at.selectbox(key="user_new_role").select("operator")
    at.text_input(key="user_new_password").input("otto-password-1")
    at.button[0].click().run()
    assert not at.exception
    assert verify(engine, "otto", "otto-password-1").role == "operator"

    at.selectbox(key="user_target").select("otto")
    at.selectbox(key="user_role").select("manager")
    _button(at, "user_set_role").click().run()
    assert verify(engine, "otto", "otto-password-1").role == "manager"

    at.text_input(key="user_password").input("otto-new-password")
    _button(at, "user_reset_password").click().run()
    assert verify(engine, "otto", "otto-password-1") is None
    assert verify(engine, "otto", "otto-new-password").role == "manager"

    actions = {r["action"]: r for r in recent(engine)}
    assert {"user.create", "user.role", "user.password"} <= set(actions)
    assert actions["user.role"]["actor"] == "ann" and actions["user.role"]["target"] == "user:otto"
    assert all("otto-new-password" not in str(r["detail"]) for r in recent(engine))


def test_admin_cannot_demote_themself(platform):
    engine = platform.paycore.db.engine
    create_user(engine, "ann", "a-long-password", "admin")
    at = _app(platform, "ann", "admin")
    at.selectbox(key="user_target").select("ann")
    at.selectbox(key="user_role").select("viewer")
    _button(at, "user_set_role").click().run()
    assert any("cannot take the admin role" in e.value for e in at.error)
    assert verify(engine, "ann", "a-long-password").role == "admin"


HOSTILE = ["![px](http://127.0.0.1:9/p.png)", "**bold**", "<img src=x onerror=alert(1)>"]


def _shown(at: AppTest) -> list[str]:
    """Every string the page handed to Markdown (titles, text, alerts, widget labels)."""
    out = [
        e.value
        for e in (
            *at.title,
            *at.subheader,
            *at.markdown,
            *at.caption,
            *at.error,
            *at.warning,
            *at.info,
            *at.success,
        )
    ]
    out += [w.label for w in (*at.button, *at.checkbox, *at.selectbox, *at.text_input)]
    return [str(s) for s in out]


def test_admin_disables_enables_and_removes_a_user(platform):
    from console.auth import open_session, session_user

    engine = platform.paycore.db.engine
    create_user(engine, "ann", "a-long-password", "admin")
    create_user(engine, "otto", "otto-password-1", "operator")
    token = open_session(engine, "otto")
    at = _app(platform, "ann", "admin")
    at.selectbox(key="user_target").select("otto").run()
    _button(at, "user_disable").click().run()
    assert not at.exception, at.exception
    assert any("otto is disabled" in s.value for s in at.success)
    assert verify(engine, "otto", "otto-password-1") is None
    assert session_user(engine, token, idle=timedelta(minutes=30)) is None  # ended at once
    assert {u["username"]: u["status"] for u in list_users(engine)}["otto"] == "disabled"

    _button(at, "user_enable").click().run()
    assert verify(engine, "otto", "otto-password-1").role == "operator"

    _button(at, "user_remove").click().run()  # not confirmed
    assert any("Tick the box" in e.value for e in at.error)
    assert "otto" in {u["username"] for u in list_users(engine)}
    at.checkbox(key="user_remove_confirm").check()
    _button(at, "user_remove").click().run()
    assert not at.exception, at.exception
    assert [u["username"] for u in list_users(engine)] == ["ann"]
    done = [(r["action"], r["target"], r["detail"]["ok"]) for r in recent(engine)][::-1]
    assert done == [
        ("user.disable", "user:otto", True),
        ("user.enable", "user:otto", True),
        ("user.remove", "user:otto", True),
    ]


def test_admin_cannot_disable_or_remove_themself_nor_the_last_admin(platform):
    engine = platform.paycore.db.engine
    create_user(engine, "ann", "a-long-password", "admin")
    create_user(engine, "bob", "b-long-password", "admin")
    at = _app(platform, "ann", "admin")
    at.selectbox(key="user_target").select("ann").run()
    _button(at, "user_disable").click().run()
    assert any("cannot disable yourself" in e.value for e in at.error)
    at.checkbox(key="user_remove_confirm").check()
    _button(at, "user_remove").click().run()
    assert any("cannot remove yourself" in e.value for e in at.error)
    assert verify(engine, "ann", "a-long-password").role == "admin"
    # bob (signed in elsewhere) is the only other admin; ann may not be locked out by him
    bob = _app(platform, "bob", "admin")
    bob.selectbox(key="user_target").select("ann").run()
    _button(bob, "user_disable").click().run()  # ann disabled: bob is the last admin now
    bob.selectbox(key="user_target").select("bob").run()
    bob.selectbox(key="user_role").select("viewer")
    _button(bob, "user_set_role").click().run()
    assert any("cannot take the admin role" in e.value for e in bob.error)
    assert verify(engine, "bob", "b-long-password").role == "admin"


def test_hostile_user_names_are_inert_on_the_users_page(platform):
    """Old code: the success message and labels rendered the name as Markdown."""
    from console.safe import md

    engine = platform.paycore.db.engine
    create_user(engine, "ann", "a-long-password", "admin")
    for name in HOSTILE:
        create_user(engine, name, "a-long-password", "viewer")
    at = _app(platform, "ann", "admin")
    for name in HOSTILE:
        at.selectbox(key="user_target").select(name).run()
        at.selectbox(key="user_role").select("operator")
        _button(at, "user_set_role").click().run()
        assert not at.exception, at.exception
        shown = _shown(at)
        assert not [s for s in shown if name in s], name
        assert any(md(name) in s for s in shown), name
    at.text_input(key="user_new_name").input("**new**![x](http://127.0.0.1:9/x.png)")
    at.text_input(key="user_new_password").input("a-long-password")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert not [s for s in _shown(at) if "![x](" in s or "**new**" in s]


def test_sign_in_activity_shows_causes_to_admins_only(platform):
    from console.auth import attempt_login

    engine = platform.paycore.db.engine
    create_user(engine, "ann", "a-long-password", "admin")
    attempt_login(engine, "ann", "wrong-password", client="10.0.0.1")
    attempt_login(engine, "ghost", "wrong-password", client="10.0.0.2")
    at = _app(platform, "ann", "admin")
    assert not at.exception, at.exception
    activity = next(d.value for d in at.dataframe if "action" in d.value.columns)
    causes = " ".join(activity["detail"])
    assert "wrong_password" in causes and "unknown_user" in causes
    # the operators' audit view (recent() without admin) gives one reason for both
    operator = [r["detail"] for r in recent(engine, action="login_failed")]
    assert len(operator) == 2 and all("_admin" not in d for d in operator)
    assert operator[0]["reason"] == operator[1]["reason"]


def test_users_page_panels_fail_alone(platform):
    engine = platform.paycore.db.engine
    create_user(engine, "ann", "a-long-password", "admin")
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE console_audit")
    at = _app(platform, "ann", "admin")
    assert not at.exception, at.exception
    assert any("database is unavailable" in w.value for w in at.warning)
    assert any(d.value is not None and "username" in d.value.columns for d in at.dataframe)


def _merchants_page(platform, user: str, role: str) -> None:
    from console.pages.admin_merchants import render
    from console.reports.context import PageContext

    render(PageContext(platform, user, role))


def test_hostile_merchant_name_is_inert_on_the_merchants_page(platform):
    name = "![px](http://127.0.0.1:9/p.png) **bold** <img src=x onerror=alert(1)>"
    platform.paycore.merchants.onboard(
        name, products=[("goods", "physical")], pay_orgs=["SANDBOX_A"]
    )
    at = AppTest.from_function(
        _merchants_page, args=(platform, "ann", "admin"), default_timeout=60
    ).run()
    assert not at.exception, at.exception
    _button(at, "merchant_disable").click().run()
    assert not at.exception, at.exception
    assert not [s for s in _shown(at) if "![px](" in s or "**bold**" in s or "<img" in s]
