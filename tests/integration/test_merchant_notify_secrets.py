"""Per-merchant notification secrets on real databases: each merchant signs with its own, a
rotation signs with both during the overlap only, and a merchant without one moves off the
shared key by rotating. Clocks are set by the test.
"""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from conftest import LiveServer
from merchant_cores import (
    T0,
    onboard,
    one,  # noqa: F401 - fixture
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from paycore.channels.signing import verify_headers
from paycore.db.schema import MerchantNotifySecret
from paycore.merchants import SHARED_KEY_ID
from paycore.notify import NotificationDelivery, add_notification, verify_notification

SHARED = "the-platforms-shared-notify-key"


# -- notification secrets ------------------------------------------------------------------
class Hooks:
    """Merchant endpoints: every POST kept with its headers, per path."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.got: dict[str, list[tuple[dict[str, str], bytes]]] = {}
        self.app = Starlette(routes=[Route("/{who}", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> PlainTextResponse:
        body = await request.body()
        with self.lock:
            self.got.setdefault(request.path_params["who"], []).append(
                (dict(request.headers), body)
            )
        return PlainTextResponse("ok")

    def last(self, who: str) -> tuple[dict[str, str], bytes]:
        return self.got[who][-1]


@pytest.fixture
def hooks():
    h = Hooks()
    with LiveServer(h.app) as server:
        h.url = server.url
        yield h


def notify(core, mid: str, url: str, n: int) -> None:
    core.db.run(
        lambda s: add_notification(
            s,
            core,
            merchant_id=mid,
            event_type="trade.paid",
            trade_id=None,
            payload={"n": n},
            url=url,
        )
    )


def send(core, at: datetime) -> None:
    delivery = NotificationDelivery(core.db, secret=SHARED, clock=core.clock)
    try:
        assert delivery.deliver_due(at) >= 1
    finally:
        delivery.close()


def signatures(headers: dict[str, str]) -> list[str]:
    return headers["x-paywatch-signature"].split(",")


def test_each_merchant_signs_with_its_own_secret(one, hooks):
    a, b = onboard(one, "a", f"{hooks.url}/a"), onboard(one, "b", f"{hooks.url}/b")
    assert a.notify_secret != b.notify_secret and a.notify_secret.startswith("whsec_")
    for n, ob in enumerate((a, b)):
        notify(one, ob.merchant.merchant_id, ob.merchant.notify_url, n)
    send(one, T0)
    for who, own, other in (("a", a, b), ("b", b, a)):
        headers, body = hooks.last(who)
        assert len(signatures(headers)) == 1
        assert verify_notification(own.notify_secret, headers, body)
        assert verify_headers(own.notify_secret, headers, body)  # one value: the old helper too
        assert not verify_notification(other.notify_secret, headers, body)
        assert not verify_notification(SHARED, headers, body)


def test_a_rotation_signs_with_both_secrets_during_the_overlap_only(one, hooks):
    ob = onboard(one, "a", f"{hooks.url}/a")
    mid = ob.merchant.merchant_id
    fresh = one.merchants.rotate_notify_secret(mid, overlap=timedelta(hours=6))
    assert fresh.old_valid_until == T0 + timedelta(hours=6) and fresh.secret not in repr(fresh)
    notify(one, mid, ob.merchant.notify_url, 1)
    send(one, T0 + timedelta(hours=6) - timedelta(seconds=1))
    headers, body = hooks.last("a")
    assert len(signatures(headers)) == 2  # the new secret's first
    assert verify_notification(fresh.secret, headers, body)
    assert verify_notification(ob.notify_secret, headers, body)  # the merchant may switch later
    assert not verify_notification(SHARED, headers, body)

    notify(one, mid, ob.merchant.notify_url, 2)
    send(one, T0 + timedelta(hours=6))  # the overlap is over
    headers, body = hooks.last("a")
    assert len(signatures(headers)) == 1
    assert verify_notification(fresh.secret, headers, body)
    assert not verify_notification(ob.notify_secret, headers, body)
    states = [
        (n.prefix, n.state(T0 + timedelta(hours=6))) for n in one.merchants.notify_secrets(mid)
    ]
    assert states == [(fresh.prefix, "active"), (ob.notify_secret[:12], "expired")]

    one.clock.now = T0 + timedelta(hours=7)  # the next rotation drops the spent secret
    again = one.merchants.rotate_notify_secret(mid, overlap=timedelta(0))
    assert [n.prefix for n in one.merchants.notify_secrets(mid)] == [again.prefix, fresh.prefix]
    notify(one, mid, ob.merchant.notify_url, 3)
    send(one, one.clock.now)  # no overlap: the new secret alone, at once
    headers, body = hooks.last("a")
    assert len(signatures(headers)) == 1 and verify_notification(again.secret, headers, body)
    assert not verify_notification(fresh.secret, headers, body)


def test_a_merchant_without_a_secret_moves_off_the_shared_key_by_rotating(one, hooks):
    """Merchants onboarded before per-merchant secrets are signed with the shared key; the
    first rotation signs with the shared key and the new secret for the overlap."""
    ob = onboard(one, "legacy", f"{hooks.url}/old")
    mid = ob.merchant.merchant_id
    with one.db.engine.begin() as conn:  # as migrated from revision 0005: no secret
        conn.execute(sa.delete(MerchantNotifySecret).where(MerchantNotifySecret.merchant_id == mid))
    notify(one, mid, ob.merchant.notify_url, 1)
    send(one, T0)
    headers, body = hooks.last("old")
    assert len(signatures(headers)) == 1 and verify_notification(SHARED, headers, body)

    fresh = one.merchants.rotate_notify_secret(mid, overlap=timedelta(hours=1))
    assert [n.prefix for n in one.merchants.notify_secrets(mid)] == [fresh.prefix, SHARED_KEY_ID]
    notify(one, mid, ob.merchant.notify_url, 2)
    send(one, T0 + timedelta(minutes=59))
    headers, body = hooks.last("old")
    assert verify_notification(SHARED, headers, body)
    assert verify_notification(fresh.secret, headers, body)
    notify(one, mid, ob.merchant.notify_url, 3)
    send(one, T0 + timedelta(hours=1))
    headers, body = hooks.last("old")
    assert verify_notification(fresh.secret, headers, body)
    assert not verify_notification(SHARED, headers, body)  # off the shared key for good
    assert json.loads(body)["data"] == {"n": 3}
