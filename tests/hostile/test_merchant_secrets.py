"""Attacks on merchant secrets: forging another merchant's notifications, and credentials
that stay valid after the platform took them back.

Each test is what a hostile merchant (or a leaked token) would try over real HTTP on
PostgreSQL. The API replica under attack (``hostile.api``) keeps its own token and
merchant caches (``cache_ttl`` = 5 s); the operator acts through a *second*
:class:`~paycore.merchants.MerchantService` over the same database, as the CLI or the
console would, so every change has to reach the replica through the database within the
TTL. Each test failed on the code before per-merchant secrets (see the commit note).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from conftest import Clock, LiveServer
from hostile_stack import hostile  # noqa: F401 - the fixture
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from paycore import Database
from paycore.channels.signing import sign, verify_headers
from paycore.db.schema import Merchant
from paycore.ids import IdGenerator
from paycore.merchants import MerchantService

TTL = 5.0  # MerchantService's default cache_ttl: the propagation bound under test


class Hooks:
    """Both merchants' notify endpoints: records every signed POST as it arrived."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: dict[str, list[tuple[dict[str, str], bytes]]] = {}
        self.app = Starlette(routes=[Route("/hook/{who}", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> PlainTextResponse:
        body = await request.body()
        with self.lock:
            self.got.setdefault(request.path_params["who"], []).append(
                (dict(request.headers), body)
            )
        return PlainTextResponse("ok")


def operator(stack, clock=None) -> MerchantService:
    """Another process's merchant service over the same database (the CLI, the console):
    its own engine, its own caches."""
    db = Database(stack.platform.settings.database_url)
    return MerchantService(db, IdGenerator(), clock or stack.core.clock)


def error_of(response) -> tuple[int, str]:
    return response.status_code, response.json()["error"]["code"]


def until(pred, timeout: float) -> float:
    """Seconds until ``pred()`` held (polled every 50 ms); fails after ``timeout``."""
    start = time.monotonic()
    while not pred():
        assert time.monotonic() - start < timeout, "did not happen in time"
        time.sleep(0.05)
    return time.monotonic() - start


def routes(m) -> list:
    """One request per merchant route (each would write, or read, if it were let in)."""
    return [
        lambda: m.trade("ds-1"),
        lambda: m.http.get("/v1/trades/ds-1"),
        lambda: m.pay("ds-1", [{"tool": "channel", "amount": 1000}]),
        lambda: m.refund("ds-1", "ds-r1", 100),
        lambda: m.http.post("/v1/trades/ds-1/confirm"),
        lambda: m.http.post("/v1/trades/ds-1/close"),
    ]


def test_merchant_b_cannot_sign_a_notification_as_merchant_a(hostile):
    """B knows its own notification secret; with it, B must not be able to produce (or
    verify) a signature that A's endpoint accepts as the platform's."""
    from runtime.worker import worker_jobs

    hooks = Hooks()
    with LiveServer(hooks.app) as rx:
        with hostile.core.db.engine.begin() as conn:
            for who, m in (("a", hostile.a), ("b", hostile.b)):
                conn.execute(
                    sa.update(Merchant)
                    .where(Merchant.merchant_id == m.mid)
                    .values(notify_url=f"{rx.url}/hook/{who}")
                )
        hostile.a.fund("ua", 5_000, "ns-a1")
        hostile.b.fund("ub", 5_000, "ns-b1")
        _jobs, closers = worker_jobs(hostile.platform, "hostile-worker")
        delivery = closers[0]  # the worker's own notification delivery, as wired
        try:
            until(lambda: delivery.deliver_due() == 0 and len(hooks.got) == 2, 30)
        finally:
            for c in closers:
                c.close()
    ob_a, ob_b = hostile._onboarded
    settings = hostile.platform.settings
    # what each merchant was given to verify its notifications with (before per-merchant
    # secrets: the platform's one notification key, the same for everybody)
    secret_a = getattr(ob_a, "notify_secret", None) or settings.notify_secret()
    secret_b = getattr(ob_b, "notify_secret", None) or settings.notify_secret()

    headers_a, body_a = hooks.got["a"][0]
    headers_b, body_b = hooks.got["b"][0]
    assert json.loads(body_a)["data"]["out_trade_no"] == "ns-a1"
    assert verify_headers(secret_a, headers_a, body_a)  # A's own notification verifies
    assert verify_headers(secret_b, headers_b, body_b)
    # the attack: B signs a notification for A (a "paid" A never saw) with what B holds
    forged = json.loads(body_a)
    forged["data"]["out_trade_no"], forged["data"]["amount"] = "ns-a-forged", 999_999
    raw = json.dumps(forged, separators=(",", ":")).encode()
    ts = str(int(time.time()))
    forged_headers = {"X-Paywatch-Timestamp": ts, "X-Paywatch-Signature": sign(secret_b, ts, raw)}
    assert not verify_headers(secret_a, forged_headers, raw), "B forged A's notification"
    # and B's secret does not verify A's real notifications either
    assert not verify_headers(secret_b, headers_a, body_a)
    assert headers_a["x-paywatch-signature"] != sign(
        secret_b, headers_a["x-paywatch-timestamp"], body_a
    )


def test_a_revoked_token_is_refused_by_every_replica_within_the_ttl(hostile):
    a, b = hostile.a, hostile.b
    assert a.http.get("/v1/trades/rv-none").status_code == 404  # known: now in the cache
    ops = operator(hostile)
    prefix = a.token[:10]
    ops.revoke_token(a.mid, prefix)
    took = until(lambda: a.http.get("/v1/trades/rv-none").status_code == 401, TTL + 2)
    assert took <= TTL + 1
    assert error_of(a.trade("rv-1")) == (401, "unauthenticated")
    assert b.http.get("/v1/trades/rv-none").status_code == 404  # B is untouched
    ops.db.dispose()


def test_a_rotated_token_works_during_its_grace_and_never_after(hostile):
    a = hostile.a
    clock = Clock(datetime.now(UTC))
    hostile.core.merchants.clock = clock  # the replica's clock, settable by the test
    ops = operator(hostile, clock)
    assert a.http.get("/v1/trades/rt-none").status_code == 404  # old token cached
    issued = ops.rotate_token(a.mid, grace=timedelta(hours=24))
    new = {"Authorization": f"Bearer {issued.token}"}
    assert issued.token != a.token
    assert a.http.get("/v1/trades/rt-none", headers=new).status_code == 404
    clock.advance(24 * 3600 - 1)  # one second of grace left: both work
    assert a.http.get("/v1/trades/rt-none").status_code == 404
    assert a.http.get("/v1/trades/rt-none", headers=new).status_code == 404
    clock.advance(1)  # grace over: refused as soon as the replica has read the rotation
    until(lambda: a.http.get("/v1/trades/rt-none").status_code == 401, TTL + 2)
    assert error_of(a.http.get("/v1/trades/rt-none")) == (401, "unauthenticated")
    assert error_of(a.trade("rt-1")) == (401, "unauthenticated")
    assert a.http.get("/v1/trades/rt-none", headers=new).status_code == 404
    ops.db.dispose()


def test_a_rotation_without_grace_cuts_the_old_token_within_the_ttl(hostile):
    """The answer to a leaked token: rotate with no grace (the old one stops at once)."""
    a = hostile.a
    assert a.http.get("/v1/trades/rg-none").status_code == 404
    ops = operator(hostile)
    issued = ops.rotate_token(a.mid, grace=timedelta(0))
    until(lambda: a.http.get("/v1/trades/rg-none").status_code == 401, TTL + 2)
    new = {"Authorization": f"Bearer {issued.token}"}
    assert a.http.get("/v1/trades/rg-none", headers=new).status_code == 404
    ops.db.dispose()


def test_a_disabled_merchant_gets_403_on_every_route_within_the_ttl(hostile):
    a, b = hostile.a, hostile.b
    assert a.trade("ds-0").status_code == 200  # active, cached by the replica
    before = hostile.counts()
    ops = operator(hostile)
    ops.disable(a.mid)
    took = until(lambda: a.http.get("/v1/trades/ds-0").status_code == 403, TTL + 2)
    assert took <= TTL + 1
    for call in routes(a):
        assert error_of(call()) == (403, "merchant_disabled")
    assert hostile.counts() == before  # nothing was written for a disabled merchant
    assert b.trade("ds-b").status_code == 200  # B is untouched
    ops.enable(a.mid)
    until(lambda: a.http.get("/v1/trades/ds-0").status_code == 200, TTL + 2)
    assert a.trade("ds-1").status_code == 200
    ops.db.dispose()
