"""The sandbox channel, request signing and the channel gateway, over real HTTP.

A sandbox channel and a callback receiver each run under uvicorn in a background
thread on 127.0.0.1 (a free port); the gateway's client talks to the sandbox, and the
sandbox calls the receiver back.
"""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from paycore.channels import ChannelRequest, ChannelResult
from paycore.channels.errors import (
    ChannelRejected,
    ChannelUnavailable,
    InvalidSignature,
    UnknownChannel,
)
from paycore.channels.gateway import HttpChannelClient, build_gateway
from paycore.channels.signing import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign,
    signed_headers,
    verify,
    verify_headers,
)
from paycore.errors import DependencyUnavailable, InvalidRequest
from simulator.sandbox import Knobs, SandboxConfig, create_sandbox_app

SECRETS = {"SANDBOX_A": "secret-a-0123", "SANDBOX_B": "secret-b-4567", "STMT": "secret-s-89"}
ADMIN = "admin-token-xyz"
FAST = Knobs(latency_ms=1.0, latency_jitter=0.0, callback_delay_ms=10.0)


# -- servers in threads --------------------------------------------------------------------
class ServerThread:
    """A uvicorn server for ``app`` on a free 127.0.0.1 port, in a daemon thread."""

    def __init__(self, app: FastAPI, health: str) -> None:
        self.app = app
        self.health = health
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def start(self) -> ServerThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.server.started:
                try:
                    if httpx.get(self.url + self.health, timeout=1).status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


