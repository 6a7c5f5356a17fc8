"""The simulator's receivers of signed notifications: signatures, dedup, configured failures,
and the pay core's real deliveries taken exactly once."""

from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest

from paycore.channels.signing import signed_headers
from simulator.receiver import ReceiverServer

SECRET = "notify-secret-for-tests"


# -- receivers -------------------------------------------------------------------------------
_HTTP = httpx.Client()


def _post(
    url: str,
    event_id: str,
    event_type: str = "trade.paid",
    secret: str = SECRET,
    timeout: float = 5.0,
) -> int:
    body = json.dumps(
        {
            "event_id": event_id,
            "event_type": event_type,
            "created_at": "x",
            "data": {"out_trade_no": "t1"},
        }
    ).encode()
    headers = signed_headers(secret, body) | {
        "X-Paywatch-Event-Id": event_id,
        "Content-Type": "application/json",
    }
    resp = _HTTP.post(f"{url}/notify/shop", content=body, headers=headers, timeout=timeout)
    return resp.status_code


def test_receiver_verifies_signatures_and_dedupes_event_ids():
    effects = []
    rx = ReceiverServer(SECRET, on_event=effects.append).start()
    try:
        assert _post(rx.url, "evt_1") == 200
        assert _post(rx.url, "evt_1") == 200  # a redelivery: acknowledged, applied once
        assert _post(rx.url, "evt_2", "refund.succeeded") == 200
        assert _post(rx.url, "evt_3", secret="wrong") == 401
        bad = httpx.post(f"{rx.url}/notify/shop", content=b"{}", timeout=5)
        assert bad.status_code == 401
    finally:
        rx.stop()
    assert [e.event_id for e in effects] == ["evt_1", "evt_2"]
    assert [e.event_id for e in rx.received("trade.paid")] == ["evt_1"]
    assert effects[0].path == "/notify/shop" and effects[0].data == {"out_trade_no": "t1"}
    assert (rx.stats.accepted, rx.stats.duplicates, rx.stats.bad_signature) == (2, 1, 2)


def test_receiver_fails_the_configured_share_with_500_or_a_late_answer():
    rx = ReceiverServer(SECRET, failure_ratio=0.5, timeout_share=0.0, seed=11).start()
    try:
        codes = Counter(_post(rx.url, f"evt_{i}") for i in range(200))
    finally:
        rx.stop()
    assert codes[500] == rx.stats.failed_500 and 70 <= codes[500] <= 130
    assert codes[200] == rx.stats.accepted == len(rx.received())
    slow = ReceiverServer(SECRET, failure_ratio=1.0, timeout_share=1.0, timeout_s=2.0).start()
    try:
        with pytest.raises(httpx.ReadTimeout):
            _post(slow.url, "evt_late", timeout=0.5)
    finally:
        slow.stop()
    assert slow.stats.failed_timeout == 1 and not slow.received()


def test_receiver_takes_the_pay_cores_real_deliveries_exactly_once(shop):
    from datetime import timedelta as _td

    from paycore.notify.delivery import NotificationDelivery
    from paycore.notify.outbox import add_notification

    effects = []
    # the shop signs with its own secret (rotated here, since the fixture did not keep it)
    own = shop.core.merchants.rotate_notify_secret(shop.mid, overlap=_td(0)).secret
    rx = ReceiverServer(
        SECRET,
        failure_ratio=1.0,
        timeout_share=0.0,
        on_event=effects.append,
        path_secrets={"/notify/shop": own},
    )
    rx.start()
    delivery = NotificationDelivery(shop.core.db, secret=SECRET, schedule=(1, 1), timeout=2.0)
    try:

        def add(s):
            return add_notification(
                s,
                shop.core,
                merchant_id=shop.mid,
                event_type="trade.paid",
                trade_id=None,
                payload={"out_trade_no": "t9"},
                url=f"{rx.url}/notify/shop",
            )

        event_id = shop.core.db.run(add)
        assert delivery.deliver_due() == 1 and delivery.failed == 1  # answered 500: retried
        rx.failure_ratio = 0.0
        from datetime import UTC, datetime, timedelta

        later = datetime.now(UTC) + timedelta(seconds=5)
        assert delivery.deliver_due(now=later) == 1 and delivery.delivered == 1
        with shop.core.db.session() as s:
            from sqlalchemy import select

            from paycore.db.schema import Notification

            row_id = s.execute(select(Notification.id)).scalar_one()
        assert delivery.resend(row_id, "ops")  # a manual resend: the merchant sees it again
        assert delivery.deliver_due(now=later + timedelta(seconds=1)) == 1
    finally:
        delivery.close()
        rx.stop()
    assert [e.event_id for e in effects] == [event_id]  # the effect happened once
    assert (rx.stats.failed_500, rx.stats.accepted, rx.stats.duplicates) == (1, 1, 1)
