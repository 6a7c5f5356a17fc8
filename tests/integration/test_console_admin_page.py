"""AppTest of the admin Users page: gating, create, role change, password reset, audit."""

from __future__ import annotations

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
    from console.migrate import upgrade_database
    from paycore import Database, PayCore

    db = Database(sqlite_url)
    upgrade_database(db.engine)
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