class Receiver:
    """Collects callbacks, checking each one's signature with its org's secret."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[dict[str, Any]] = []
        self.fail: dict[str, int] = {}  # channel_txn_no -> non-2xx answers still to give

    def build(self) -> FastAPI:
        app = FastAPI()

        @app.get("/health")
        async def health() -> dict[str, bool]:
            return {"ok": True}

        @app.post("/cb/{org}")
        async def callback(org: str, request: Request) -> Response:
            body = await request.body()
            valid = verify_headers(SECRETS.get(org, "?"), request.headers, body)
            payload = json.loads(body)
            txn = payload.get("channel_txn_no", "")
            with self.lock:
                failing = self.fail.get(txn, 0) > 0
                if failing:
                    self.fail[txn] -= 1
                self.calls.append(
                    {
                        "org": org,
                        "valid": valid,
                        "payload": payload,
                        "answered": not failing,
                        "headers": dict(request.headers),
                        "body": body,
                    }
                )
            if failing:
                return JSONResponse({"ok": False}, status_code=500)
            return JSONResponse({"ok": True})

        return app

    def of(self, txn: str) -> list[dict[str, Any]]:
        with self.lock:
            return [c for c in self.calls if c["payload"].get("channel_txn_no") == txn]

    def wait(self, txn: str, n: int = 1, timeout: float = 5.0) -> list[dict[str, Any]]:
        assert wait_until(lambda: len(self.of(txn)) >= n, timeout), f"{len(self.of(txn))} < {n}"
        return self.of(txn)


def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture(scope="module")
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()
    server = ServerThread(rec.build(), "/health").start()
    yield rec, server.url
    server.stop()


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ServerThread]:
    app = create_sandbox_app(SandboxConfig(SECRETS, ADMIN, seed=7, callback_backoff_ms=20))
    server = ServerThread(app, "/healthz").start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def fast_knobs(sandbox: ServerThread) -> None:
    for org in SECRETS:
        sandbox.app.state.sandbox.set_knobs(org, FAST)


def knobs(sandbox: ServerThread, org: str = "SANDBOX_A", **changes: Any) -> None:
    sandbox.app.state.sandbox.set_knobs(org, FAST.updated(changes))


@pytest.fixture
def client(sandbox: ServerThread) -> Iterator[HttpChannelClient]:
    with HttpChannelClient(sandbox.url, "SANDBOX_A", SECRETS["SANDBOX_A"]) as c:
        yield c


def request(
    kind: str = "pay", amount: int = 1000, org: str = "SANDBOX_A", origin: str | None = None
) -> ChannelRequest:
    return ChannelRequest(
        kind, org, uuid.uuid4().hex[:20], amount, "CNY", "m1", 1, 2, origin_channel_txn_no=origin
    )


def notify(receiver: tuple[Receiver, str], org: str = "SANDBOX_A") -> str:
    return f"{receiver[1]}/cb/{org}"


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


def test_fail_rate_one_calls_back_failed(client, receiver, sandbox) -> None:
    knobs(sandbox, fail_rate=1.0)
    req = request()
    client.pay(req, notify(receiver))
    (call,) = receiver[0].wait(req.channel_txn_no)
    assert call["payload"]["status"] == "failed" and call["valid"]
    result = client.query(req.channel_txn_no)
    assert result is not None and result.status == "failed"


def test_error_rate_one_is_channel_unavailable(client, receiver, sandbox) -> None:
    knobs(sandbox, error_rate=1.0)
    req = request()
    with pytest.raises(ChannelUnavailable) as info:
        client.pay(req, notify(receiver))
    err = info.value
    assert isinstance(err, DependencyUnavailable) and err.code == "channel_unavailable"
    assert "503" in str(err) and SECRETS["SANDBOX_A"] not in str(err)
    assert client.query_status(req.channel_txn_no).status == "unknown"  # nothing was booked


def test_timeout_is_channel_unavailable(sandbox, receiver) -> None:
    knobs(sandbox, timeout_rate=1.0, timeout_ms=800.0)
    req = request()
    with HttpChannelClient(sandbox.url, "SANDBOX_A", SECRETS["SANDBOX_A"], timeout=0.2) as c:
        started = time.monotonic()
        with pytest.raises(ChannelUnavailable, match="timed out"):
            c.pay(req, notify(receiver))
        assert time.monotonic() - started < 0.7
    # the channel did take it, late: the outcome still arrives by callback
    (call,) = receiver[0].wait(req.channel_txn_no, timeout=5)
    assert call["payload"]["status"] == "success"


def test_a_dropped_pay_is_unavailable_and_never_sent_twice() -> None:
    """A channel that reads the pay and hangs up without answering: the outcome is
    unknown (the active query settles it), and the client must not send it again: a
    retried pay can be a second charge."""
    seen: list[bytes] = []
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        srv.settimeout(5)

        def hang_up() -> None:
            for _ in range(3):  # room for retries, were the client to make them
                try:
                    conn, _ = srv.accept()
                except OSError:
                    return
                with conn:
                    seen.append(conn.recv(65536))

        server = threading.Thread(target=hang_up, daemon=True)
        server.start()
        url = f"http://127.0.0.1:{srv.getsockname()[1]}"
        with (
            HttpChannelClient(url, "SANDBOX_A", SECRETS["SANDBOX_A"], timeout=2.0) as c,
            pytest.raises(ChannelUnavailable) as info,
        ):
            c.pay(request(), "http://127.0.0.1:9/cb")
        time.sleep(0.3)  # a retry would have connected by now
    assert len(seen) == 1 and seen[0].startswith(b"POST /gateway/SANDBOX_A/pay ")
    assert info.value.code == "channel_unavailable"
    assert SECRETS["SANDBOX_A"] not in str(info.value)


def test_an_unreachable_channel_is_unavailable() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with (
        HttpChannelClient(f"http://127.0.0.1:{port}", "SANDBOX_A", SECRETS["SANDBOX_A"]) as c,
        pytest.raises(ChannelUnavailable, match="SANDBOX_A pay"),
    ):
        c.pay(request(), "http://127.0.0.1:9/cb")


def test_duplicate_callbacks(client, receiver, sandbox) -> None:
    knobs(sandbox, duplicate_callbacks=2)
    req = request()
    client.pay(req, notify(receiver))
    calls = receiver[0].wait(req.channel_txn_no, 3)
    time.sleep(0.1)
    assert len(receiver[0].of(req.channel_txn_no)) == 3
    assert all(c["valid"] and c["payload"] == calls[0]["payload"] for c in calls)


def test_amount_mismatch(client, receiver, sandbox) -> None:
    knobs(sandbox, amount_mismatch_rate=1.0)
    req = request(amount=500)
    client.pay(req, notify(receiver))
    (call,) = receiver[0].wait(req.channel_txn_no)
    assert call["payload"]["amount"] == 501
    result = client.query(req.channel_txn_no)
    assert result is not None and result.amount == 501
    refund = request(kind="refund", amount=501, origin=req.channel_txn_no)
    client.refund(refund, notify(receiver))
    (call,) = receiver[0].wait(refund.channel_txn_no)
    assert call["payload"]["amount"] == 501  # a refund settles as asked


def test_query_states(client, receiver, sandbox) -> None:
    knobs(sandbox, callback_delay_ms=400.0)
    req = request(kind="withdraw", amount=700)
    assert client.query_status(req.channel_txn_no).status == "unknown"
    assert client.query(req.channel_txn_no) is None
    ack = client.withdraw(req, notify(receiver))
    status = client.query_status(req.channel_txn_no)
    assert (status.status, status.amount, status.channel_ref) == (
        "processing",
        700,
        ack.channel_ref,
    )
    assert client.query(req.channel_txn_no) is None
    (call,) = receiver[0].wait(req.channel_txn_no)
    assert call["payload"]["kind"] == "withdraw"
    assert client.query(req.channel_txn_no) == ChannelResult(
        "SANDBOX_A", req.channel_txn_no, "success", 700, "CNY", ack.channel_ref
    )
