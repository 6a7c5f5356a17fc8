"""Signing in to the admin API: console users and sessions, the console's login throttle and
audit rows; no token, a bad or ended one is a 401; no password or token is ever stored or
logged."""

from __future__ import annotations

import logging

from admin_api_app import PASSWORD, audit_rows, stack  # noqa: F401 - fixture


def test_no_token_or_a_bad_one_is_a_401(stack):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic eDp5"}):
        answer = stack.http.get("/admin/v1/switches", headers=headers)
        assert answer.status_code == 401, headers
        error = answer.json()["error"]
        assert error["code"] == "unauthenticated" and "/admin/v1/login" in error["message"]
        assert answer.headers["www-authenticate"] == "Bearer"


def test_login_opens_a_console_session_and_logout_ends_it(stack, caplog):
    caplog.set_level(logging.DEBUG)
    answer = stack.login("olga")
    assert answer.status_code == 200
    body = answer.json()
    token = body["token"]
    assert (body["username"], body["role"]) == ("olga", "operator")
    assert body["expires_in_s"] == 12 * 3600 and body["idle_timeout_s"] == 30 * 60
    headers = {"Authorization": f"Bearer {token}"}
    assert stack.http.get("/admin/v1/me", headers=headers).json() == {
        "username": "olga",
        "role": "operator",
    }
    login = audit_rows(stack.engine, "login")[0]
    assert login["actor"] == "olga" and login["detail"]["channel"] == "admin_api"
    assert login["detail"]["client"] == "10.1.2.3"
    assert stack.http.post("/admin/v1/logout", headers=headers).status_code == 204
    assert stack.http.get("/admin/v1/me", headers=headers).status_code == 401
    assert audit_rows(stack.engine, "logout")[0]["actor"] == "olga"
    with stack.engine.connect() as conn:
        stored = " ".join(
            str(v)
            for table in ("console_sessions", "console_audit", "console_users")
            for row in conn.exec_driver_sql(f"select * from {table}").all()
            for v in row
        )
    assert token not in stored and PASSWORD not in stored
    assert token not in caplog.text and PASSWORD not in caplog.text


def test_a_role_change_or_a_disabled_user_applies_at_the_next_call(stack):
    from console.users import disable_user, set_role

    olga = stack.as_user("olga")
    weak = {"kind": "degrade", "target": "risk", "reason": "slow", "ttl_s": 60}
    set_role(stack.engine, "olga", "viewer")
    assert stack.http.post("/admin/v1/switches", json=weak, headers=olga).status_code == 403
    disable_user(stack.engine, "olga")
    assert stack.http.get("/admin/v1/me", headers=olga).status_code == 401
    assert stack.login("olga").status_code == 401  # disabled: the same refusal as a bad one


def test_failed_logins_are_refused_alike_audited_and_throttled(stack):
    """The console's throttle: three failures are free, the fourth waits (429 Retry-After)."""
    unknown = stack.login("nobody", "whatever-pass")
    wrong = stack.login("olga", "wrong-password")
    assert unknown.status_code == wrong.status_code == 401
    assert unknown.json()["error"]["message"] == wrong.json()["error"]["message"]
    assert stack.login("olga", "wrong-password").status_code == 401
    throttled = stack.login("olga", PASSWORD)  # the client's third failure made it wait
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) >= 1
    failed = audit_rows(stack.engine, "login_failed")
    assert len(failed) == 3 and {r["detail"]["client"] for r in failed} == {"10.1.2.3"}
    assert {r["detail"]["_admin"]["cause"] for r in failed} == {"unknown_user", "wrong_password"}
    assert audit_rows(stack.engine, "login_throttled")[0]["detail"]["via"] == "admin_api"
    blob = str(failed) + str(audit_rows(stack.engine, "login_throttled"))
    assert "wrong-password" not in blob and PASSWORD not in blob


def test_a_body_that_is_not_a_login_is_a_4xx(stack):
    assert stack.http.post("/admin/v1/login", json={"username": "olga"}).status_code == 422
    assert stack.http.post("/admin/v1/login", content=b"[").status_code == 400
    extra = {"username": "olga", "password": PASSWORD, "otp": "1"}
    assert stack.http.post("/admin/v1/login", json=extra).status_code == 422
