"""The sandbox channel, request signing and the channel gateway, over real HTTP: signatures,
pay acknowledged then called back, callbacks parsed, repeated, retried, given up.

The sandbox calls the receiver back (servers in ``sandbox_servers``).
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from sandbox_servers import (  # noqa: F401 - fixtures (fast_knobs: autouse)
    SECRETS,
    ServerThread,
    client,
    fast_knobs,
    notify,
    receiver,
    request,
    sandbox,
    wait_until,
)

from paycore.channels import ChannelRequest, ChannelResult
from paycore.channels.errors import ChannelRejected, InvalidSignature, UnknownChannel
from paycore.channels.gateway import build_gateway
from paycore.channels.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    signed_headers,
    verify,
    verify_headers,
)
from paycore.errors import InvalidRequest


# -- signing -------------------------------------------------------------------------------
def test_sign_and_verify_round_trip_and_rejections() -> None:
    now = 1_700_000_000.0
    ts, body = "1700000000", b'{"amount":100}'
    sig = sign("k", ts, body)
    assert len(sig) == 64 and verify("k", ts, body, sig, now=now)
    assert verify("k", ts, body, sig.upper(), now=now + 299)
    assert not verify("k", ts, b'{"amount":101}', sig, now=now)  # tampered body
    assert not verify("other", ts, body, sig, now=now)  # wrong secret
    assert not verify("k", ts, body, sig, now=now + 301)  # too old
    assert not verify("k", ts, body, sig, now=now - 301)  # from the future
    assert not verify("k", ts, body, sig, now=now + 100, tolerance=60)
    for bad_ts in ("", "abc", "nan", "inf", "1e9", "-1700000000", " 1700000000"):
        assert not verify("k", bad_ts, body, sign("k", bad_ts, body), now=now)
    assert not verify("k", ts, body, "", now=now)
    assert not verify("k", ts, body, "zz" * 32, now=now)
    assert not verify("k", ts, body, "é" * 64, now=now)
    headers = signed_headers("k", body)
    assert set(headers) == {TIMESTAMP_HEADER, SIGNATURE_HEADER}
    assert verify_headers("k", headers, body)
    assert verify_headers("k", {k.lower(): v for k, v in headers.items()}, body)
    assert not verify_headers("k", {}, body)


def test_unsigned_or_badly_signed_requests_are_refused(sandbox: ServerThread) -> None:
    url = f"{sandbox.url}/gateway/SANDBOX_A/pay"
    body = json.dumps(
        {"channel_txn_no": "x1", "amount": 1, "currency": "CNY", "notify_url": "http://x/"}
    ).encode()
    assert httpx.post(url, content=body).status_code == 401
    wrong_org = signed_headers(SECRETS["SANDBOX_B"], body)
    assert httpx.post(url, content=body, headers=wrong_org).status_code == 401
    stale = signed_headers(SECRETS["SANDBOX_A"], body, now=time.time() - 3600)
    assert httpx.post(url, content=body, headers=stale).status_code == 401
    tampered = signed_headers(SECRETS["SANDBOX_A"], body)
    assert httpx.post(url, content=body + b" ", headers=tampered).status_code == 401
    unknown = f"{sandbox.url}/gateway/NOPE/pay"
    assert httpx.post(unknown, content=body, headers=tampered).status_code == 404
    assert httpx.get(f"{sandbox.url}/gateway/SANDBOX_A/query/x1").status_code == 401
    ok = signed_headers(SECRETS["SANDBOX_A"], b"")
    resp = httpx.get(f"{sandbox.url}/gateway/SANDBOX_A/query/x1", headers=ok)
    assert resp.status_code == 200 and resp.json()["status"] == "unknown"


# -- transactions and callbacks ------------------------------------------------------------
def test_pay_is_acknowledged_then_called_back_signed(client, receiver) -> None:
    rec, _ = receiver
    req = request(amount=1234)
    ack = client.pay(req, notify(receiver))
    assert ack.channel_txn_no == req.channel_txn_no and ack.channel_ref
    (call,) = rec.wait(req.channel_txn_no)
    assert call["valid"] and call["org"] == "SANDBOX_A"
    assert call["payload"] == {
        "pay_org_no": "SANDBOX_A",
        "channel_txn_no": req.channel_txn_no,
        "status": "success",
        "amount": 1234,
        "currency": "CNY",
        "channel_ref": ack.channel_ref,
        "kind": "pay",
    }
    expected = ChannelResult(
        "SANDBOX_A", req.channel_txn_no, "success", 1234, "CNY", ack.channel_ref
    )
    assert client.query(req.channel_txn_no) == expected
    assert client.parse_callback(call["headers"], call["body"]) == expected


def test_parse_callback_checks_signature_then_body(sandbox) -> None:
    gateway = build_gateway(sandbox.url, SECRETS)
    try:
        good = {
            "pay_org_no": "SANDBOX_A",
            "channel_txn_no": "t1",
            "status": "failed",
            "amount": 10,
            "currency": "CNY",
            "channel_ref": "r1",
            "kind": "pay",
        }
        body = json.dumps(good).encode()
        headers = signed_headers(SECRETS["SANDBOX_A"], body)
        result = gateway.parse_callback("SANDBOX_A", headers, body)
        assert result == ChannelResult("SANDBOX_A", "t1", "failed", 10, "CNY", "r1")
        with pytest.raises(InvalidSignature):
            gateway.parse_callback("SANDBOX_A", headers, body.replace(b"10", b"11"))
        with pytest.raises(InvalidSignature):  # signed by another org
            gateway.parse_callback("SANDBOX_B", headers, body)
        with pytest.raises(InvalidSignature):
            gateway.parse_callback("SANDBOX_A", {}, body)
        with pytest.raises(UnknownChannel):
            gateway.parse_callback("NOPE", headers, body)
        for bad in (
            {**good, "pay_org_no": "SANDBOX_B"},
            {**good, "status": "processing"},
            {**good, "amount": "10"},
            {**good, "amount": True},
            [good],
        ):
            raw = json.dumps(bad).encode()
            with pytest.raises(InvalidRequest):
                gateway.parse_callback("SANDBOX_A", signed_headers(SECRETS["SANDBOX_A"], raw), raw)
    finally:
        gateway.close()


def test_repeat_pay_is_idempotent(client, receiver, sandbox) -> None:
    rec, _ = receiver
    req = request()
    first = client.pay(req, notify(receiver))
    assert client.pay(req, notify(receiver)) == first
    rec.wait(req.channel_txn_no)
    time.sleep(0.2)
    assert len(rec.of(req.channel_txn_no)) == 1  # one charge, one callback
    assert client.pay(req, notify(receiver)) == first  # also after settlement
    booked = sandbox.app.state.sandbox.transactions("SANDBOX_A")
    assert sum(t.channel_txn_no == req.channel_txn_no for t in booked) == 1
    other = ChannelRequest("pay", "SANDBOX_A", req.channel_txn_no, 999, "CNY", "m1", 1, 2)
    with pytest.raises(ChannelRejected, match="409"):
        client.pay(other, notify(receiver))


def test_callbacks_are_retried_until_answered(client, receiver) -> None:
    rec, _ = receiver
    req = request()
    rec.fail[req.channel_txn_no] = 2
    client.pay(req, notify(receiver))
    calls = rec.wait(req.channel_txn_no, 3)
    assert [c["answered"] for c in calls] == [False, False, True]
    assert all(c["valid"] for c in calls)


def test_callbacks_nobody_takes_are_given_up_and_counted(client, receiver, sandbox) -> None:
    """After ``callback_attempts`` tries a callback is counted undeliverable (the pay
    core's active query settles such orders); one receiver failing does not stop
    deliveries to the others."""
    dispatcher = sandbox.app.state.dispatcher
    rec, _ = receiver
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{s.getsockname()[1]}/cb/SANDBOX_A"
    failing = request()
    rec.fail[failing.channel_txn_no] = 99  # answers 500 every time
    before = (dispatcher.delivered, dispatcher.undeliverable)
    client.pay(request(), refused)
    client.pay(failing, notify(receiver))
    fine = request()
    client.pay(fine, notify(receiver))
    assert wait_until(lambda: dispatcher.undeliverable - before[1] == 2, timeout=10)
    attempts = sandbox.app.state.sandbox.config.callback_attempts
    assert len(rec.of(failing.channel_txn_no)) == attempts
    assert [c["answered"] for c in rec.wait(fine.channel_txn_no)] == [True]
    assert dispatcher.delivered - before[0] == 1
