"""Login throttling (issue 18, point 5), on SQLite and PostgreSQL and through the console's
login form: failures wait longer and longer, per user and per client, across processes, and
refused sign-ins look the same to operators.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pytest

pytest.importorskip("streamlit")

from console_shell import PASSWORD, T0, _actions, _open, _sign_in, _signed_in, console_db, engine  # noqa: F401 - fixture

from console import auth  # noqa: E402
from console.audit import recent  # noqa: E402

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
