"""The sandbox channel's failures and anomalies through the channel gateway, over real HTTP:
failed and erroring channels, timeouts, dropped and unreachable connections, duplicate
callbacks, amount mismatches, query states (servers in ``sandbox_servers``).
"""

from __future__ import annotations

import socket
import threading
import time

import pytest
from sandbox_servers import (  # noqa: F401 - fixtures (fast_knobs: autouse)
    SECRETS,
    client,
    fast_knobs,
    knobs,
    notify,
    receiver,
    request,
    sandbox,
)

from paycore.channels import ChannelResult
from paycore.channels.errors import ChannelUnavailable
from paycore.channels.gateway import HttpChannelClient
from paycore.errors import DependencyUnavailable


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
        pytest.raises(ChannelUnavailable, match="SANDBOX_A pay") as refused,
    ):
        c.pay(request(), "http://127.0.0.1:9/cb")
    # a refusal says so: urllib3 files it under connect timeouts, which it is not
    assert "timed out" not in str(refused.value) and "NewConnectionError" in str(refused.value)


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
