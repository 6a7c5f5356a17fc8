"""``paywatch alerts``: list, silence (matchers, comment and end required), unsilence, ack
and history against a database, as an on-call's shell would run them; each change audited
(role ``cli``); the engine honours what the CLI made. SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time

import pytest
import sqlalchemy as sa
from alert_series import FakeQuery, RecordingNotifier

from alerts import AlertEngine, QuerySpec, ThresholdRule


@pytest.fixture
def shell(db_url, monkeypatch):
    monkeypatch.setenv("PAYWATCH_DATABASE_URL", db_url)
    monkeypatch.setenv("PAYWATCH_ACTOR", "sre-sam")
    engine = sa.create_engine(db_url)
    yield engine
    engine.dispose()


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    from runtime.cli import main

    rc = main(["alerts", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


def _audit(engine) -> list:
    with engine.connect() as conn:
        q = "select actor, role, action, target, detail from console_audit order by id"
        return conn.execute(sa.text(q)).all()


def test_cli_silences_acks_and_shows_history(shell, capsys) -> None:
    q = FakeQuery()
    for res in ("redis", "coupon"):
        q.gauge("breaker", {"resource": res}, lambda t: 1.0)
    rule = ThresholdRule(
        "breaker_open", QuerySpec("latest", "breaker", by=("resource",)), ">=", 1, severity="page"
    )
    notifier = RecordingNotifier()
    eng = AlertEngine(
        shell,
        q,
        [rule],
        notifier=notifier,
        group_by=("rule", "resource"),
        group_wait=0,
        group_interval=0,
        repeat_interval=60,
    )
    t0 = time.time()
    eng.evaluate(now=t0)
    assert len(notifier.sent) == 2

    rc, out, _ = _run(capsys, "list")
    listed = {a["labels"]["resource"]: a for a in json.loads(out)}
    assert rc == 0 and set(listed) == {"redis", "coupon"}
    assert listed["redis"]["state"] == "firing" and listed["redis"]["silenced_by"] is None

    # refused: no end, bad matcher, no matcher; nothing written, the refusals audited
    base = ("silence", "--comment", "failover drill")
    rc, _, err = _run(capsys, *base, "-m", "resource=redis")
    assert rc == 2 and "needs an end" in err
    rc, _, err = _run(capsys, *base, "-m", "resource=~(", "--for", "1h")
    assert rc == 2 and "bad regex" in err
    rc, _, err = _run(capsys, *base, "-m", "resource!=coupon", "--for", "1h")
    assert rc == 2 and "absent label does not match" in err
    rc, _, err = _run(capsys, *base, "--for", "1h")
    assert rc == 2 and "at least one matcher" in err
    with pytest.raises(SystemExit) as exc:  # --comment is required by the parser
        _run(capsys, "silence", "-m", "resource=redis", "--for", "1h")
    assert exc.value.code == 2
    rc, out, _ = _run(capsys, "silences")
    assert json.loads(out) == []

    rc, out, _ = _run(capsys, *base, "-m", "alertname=breaker_open", "-m", "resource=redis")
    assert rc == 2  # still no end
    rc, out, _ = _run(
        capsys, *base, "-m", "alertname=breaker_open", "-m", "resource=redis", "--for", "2h"
    )
    assert rc == 0, out
    made = json.loads(out)
    assert made["creator"] == "sre-sam" and made["comment"] == "failover drill"
    assert made["matchers"] == {"alertname": "breaker_open", "resource": "redis"}
    rc, out, _ = _run(capsys, "list")
    assert {a["labels"]["resource"]: a["silenced_by"] for a in json.loads(out)} == {
        "redis": made["id"],
        "coupon": None,
    }

    coupon = listed["coupon"]["fingerprint"]
    rc, _, err = _run(capsys, "ack", coupon[:10], "--comment", " ")
    assert rc == 2 and "comment" in err
    rc, out, _ = _run(capsys, "ack", coupon[:10], "--comment", "coupon team paged")
    assert rc == 0 and json.loads(out)["fingerprint"] == coupon

    # the engine honours both: after the repeat interval neither is notified again
    eng.evaluate(now=time.time() + 120)
    assert len(notifier.sent) == 2

    rc, out, _ = _run(capsys, "history", "--fingerprint", coupon)
    hist = json.loads(out)
    assert [t["to"] for t in hist["transitions"]] == ["firing"]
    assert [n["status"] for n in hist["notifications"]] == ["acked", "sent"]
    rc, out, _ = _run(capsys, "history")
    assert {n["status"] for n in json.loads(out)["notifications"]} == {"sent", "silenced", "acked"}

    rc, out, _ = _run(capsys, "unsilence", str(made["id"]))
    assert rc == 0
    rc, out, _ = _run(capsys, "silences")
    assert json.loads(out) == []
    rc, _, err = _run(capsys, "unsilence", "9999")
    assert rc == 2 and "no silence" in err

    audit = [(a.actor, a.role, a.action, json.loads(a.detail)["ok"]) for a in _audit(shell)]
    assert audit == [
        ("sre-sam", "cli", "alert.silence", False),
        ("sre-sam", "cli", "alert.silence", False),
        ("sre-sam", "cli", "alert.silence", False),
        ("sre-sam", "cli", "alert.silence", False),
        ("sre-sam", "cli", "alert.silence", False),
        ("sre-sam", "cli", "alert.silence", True),
        ("sre-sam", "cli", "alert.ack", False),
        ("sre-sam", "cli", "alert.ack", True),
        ("sre-sam", "cli", "alert.unsilence", True),
        ("sre-sam", "cli", "alert.unsilence", False),
    ]
