"""paywatch's silences mirrored into a REAL Alertmanager (0.25, the Debian package).

A silence made in paywatch appears in ``/api/v2/silences`` with the same matchers (all
four operators), the silenced alert is still sent and Alertmanager marks it silenced by
that silence; ending the silence in paywatch expires it in Alertmanager. Syncing twice
creates nothing twice; an Alertmanager that was down, or restarted on an empty storage,
gets the silence at the next sync. SQLite and PostgreSQL.
"""

from __future__ import annotations

import time

import httpx
import pytest
from test_alertmanager import Alertmanager, Gauge, am, until  # noqa: F401

from alerts import AlertEngine, AlertmanagerNotifier, QuerySpec, ThresholdRule
from alerts.am_silences import paywatch_id
from alerts.silences import parse_silence_matchers

pytestmark = pytest.mark.timeout(240)


def am_silences(server: Alertmanager, state: str | None = "active") -> list[dict]:
    resp = httpx.get(server.url + "/api/v2/silences", timeout=5)
    resp.raise_for_status()
    return [
        s
        for s in resp.json()
        if paywatch_id(s) is not None and (state is None or s["status"]["state"] == state)
    ]


def breaker(server: Alertmanager) -> dict | None:
    found = server.alerts()
    return found[0] if found else None


def engine_for(db, server: Alertmanager) -> tuple[AlertEngine, AlertmanagerNotifier]:
    notifier = AlertmanagerNotifier(
        server.url, env="e2e", resend_interval=2.0, retries=0, mirror_silences=True
    )
    rule = ThresholdRule(
        "breaker_open",
        QuerySpec("latest", "paywatch_breaker_state", by=("resource",)),
        ">=",
        2,
        severity="page",
        annotations={"summary": "breaker open", "runbook": "docs/runbook.md#breaker_open"},
    )
    return AlertEngine(db.engine, Gauge(), [rule], notifier=notifier), notifier


def test_a_silence_is_mirrored_marks_the_alert_and_expires_with_unsilence(
    am: Alertmanager,  # noqa: F811
    migrated_db,
) -> None:
    engine, notifier = engine_for(migrated_db, am)
    evaluate = lambda: engine.evaluate()  # noqa: E731
    try:
        until(lambda: breaker(am) is not None, 30, evaluate)
        assert breaker(am)["status"]["state"] == "active"  # type: ignore[index]

        eq, extra = parse_silence_matchers(
            ["resource=redis", "alertname=~breaker_.*", "env!=prod", "severity!~ticket|info"]
        )
        s = engine.silences.create(eq, "ann", "redis maintenance", time.time() + 3600, extra=extra)
        # the alert is still sent (not left out) and Alertmanager shows it silenced
        until(lambda: breaker(am)["status"]["state"] == "suppressed", 30, evaluate)  # type: ignore[index]
        (mirrored,) = am_silences(am)
        assert paywatch_id(mirrored) == s.id
        assert breaker(am)["status"]["silencedBy"] == [mirrored["id"]]  # type: ignore[index]
        assert mirrored["createdBy"] == "ann"
        assert mirrored["comment"].startswith("redis maintenance")
        got = {(m["name"], m["value"], m["isRegex"], m["isEqual"]) for m in mirrored["matchers"]}
        assert got == {
            ("resource", "redis", False, True),
            ("alertname", "breaker_.*", True, True),
            ("env", "prod", False, False),
            ("severity", "ticket|info", True, False),
        }
        mirror = engine.alertmanagers.mirrors["alertmanager"]  # type: ignore[union-attr]
        assert mirror.ids == {s.id: mirrored["id"]}

        # idempotent: more syncs create nothing more
        for _ in range(3):
            evaluate()
        assert len(am_silences(am, None)) == 1

        # unsilence in paywatch: expired in Alertmanager, the alert active again
        engine.silences.expire(s.id)
        until(lambda: not am_silences(am), 30, evaluate)
        assert [x["id"] for x in am_silences(am, "expired")] == [mirrored["id"]]
        until(lambda: breaker(am)["status"]["state"] == "active", 30, evaluate)  # type: ignore[index]
        assert mirror.ids == {}
    finally:
        notifier.close()
        if engine.alertmanagers is not None:
            engine.alertmanagers.close()


def test_alertmanager_down_or_restarted_gets_the_silence_at_the_next_sync(
    am: Alertmanager,  # noqa: F811
    migrated_db,
) -> None:
    engine, notifier = engine_for(migrated_db, am)
    mirror = engine.alertmanagers.mirrors["alertmanager"]  # type: ignore[union-attr]
    try:
        am.stop()
        s = engine.silences.create({"resource": "redis"}, "ann", "known", time.time() + 3600)
        engine.evaluate()  # Alertmanager down: logged, nothing raised
        assert mirror.last_error is not None and mirror.ids == {}
        am.start()  # an empty storage
        until(lambda: len(am_silences(am)) == 1, 30, engine.evaluate)
        assert mirror.last_error is None and set(mirror.ids) == {s.id}
        am.stop()
        am.start()  # lost again: created again
        until(lambda: len(am_silences(am)) == 1, 30, engine.evaluate)
        until(
            lambda: (breaker(am) or {}).get("status", {}).get("state") == "suppressed",
            30,
            engine.evaluate,
        )
    finally:
        notifier.close()
        if engine.alertmanagers is not None:
            engine.alertmanagers.close()


def test_a_silence_alertmanager_refuses_keeps_its_alerts_out_and_the_others_mirrored(
    am: Alertmanager,  # noqa: F811
    migrated_db,
) -> None:
    engine, notifier = engine_for(migrated_db, am)
    mirror = engine.alertmanagers.mirrors["alertmanager"]  # type: ignore[union-attr]
    try:
        # a lookahead: Python's re takes it, Alertmanager's RE2 does not
        eq, extra = parse_silence_matchers(["resource=~(?=red)redis"])
        bad = engine.silences.create(eq, "ann", "odd regex", time.time() + 3600, extra=extra)
        good = engine.silences.create({"resource": "db"}, "bob", "db work", time.time() + 3600)
        for _ in range(3):
            engine.evaluate()
            time.sleep(0.3)
        assert set(mirror.refused) == {bad.id} and set(mirror.ids) == {good.id}
        assert [paywatch_id(s) for s in am_silences(am)] == [good.id]
        assert breaker(am) is None  # silenced in paywatch, unknown to Alertmanager: held back
        engine.silences.expire(bad.id)
        until(lambda: breaker(am) is not None, 30, engine.evaluate)
        assert breaker(am)["status"]["state"] == "active"  # type: ignore[index]
        assert mirror.refused == {}
    finally:
        notifier.close()
        if engine.alertmanagers is not None:
            engine.alertmanagers.close()
