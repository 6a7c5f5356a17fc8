"""``paywatch alerts``: list, silence (matchers, comment and end required), unsilence, ack,
unack and history against a database, as an on-call's shell would run them; each change audited
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


def test_cli_unack_withdraws_with_who_and_why_and_the_alert_pages_again(shell, capsys) -> None:
    q = FakeQuery()
    q.gauge("breaker", {"resource": "coupon"}, lambda t: 1.0)
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
    eng.evaluate(now=time.time() - 120)
    (coupon,) = [a.fingerprint for a in eng.active()]
    rc, out, _ = _run(capsys, "ack", coupon[:10], "--comment", "coupon team paged")
    ack_id = json.loads(out)["id"]
    eng.evaluate(now=time.time())
    assert rc == 0 and len(notifier.sent) == 1  # acked: the overdue repeat is held

    with pytest.raises(SystemExit) as exc:  # why is required by the parser
        _run(capsys, "unack", coupon[:10])
    assert exc.value.code == 2
    rc, _, err = _run(capsys, "unack", coupon[:10], "--comment", " ")
    assert rc == 2 and "comment" in err
    rc, _, err = _run(capsys, "unack", "0" * 12, "--comment", "wrong alert")
    assert rc == 2 and "no alert" in err
    rc, out, _ = _run(capsys, "unack", coupon[:10], "--comment", "wrong alert", "--actor", "ann")
    assert rc == 0, out
    done = json.loads(out)
    assert (done["withdrawn"], done["fingerprint"], done["by"]) == ([ack_id], coupon, "ann")
    rc, _, err = _run(capsys, "unack", coupon, "--comment", "again")
    assert rc == 2 and "no acknowledgement of breaker_open is in force" in err
    rc, out, _ = _run(capsys, "list")
    assert [a["acked_by"] for a in json.loads(out)] == [None]

    eng.evaluate(now=time.time() + 1)  # the repeat is due: it pages again
    assert [n.status for n in notifier.sent] == ["firing", "firing"]
    rc, out, _ = _run(capsys, "history", "--fingerprint", coupon)
    acks = [(e["event"], e["by"], e["comment"], e["ack_id"]) for e in json.loads(out)["acks"]]
    assert acks == [
        ("ack withdrawn", "ann", "wrong alert", ack_id),
        ("acked", "sre-sam", "coupon team paged", ack_id),
    ]

    unacks = [a for a in _audit(shell) if a.action == "alert.unack"]
    assert (
        [(a.actor, a.role, a.target, json.loads(a.detail)["ok"]) for a in unacks]
        == [
            ("sre-sam", "cli", coupon[:10], False),  # a blank comment
            ("sre-sam", "cli", "0" * 12, False),
            ("ann", "cli", "breaker_open", True),
            ("sre-sam", "cli", coupon[:16], False),
        ]
    )
    ok = json.loads(unacks[2].detail)
    assert (ok["comment"], ok["ack_ids"], ok["fingerprint"]) == (
        "wrong alert",
        [ack_id],
        coupon[:10],
    )
