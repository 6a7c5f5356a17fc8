"""Notifiers against real local HTTP receivers (uvicorn on 127.0.0.1).

The webhook receiver verifies signatures with paycore's own verifier, which proves the
alerts package signs exactly like the channel traffic without importing paycore.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime

import pytest
import sqlalchemy as sa
from alert_series import T0, FakeQuery
from conftest import LiveServer, free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alerts import (
    Alert,
    AlertEngine,
    AlertmanagerNotifier,
    MultiNotifier,
    Notification,
    NotifyError,
    QuerySpec,
    ThresholdRule,
    WebhookNotifier,
)
from alerts.schema import AlertNotification
from paycore.channels.signing import verify_headers

SECRET = "whsec-test-4f1c9a0e"


class Receiver:
    """Answers ``fail`` with the given status for the first ``fail_first`` POSTs."""

    def __init__(self, fail_first: int = 0, status: int = 503) -> None:
        self.fail_first, self.status = fail_first, status
        self.calls = 0
        self.bodies: list = []
        self.verified: list[bool] = []
        self.paths: list[str] = []

    async def handle(self, request: Request) -> Response:
        body = await request.body()
        self.calls += 1
        self.paths.append(request.url.path)
        self.verified.append(verify_headers(SECRET, request.headers, body))
        if self.calls <= self.fail_first:
            return Response("unavailable", status_code=self.status)
        self.bodies.append(json.loads(body))
        return JSONResponse({"ok": True})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/hook", self.handle, methods=["POST"]),
                Route("/api/v2/alerts", self.handle, methods=["POST"]),
            ]
        )


def alert(state: str = "firing", **labels: str) -> Alert:
    labels = {"alertname": "breaker_open", "severity": "page", "resource": "redis", **labels}
    return Alert(
        "f" * 64,
        "breaker_open",
        labels,
        {"summary": "breaker for redis is open"},
        "page",
        state,
        2.0,
        T0,
        T0 + 60,
        T0 + 600 if state == "resolved" else None,
        T0 + 600,
    )


def note(*alerts: Alert) -> Notification:
    status = "firing" if any(a.state == "firing" for a in alerts) else "resolved"
    labels = {"rule": "breaker_open", "severity": "page"}
    return Notification('{rule="breaker_open",severity="page"}', labels, status, alerts, T0 + 600)


def test_webhook_failing_three_times_is_delivered_on_the_fourth_attempt() -> None:
    rx = Receiver(fail_first=3)
    sleeps: list[float] = []
    with LiveServer(rx.app()) as srv:
        hook = WebhookNotifier(srv.url + "/hook", SECRET, sleep=sleeps.append, jitter=lambda: 1.0)
        try:
            d = hook.send(note(alert()))
        finally:
            hook.close()
    assert (d.status, d.attempts, d.last_error) == ("sent", 4, "HTTP 503")
    assert sleeps == [0.5, 1.0, 2.0]  # exponential (jitter pinned to its maximum)
    assert rx.calls == 4 and all(rx.verified)  # every attempt signed afresh, all verify
    (body,) = rx.bodies
    assert body["version"] == "1" and body["status"] == "firing"
    assert body["group_key"] == '{rule="breaker_open",severity="page"}'
    (a,) = body["alerts"]
    assert a["labels"]["resource"] == "redis" and a["starts_at"] == T0 + 60
    assert a["annotations"] == {"summary": "breaker for redis is open"}


def test_jitter_keeps_the_delay_between_half_and_all_of_the_step() -> None:
    hook = WebhookNotifier("http://127.0.0.1:9/hook", SECRET, backoff=1.0, max_backoff=8)
    for attempt, step in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (7, 8.0)]:
        assert step / 2 <= hook.delay(attempt) <= step


def test_client_errors_are_not_retried_and_unreachable_receivers_are() -> None:
    rx = Receiver(fail_first=99, status=400)
    with LiveServer(rx.app()) as srv:
        hook = WebhookNotifier(srv.url + "/hook", SECRET, sleep=lambda s: None)
        d = hook.send(note(alert()))
        hook.close()
    assert (d.status, d.attempts, d.last_error) == ("failed", 1, "HTTP 400")
    dead = WebhookNotifier(
        f"http://127.0.0.1:{free_port()}/hook", SECRET, retries=2, sleep=lambda s: None, timeout=1
    )
    d = dead.send(note(alert()))
    dead.close()
    assert (
        d.status == "failed" and d.attempts == 3 and d.last_error == "no answer: NewConnectionError"
    )
    with pytest.raises(NotifyError, match="3 attempt"):
        WebhookNotifier(dead.url, SECRET, retries=2, sleep=lambda s: None).deliver(note(alert()))


def test_retry_after_stretches_the_wait_and_a_slow_receiver_times_out() -> None:
    import asyncio

    calls: list[float] = []

    async def busy(request: Request) -> Response:
        calls.append(1)
        if len(calls) == 1:
            return Response("slow down", status_code=429, headers={"Retry-After": "7"})
        await asyncio.sleep(1.0)  # past the notifier's 0.3 s timeout
        return JSONResponse({"ok": True})

    sleeps: list[float] = []
    app = Starlette(routes=[Route("/hook", busy, methods=["POST"])])
    with LiveServer(app) as srv:
        hook = WebhookNotifier(
            srv.url + "/hook",
            SECRET,
            retries=1,
            sleep=sleeps.append,
            jitter=lambda: 0.0,
            timeout=0.3,
        )
        d = hook.send(note(alert()))
        hook.close()
    assert sleeps == [7.0]  # Retry-After (7 s) over the 0.25 s backoff
    assert (d.status, d.attempts, d.last_error) == ("failed", 2, "timed out after 0.3s")


def test_secrets_never_reach_logs_errors_or_repr(caplog) -> None:
    url_secret = "tok-ABCDEF123456"
    caplog.set_level(logging.DEBUG)
    hook = WebhookNotifier(
        f"http://user:pw-XYZ@127.0.0.1:{free_port()}/hook?token={url_secret}",
        SECRET,
        retries=1,
        sleep=lambda s: None,
        timeout=1,
    )
    d = hook.send(note(alert()))
    hook.close()
    text = caplog.text + repr(hook) + d.last_error + d.payload
    for secret in (SECRET, url_secret, "pw-XYZ"):
        assert secret not in text
    assert "attempt 1/2 failed" in caplog.text


@pytest.fixture
def db(migrated_db):
    return migrated_db.engine


def breaker_engine(db, notifier, **kw) -> AlertEngine:
    q = FakeQuery()
    q.gauge("paywatch_breaker_state", {"resource": "redis"}, lambda t: 2.0)
    rule = ThresholdRule(
        "breaker_open",
        QuerySpec("latest", "paywatch_breaker_state", by=("resource",)),
        ">=",
        2,
        severity="page",
        annotations={"summary": "{{ $labels.resource }} open"},
    )
    return AlertEngine(db, q, [rule], notifier=notifier, group_wait=0, **kw)


def rows(db) -> list[tuple]:
    with db.connect() as conn:
        q = sa.select(
            AlertNotification.receiver,
            AlertNotification.status,
            AlertNotification.attempts,
            AlertNotification.last_error,
            AlertNotification.at,
        ).order_by(AlertNotification.id)
        return [tuple(r) for r in conn.execute(q)]


def test_engine_records_every_attempt_of_a_failing_webhook(db) -> None:
    rx = Receiver(fail_first=3)
    sleeps: list[float] = []
    with LiveServer(rx.app()) as srv:
        hook = WebhookNotifier(srv.url + "/hook", SECRET, sleep=sleeps.append)
        eng = breaker_engine(db, hook)
        result = eng.evaluate(now=T0)
        hook.close()
    assert [(d.status, d.attempts) for d in result.deliveries] == [("sent", 4)]
    assert rows(db) == [("webhook", "sent", 4, "HTTP 503", T0)]
    assert len(sleeps) == 3 and all(rx.verified)
    assert rx.bodies[0]["alerts"][0]["annotations"] == {"summary": "redis open"}
    (a,) = eng.active()
    assert a.last_notified == T0


def test_engine_retries_a_failed_group_after_group_interval(db) -> None:
    rx = Receiver(fail_first=6, status=500)
    with LiveServer(rx.app()) as srv:
        hook = WebhookNotifier(srv.url + "/hook", SECRET, retries=2, sleep=lambda s: None)
        eng = breaker_engine(db, hook, group_interval=300)
        eng.evaluate(now=T0)  # attempts 1-3 fail
        eng.evaluate(now=T0 + 60)  # within group_interval: no new attempt
        eng.evaluate(now=T0 + 300)  # attempts 4-6 fail
        eng.evaluate(now=T0 + 600)  # attempt 7 succeeds
        eng.evaluate(now=T0 + 660)  # delivered: nothing more
        hook.close()
    assert rows(db) == [
        ("webhook", "failed", 3, "HTTP 500", T0),
        ("webhook", "failed", 3, "HTTP 500", T0 + 300),
        ("webhook", "sent", 1, "", T0 + 600),
    ]
    assert rx.calls == 7


def test_alertmanager_v2_payload() -> None:
    rx = Receiver()
    with LiveServer(rx.app()) as srv:
        am = AlertmanagerNotifier(
            srv.url + "/",
            console_url="http://console:8501/",
            runbook_base_url="https://docs.example/runbook.md",
            env="prod",
            resend_interval=60,
            sleep=lambda s: None,
        )
        firing = am.send(note(alert()))
        resolved = am.send(note(alert("resolved")))
        am.close()
    assert firing.status == resolved.status == "sent"
    assert rx.paths == ["/api/v2/alerts", "/api/v2/alerts"]
    for body, state in zip(rx.bodies, ("firing", "resolved"), strict=True):
        assert isinstance(body, list) and len(body) == 1
        (item,) = body
        assert set(item) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
        assert item["labels"] == {
            "alertname": "breaker_open",
            "severity": "page",
            "resource": "redis",
            "service": "paywatch",
            "env": "prod",
        }
        assert item["generatorURL"] == "http://console:8501/oncall_alerts?alert=" + "f" * 64
        assert item["annotations"]["runbook_url"] == "https://docs.example/runbook.md#breaker_open"
        assert item["startsAt"].endswith("Z") and item["endsAt"].endswith("Z")
        starts = datetime.fromisoformat(item["startsAt"]).timestamp()
        ends = datetime.fromisoformat(item["endsAt"]).timestamp()
        assert starts == T0 + 60
        # firing: four re-send intervals ahead (it expires unless re-sent); resolved: its end
        assert ends == (T0 + 600 + 240 if state == "firing" else T0 + 600)


def test_multi_notifier_records_one_row_per_receiver(db) -> None:
    hook_rx, am_rx = Receiver(), Receiver(fail_first=1)
    with LiveServer(hook_rx.app()) as a, LiveServer(am_rx.app()) as b:
        multi = MultiNotifier(
            [
                WebhookNotifier(a.url + "/hook", SECRET),
                AlertmanagerNotifier(b.url, sleep=lambda s: None),
            ]
        )
        breaker_engine(db, multi).evaluate(now=T0)
        multi.close()
    assert sorted(r[:3] for r in rows(db)) == [("alertmanager", "sent", 2), ("webhook", "sent", 1)]
    assert len(hook_rx.bodies) == len(am_rx.bodies) == 1
