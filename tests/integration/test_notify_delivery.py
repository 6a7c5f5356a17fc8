"""Notification delivery against real HTTP receivers on 127.0.0.1 and real PostgreSQL.

The clock is injected: ``deliver_due(now=...)`` is driven at the scheduled times, and
the recorded attempt times must follow the schedule exactly.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import Clock, LiveServer, Shop, free_port
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from paycore import Database, PayCore, PayRequest, PayTool
from paycore.db.schema import Notification, NotificationAttempt
from paycore.notify import (
    DEFAULT_SCHEDULE,
    NotificationDelivery,
    add_notification,
    verify_notification,
)

SECRET = "platform-notify-key-for-tests"
T0 = datetime(2030, 5, 1, 8, 0, tzinfo=UTC)


class Receiver:
    """A merchant's endpoint: /flaky fails each event's first ``fail_first`` deliveries,
    /ok always answers 200, /down always 500, /moved 302, /slow answers too late.
    Dedupes by event id."""

    def __init__(self, fail_first: int = 3) -> None:
        self.fail_first = fail_first
        self.lock = threading.Lock()
        self.hits: list[str] = []  # event ids in arrival order, retries included
        self.events: dict[str, dict] = {}  # event id -> body: what the merchant acted on
        self.bad_signatures = 0
        #: the keys this endpoint verifies with: the shared key (rows of merchant "M1",
        #: which has no secret of its own) and the secrets of the merchants onboarded here
        self.secrets = {SECRET}
        self.app = Starlette(routes=[Route("/{mode}", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> PlainTextResponse:
        body = await request.body()
        if not any(verify_notification(k, request.headers, body) for k in self.secrets):
            with self.lock:
                self.bad_signatures += 1
            return PlainTextResponse("bad signature", status_code=401)
        event_id = request.headers["X-Paywatch-Event-Id"]
        mode = request.path_params["mode"]
        with self.lock:
            self.hits.append(event_id)
            tries = self.hits.count(event_id)
        if mode == "slow":
            await asyncio.sleep(2.0)
        if mode == "moved":
            return PlainTextResponse("", status_code=302, headers={"Location": "/ok"})
        if mode == "down" or (mode == "flaky" and tries <= self.fail_first):
            return PlainTextResponse("try later", status_code=500)
        data = json.loads(body)
        assert data["event_id"] == event_id
        with self.lock:
            self.events.setdefault(event_id, data)  # a repeat is acknowledged, not acted on
        return PlainTextResponse("ok")


@pytest.fixture
def receiver():
    rcv = Receiver()
    with LiveServer(rcv.app) as server:
        rcv.url = server.url
        yield rcv


@pytest.fixture
def pg_core(pg_url):
    db = Database(pg_url)
    clock = Clock(T0)
    core = PayCore(db, clock=clock)
    core.test_clock = clock
    yield core
    core.close()


@pytest.fixture
def any_core(migrated_db):
    """A core with an injected clock on SQLite and on PostgreSQL."""
    core = PayCore(migrated_db, clock=Clock(T0))
    core.test_clock = core.clock
    yield core
    core.lock.close()


def onboard(core, url: str) -> Shop:
    shop = Shop(core)
    ob = core.merchants.onboard(
        "hooked shop", products=[("goods", "physical")], pay_orgs=[Shop.ORG], notify_url=url
    )
    shop.mid = ob.merchant.merchant_id
    shop.notify_secret = ob.notify_secret
    return shop


def attempts(core, notification_id: int) -> list[tuple[datetime, int | None, str]]:
    with core.db.session() as s:
        return [
            (a.at, a.status_code, a.error)
            for a in s.execute(
                sa.select(NotificationAttempt)
                .where(NotificationAttempt.notification_id == notification_id)
                .order_by(NotificationAttempt.at)
            ).scalars()
        ]


def notification(core, event_id: str) -> Notification:
    with core.db.session() as s:
        return s.execute(
            sa.select(Notification).where(Notification.event_id == event_id)
        ).scalar_one()


def test_failing_receiver_gets_each_event_once_on_schedule(pg_core, receiver):
    core = pg_core
    shop = onboard(core, f"{receiver.url}/flaky")
    receiver.secrets.add(shop.notify_secret)
    shop.fund("u1", 10_000)  # recharge: trade.paid #1
    trades = [shop.trade("instant", 1_000 + i) for i in range(3)]
    for t in trades:
        core.payments.pay(shop.mid, PayRequest(t.out_trade_no, (PayTool("balance", t.amount),)))
    with core.db.session() as s:
        event_ids = list(s.execute(sa.select(Notification.event_id)).scalars())
    assert len(event_ids) == 4
    delivery = NotificationDelivery(core.db, secret=SECRET, clock=core.clock)
    try:
        schedule = [
            T0,
            T0 + timedelta(seconds=60),
            T0 + timedelta(seconds=360),
            T0 + timedelta(seconds=960),
        ]
        for n, at in enumerate(schedule, start=1):
            assert delivery.deliver_due(at - timedelta(seconds=1)) == 0  # not due yet
            assert delivery.deliver_due(at) == 4
            for eid in event_ids:
                row = notification(core, eid)
                assert row.attempts == n
                if n < 4:
                    assert row.status == "pending" and row.last_status_code == 500
                    assert row.next_attempt_at == at + timedelta(seconds=DEFAULT_SCHEDULE[n - 1])
                else:
                    assert (row.status, row.delivered_at, row.last_status_code) == (
                        "delivered",
                        at,
                        200,
                    )
        assert delivery.deliver_due(T0 + timedelta(days=3)) == 0
        assert delivery.backlog() == 0
        for eid in event_ids:
            row = notification(core, eid)
            assert attempts(core, row.id) == [
                (at, code, err)
                for at, code, err in zip(
                    schedule, (500, 500, 500, 200), ("HTTP 500",) * 3 + ("",), strict=True
                )
            ]
        # four deliveries per event, one logical event each, every signature valid
        assert Counter(receiver.hits) == {eid: 4 for eid in event_ids}
        assert sorted(receiver.events) == sorted(event_ids)
        assert receiver.bad_signatures == 0
        paid = {e["data"]["out_trade_no"]: e for e in receiver.events.values()}
        for t in trades:
            assert paid[t.out_trade_no]["event_type"] == "trade.paid"
            assert paid[t.out_trade_no]["data"]["amount"] == t.amount

        # manual resend of a delivered event: posted again, still one logical event
        row = notification(core, event_ids[0])
        assert delivery.resend(row.id, actor="ops@example") is True
        assert delivery.backlog() == 1
        assert delivery.deliver_due(T0 + timedelta(days=3)) == 1
        assert notification(core, event_ids[0]).status == "delivered"
        assert receiver.hits.count(event_ids[0]) == 5 and len(receiver.events) == 4
        assert delivery.resend(123, actor="ops") is False
    finally:
        delivery.close()


def test_backlog_goes_newest_first(any_core, receiver):
    core = any_core
    ids = []
    for i in range(5):
        core.test_clock.now = T0 + timedelta(seconds=i)
        with core.db.session() as s:
            ids.append(
                add_notification(
                    s,
                    core,
                    merchant_id="M1",
                    event_type="trade.paid",
                    trade_id=None,
                    payload={"n": i},
                    url=f"{receiver.url}/ok",
                )
            )
    delivery = NotificationDelivery(core.db, secret=SECRET, batch=2, concurrency=1)
    try:
        now = T0 + timedelta(minutes=1)
        assert delivery.backlog() == 5
        assert [delivery.deliver_due(now) for _ in range(4)] == [2, 2, 1, 0]
        assert receiver.hits == list(reversed(ids))
        assert delivery.backlog() == 0 and delivery.delivered == 5
    finally:
        delivery.close()


def test_gives_up_after_the_schedule_and_every_failure_is_a_retry(any_core, receiver):
    core = any_core
    dead = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: connection refused
    urls = {
        "down": f"{receiver.url}/down",
        "dead": dead,
        "slow": f"{receiver.url}/slow",
        "moved": f"{receiver.url}/moved",
    }
    eids = {}
    with core.db.session() as s:
        for name, url in urls.items():
            eids[name] = add_notification(
                s,
                core,
                merchant_id="M1",
                event_type="trade.paid",
                trade_id=None,
                payload={"k": name},
                url=url,
            )
    delivery = NotificationDelivery(core.db, secret=SECRET, schedule=(10, 20), timeout=0.5)
    try:
        for at in (T0, T0 + timedelta(seconds=10), T0 + timedelta(seconds=30)):
            assert delivery.deliver_due(at) == 4
        assert delivery.deliver_due(T0 + timedelta(days=1)) == 0
        for name, eid in eids.items():
            row = notification(core, eid)
            assert (row.status, row.attempts) == ("gave_up", 3), name
            tried = attempts(core, row.id)
            assert [a[0] for a in tried] == [
                T0,
                T0 + timedelta(seconds=10),
                T0 + timedelta(seconds=30),
            ]
            if name in ("down", "moved"):  # a redirect is not followed: not a success
                assert {a[1] for a in tried} == {500 if name == "down" else 302}
            elif name == "slow":
                assert {a[2] for a in tried} == {"timeout"}
            else:
                assert all(a[1] is None and a[2] for a in tried), tried
        assert delivery.gave_up == 4 and delivery.backlog() == 0
        row = notification(core, eids["down"])
        assert delivery.resend(row.id, actor="ops") is True
        again = notification(core, eids["down"])
        assert (again.status, again.attempts, again.last_error) == (
            "pending",
            0,
            "manual resend by ops",
        )
        assert delivery.deliver_due(T0 + timedelta(days=1)) == 1
        assert notification(core, eids["down"]).next_attempt_at == T0 + timedelta(
            days=1, seconds=10
        )
    finally:
        delivery.close()


def test_two_workers_share_a_backlog_without_sending_twice(pg_core, receiver):
    core = pg_core
    with core.db.session() as s:
        for i in range(120):
            add_notification(
                s,
                core,
                merchant_id="M1",
                event_type="trade.paid",
                trade_id=None,
                payload={"n": i},
                url=f"{receiver.url}/ok",
            )
    workers = [
        NotificationDelivery(core.db, secret=SECRET, batch=10, worker_id=f"w{i}") for i in range(2)
    ]
    done = [0, 0]
    start = threading.Barrier(2)

    def drain(i: int) -> None:
        start.wait(10)
        while n := workers[i].deliver_due(T0):
            done[i] += n

    threads = [threading.Thread(target=drain, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for w in workers:
        w.close()
    assert sum(done) == 120 and all(done)  # both took part
    assert len(receiver.hits) == len(set(receiver.hits)) == 120  # nobody got a second copy
    with core.db.session() as s:
        assert (
            s.execute(sa.select(sa.func.count()).select_from(NotificationAttempt)).scalar_one()
            == 120
        )
