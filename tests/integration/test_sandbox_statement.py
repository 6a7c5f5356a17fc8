"""The sandbox channel's card binding, statement file, knobs admin and the async front."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime

import httpx
import pytest

# fixtures and helpers shared with the channel protocol tests (tests/integration/sandbox_servers.py)
from sandbox_servers import (  # noqa: F401
    ADMIN,
    FAST,
    SECRETS,
    ServerThread,
    client,
    fast_knobs,
    knobs,
    notify,
    receiver,
    request,
    sandbox,
    wait_until,
)

from paycore.channels.errors import (
    ChannelRejected,
    ChannelUnavailable,
    UnknownChannel,
)
from paycore.channels.gateway import ChannelFront, HttpChannelClient, build_gateway
from paycore.channels.signing import (
    signed_headers,
)
from simulator.sandbox import Knobs, SandboxConfig


def test_card_binding_never_echoes_the_card(client, sandbox) -> None:
    card = "6222020200112233445"
    agreement = client.sign("u1", card)
    assert agreement and card not in agreement
    assert client.sign("u1", card) == agreement
    assert client.sign("u2", card) != agreement
    body = json.dumps({"user_id": "u1", "card_no": card}).encode()
    resp = httpx.post(
        f"{sandbox.url}/gateway/SANDBOX_A/sign",
        content=body,
        headers=signed_headers(SECRETS["SANDBOX_A"], body),
    )
    assert resp.status_code == 200 and card not in resp.text and resp.json()["card_last4"] == "3445"
    with pytest.raises(ChannelRejected, match="422") as info:
        client.sign("u1", "62220202001122x")
    assert "62220202001122x" not in str(info.value)


# -- statements ----------------------------------------------------------------------------
def test_statement_lists_settled_transactions_and_injects_discrepancies(sandbox, receiver) -> None:
    rec, _ = receiver
    org = "STMT"
    with HttpChannelClient(sandbox.url, org, SECRETS[org]) as c:
        pays = [request(amount=100 * (i + 1), org=org) for i in range(3)]
        for req in pays:
            c.pay(req, notify(receiver, org))
        knobs(sandbox, org, fail_rate=1.0)
        failed = request(org=org)
        c.pay(failed, notify(receiver, org))
        knobs(sandbox, org)
        for req in [*pays, failed]:
            rec.wait(req.channel_txn_no)
        refund = request("refund", 50, org, origin=pays[0].channel_txn_no)
        c.refund(refund, notify(receiver, org))
        rec.wait(refund.channel_txn_no)
        with pytest.raises(ChannelRejected, match="exceeds"):
            c.refund(request("refund", 51, org, origin=pays[0].channel_txn_no), "http://x/")
        with pytest.raises(ChannelRejected, match="404"):
            c.refund(request("refund", 1, org, origin="nope"), "http://x/")

        day = datetime.now(UTC).date()
        lines = c.statement(day)
        expected = {r.channel_txn_no: (r.kind, r.amount) for r in [*pays, refund]}
        assert {ln.channel_txn_no: (ln.kind, ln.amount) for ln in lines} == expected
        assert all(ln.status == "success" and ln.settled_at.date() == day for ln in lines)
        assert c.statement(day.replace(year=day.year - 1)) == []

        raw = httpx.get(
            f"{sandbox.url}/gateway/{org}/statement",
            params={"date": day.isoformat()},
            headers=signed_headers(SECRETS[org], b""),
        )
        assert raw.headers["content-type"].startswith("text/csv")
        assert raw.text.splitlines()[0] == (
            "channel_txn_no,channel_ref,kind,amount,currency,status,settled_at"
        )
        bad = httpx.get(
            f"{sandbox.url}/gateway/{org}/statement",
            params={"date": "2024-13-01"},
            headers=signed_headers(SECRETS[org], b""),
        )
        assert bad.status_code == 422

        knobs(sandbox, org, statement_missing_rate=1.0)
        assert c.statement(day) == []
        knobs(sandbox, org, statement_amount_diff_rate=1.0)
        diffed = {ln.channel_txn_no: ln.amount for ln in c.statement(day)}
        assert diffed == {k: a + 1 for k, (_, a) in expected.items()}
        knobs(sandbox, org, statement_extra_rate=1.0)
        extra = c.statement(day)
        assert len(extra) == 2 * len(expected)
        assert len({ln.channel_txn_no for ln in extra} - set(expected)) == len(expected)
        assert c.statement(day) == extra  # the same file on every download


# -- admin ---------------------------------------------------------------------------------
def test_knobs_admin_needs_the_token_and_validates(sandbox) -> None:
    url = f"{sandbox.url}/admin/knobs"
    auth = {"X-Sandbox-Admin": ADMIN}
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers={"X-Sandbox-Admin": "wrong"}).status_code == 401
    assert httpx.put(f"{url}/SANDBOX_B", json={"error_rate": 0.5}).status_code == 401
    resp = httpx.get(url, headers=auth)
    assert resp.status_code == 200 and set(resp.json()) == set(SECRETS)
    resp = httpx.put(f"{url}/SANDBOX_B", json={"error_rate": 0.5, "latency_ms": 20}, headers=auth)
    assert resp.status_code == 200
    assert resp.json()["error_rate"] == 0.5 and resp.json()["latency_ms"] == 20
    assert resp.json()["callback_delay_ms"] == FAST.callback_delay_ms  # partial update
    assert sandbox.app.state.sandbox.knobs("SANDBOX_B").error_rate == 0.5
    for bad in (
        {"error_rate": 1.5},
        {"fail_rate": -0.1},
        {"latency_ms": -1},
        {"callback_delay_ms": "soon"},
        {"duplicate_callbacks": 1.5},
        {"no_such_knob": 1},
    ):
        assert httpx.put(f"{url}/SANDBOX_B", json=bad, headers=auth).status_code == 422, bad
    assert httpx.put(f"{url}/SANDBOX_B", json=[1], headers=auth).status_code == 422
    assert httpx.put(f"{url}/NOPE", json={}, headers=auth).status_code == 404
    assert sandbox.app.state.sandbox.knobs("SANDBOX_B").error_rate == 0.5  # unchanged


def test_config_and_knobs_are_validated() -> None:
    with pytest.raises(ValueError):
        Knobs(error_rate=2.0)
    with pytest.raises(ValueError):
        SandboxConfig({"A": "s"}, ADMIN, knobs={"B": Knobs()})
    with pytest.raises(ValueError):
        SandboxConfig({"A": "s"}, "")
    assert "s3cret" not in repr(SandboxConfig({"A": "s3cret"}, ADMIN))
    assert "s3cret" not in repr(HttpChannelClient("http://x", "A", "s3cret"))


# -- the channel front ---------------------------------------------------------------------
class LoopThread:
    """An asyncio event loop running in a thread, as an API's is."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 10.0):  # noqa: ANN001, ANN201
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture(params=["threads", "event loop"])
def front_mode(request) -> Iterator[LoopThread | None]:  # noqa: ANN001
    """Each front test runs with the front's threads, and bound to an event loop."""
    if request.param == "threads":
        yield None
        return
    loop = LoopThread()
    yield loop
    loop.stop()


