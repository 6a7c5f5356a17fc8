"""Notification delivery through the guard (``link.notify -> notification``, weak) against
real HTTP receivers and PostgreSQL: degraded or with its breaker open, nothing is sent
and every row stays pending with no attempt spent; the edge's timeout is the HTTP
timeout; the job's transactions are ``link.notify``'s database calls."""

from __future__ import annotations

import time

import pytest
from conftest import Clock, LiveServer, Shop
from test_notify_delivery import SECRET, T0, Receiver, notification, onboard

from paycore import Database, PayCore
from paycore.notify import NotificationDelivery
from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec
from stability.guard import Guard
from stability.switch_records import SwitchSnapshot


def notify_map(notify_ms: int = 500) -> DependencyMap:
    return DependencyMap(
        [
            ResourceSpec("link.notify", "link", core_link=True),
            ResourceSpec("database", "database"),
            ResourceSpec("notification", "service"),
        ],
        [
            EdgeSpec("link.notify", "database", "strong", 1000),
            EdgeSpec(
                "link.notify", "notification", "weak", notify_ms, fallback="outbox: deliver later"
            ),
        ],
    )


@pytest.fixture
def receiver():
    rcv = Receiver()
    with LiveServer(rcv.app) as server:
        rcv.url = server.url
        yield rcv


def setup(pg_url, receiver, mode: str, notify_ms: int = 500):
    guard = Guard(notify_map(notify_ms))
    core = PayCore(Database(pg_url), clock=Clock(T0))
    shop: Shop = onboard(core, f"{receiver.url}/{mode}")
    receiver.secrets.add(shop.notify_secret)
    shop.fund("u1", 1_000)  # trade.paid: one notification
    core.guard = guard  # the map here has only the notification link's edges
    delivery = NotificationDelivery(core.db, secret=SECRET, clock=core.clock, guard=guard)
    return core, guard, delivery


def _rows(core):
    import sqlalchemy as sa

    from paycore.db.schema import Notification

    with core.db.session() as s:
        return s.execute(sa.select(Notification)).scalars().all()


@pytest.mark.parametrize(
    "snapshot, outcome",
    [
        (SwitchSnapshot(version=1, degraded=frozenset({"notification"})), "degraded"),
        (SwitchSnapshot(version=1, forced={"notification": "forced_open"}), "fallback"),
    ],
)
def test_refused_notifications_stay_pending_with_no_attempt_spent(
    pg_url, receiver, snapshot, outcome
):
    core, guard, delivery = setup(pg_url, receiver, "ok")
    try:
        guard.apply(snapshot)
        for _ in range(3):  # each run claims the rows and leaves them as they were
            assert delivery.deliver_due() == 0
        assert receiver.hits == []
        rows = _rows(core)
        assert rows and all(
            r.status == "pending" and r.attempts == 0 and r.lease_until is None for r in rows
        )
        assert guard.stats.count("notification", outcome) == 3 * len(rows)
        assert guard.stats.count("database", "pass") > 0  # the job's transactions: link.notify
        guard.apply(SwitchSnapshot(version=2))
        assert delivery.deliver_due() == len(rows)  # nothing lost: out once it is back
        assert {r.status for r in _rows(core)} == {"delivered"}
        assert all(r.attempts == 1 for r in _rows(core))
    finally:
        delivery.close()
        core.close()


def test_the_edge_timeout_is_the_http_timeout(pg_url, receiver):
    core, guard, delivery = setup(pg_url, receiver, "slow", notify_ms=200)
    try:
        assert delivery.timeout == 0.2
        start = time.monotonic()
        assert delivery.deliver_due() == 1
        assert time.monotonic() - start < 1.5  # the receiver answers after 2 s
        row = _rows(core)[0]
        assert row.status == "pending" and row.attempts == 1 and row.last_error == "timeout"
        assert guard.stats.count("notification", "error") == 1  # no answer: a failure
        assert notification(core, row.event_id).attempts == 1
    finally:
        delivery.close()
        core.close()


def test_a_merchant_answering_an_error_is_no_dependency_failure(pg_url, receiver):
    core, guard, delivery = setup(pg_url, receiver, "down")
    try:
        assert delivery.deliver_due() == 1
        assert _rows(core)[0].last_status_code == 500
        assert guard.stats.count("notification", "pass") == 1
        assert guard.stats.count("notification", "error") == 0
    finally:
        delivery.close()
        core.close()


@pytest.mark.parametrize(
    "mode, notify_ms, outcome, reason",
    [
        ("down", 500, "rejected", "http_5xx"),  # the merchant answered: its error, not ours
        ("slow", 200, "error", "timeout"),  # nothing answered: counted against us
    ],
)
def test_the_notification_step_burns_budget_only_when_nothing_answers(
    pg_url, receiver, mode, notify_ms, outcome, reason
):
    from prometheus_client import CollectorRegistry

    from collectors import CoreMetrics

    core, _, delivery = setup(pg_url, receiver, mode, notify_ms=notify_ms)
    registry = CollectorRegistry()
    delivery.metrics = CoreMetrics(registry)
    try:
        assert delivery.deliver_due() == 1
        labels = {"step": "notification", "reason": reason, "pay_org": ""}
        got = registry.get_sample_value(
            "paywatch_link_requests_total", labels | {"outcome": outcome}
        )
        assert got == 1.0
        other = "error" if outcome == "rejected" else "rejected"
        assert (
            registry.get_sample_value("paywatch_link_requests_total", labels | {"outcome": other})
            is None
        )
    finally:
        delivery.close()
        core.close()