def test_front_submit_returns_fast_and_the_callback_still_arrives(
    sandbox, receiver, caplog, front_mode
) -> None:
    knobs(sandbox, latency_ms=300.0)
    gateway = build_gateway(sandbox.url, SECRETS)
    results: list[tuple[str, bool, str]] = []
    front = ChannelFront(
        gateway,
        lambda org: notify(receiver, org),
        on_result=lambda req, ok, _s: results.append(
            (req.channel_txn_no, ok, threading.current_thread().name)
        ),
    )
    if front_mode is not None:
        front.bind_loop(front_mode.loop)
    try:
        req = request()
        started = time.monotonic()
        front.submit(req)
        assert time.monotonic() - started < 0.05
        assert front.pending == 1
        (call,) = receiver[0].wait(req.channel_txn_no)
        assert call["valid"] and call["payload"]["status"] == "success"
        assert front.wait_idle(5) and front.acked == 1 and front.failures == 0

        knobs(sandbox, latency_ms=1.0, error_rate=1.0)
        bad = request()
        with caplog.at_level(logging.WARNING, logger="paycore.channels.gateway"):
            front.submit(bad)
            assert front.wait_idle(5)
        assert front.failures == 1
        assert bad.channel_txn_no in caplog.text and "SANDBOX_A" in caplog.text
        assert all(secret not in caplog.text for secret in SECRETS.values())

        knobs(sandbox, error_rate=0.0)
        dup = request()
        front.submit(dup)
        assert front.wait_idle(5)
        front.submit(replace(dup, amount=dup.amount + 1))  # its number again: 409, a 4xx
        assert front.wait_idle(5) and front.acked == 2 and front.failures == 2
        # health as the guard sees it: up for answers (even a 4xx), down for a 503
        assert [(t, ok) for t, ok, _ in results] == [
            (req.channel_txn_no, True),
            (bad.channel_txn_no, False),
            (dup.channel_txn_no, True),
            (dup.channel_txn_no, True),
        ]
        senders = {name for _, _, name in results}
        if front_mode is None:
            assert all(name.startswith("channel-front") for name in senders)
        else:
            assert senders == {front_mode.thread.name}  # sent on the loop, no pool thread

        with pytest.raises(UnknownChannel):
            front.submit(request(org="NOPE"))
        assert front.failures == 3
    finally:
        if front_mode is not None:
            front_mode.run(front.unbind_loop())
        front.close()
        gateway.close()
    with pytest.raises(ChannelUnavailable):
        front.submit(request())


def test_unbinding_waits_for_sends_in_flight_then_uses_threads(sandbox, receiver) -> None:
    knobs(sandbox, latency_ms=300.0)
    gateway = build_gateway(sandbox.url, SECRETS)
    front = ChannelFront(gateway, lambda org: notify(receiver, org))
    loop = LoopThread()
    try:
        front.bind_loop(loop.loop)
        first = request()
        front.submit(first)
        loop.run(front.unbind_loop(timeout=5))  # returns once the send has its answer
        assert front.pending == 0 and front.acked == 1
        second = request()
        front.submit(second)  # the loop is no longer used
        assert front.wait_idle(5) and front.acked == 2
        for r in (first, second):
            (call,) = receiver[0].wait(r.channel_txn_no)
            assert call["valid"]
    finally:
        loop.stop()
        front.close()
        gateway.close()
