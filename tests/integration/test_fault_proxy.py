"""The simulator's fault proxy: latency, cut connections, and Redis taken down and back."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from simulator.faultproxy import FaultProxy, proxied_url, upstream_of


# -- the fault proxy -------------------------------------------------------------------------
@pytest.fixture
def echo_server():
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue

            def echo(c=conn):
                with c:
                    while data := c.recv(1024):
                        c.sendall(data)

            threading.Thread(target=echo, daemon=True).start()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield srv.getsockname()[:2]
    stop.set()
    t.join(2)
    srv.close()


def _roundtrip(addr, payload=b"ping") -> float:
    start = time.perf_counter()
    with socket.create_connection(addr, timeout=3) as c:
        c.sendall(payload)
        assert c.recv(1024) == payload
    return time.perf_counter() - start


def test_fault_proxy_adds_latency_and_cuts_connections(echo_server):
    proxy = FaultProxy(echo_server, name="echo").start()
    try:
        assert _roundtrip(proxy.address) < 0.15
        proxy.set(latency_ms=200)
        assert _roundtrip(proxy.address) >= 0.2
        proxy.reset()
        held = socket.create_connection(proxy.address, timeout=3)
        held.sendall(b"a")
        assert held.recv(10) == b"a"
        proxy.set(down=True)  # the open connection is cut, new ones are closed at once
        assert held.recv(10) == b""
        held.close()
        with socket.create_connection(proxy.address, timeout=3) as refused:
            assert refused.recv(10) == b""  # accepted and closed at once, as a dead server
        assert proxy.refused == 1
        proxy.reset()
        assert _roundtrip(proxy.address) < 0.15
    finally:
        proxy.stop()
    assert upstream_of("sqlite:///var/paywatch.db", 5432) is None
    assert upstream_of("postgresql+psycopg://u:pw@db:6543/x", 5432) == ("db", 6543)
    url = proxied_url("postgresql+psycopg://u:pw@db/x?options=-c", proxy)
    host, port = proxy.address
    assert url == f"postgresql+psycopg://u:pw@{host}:{port}/x?options=-c"


def test_fault_proxy_takes_redis_down_and_back(redis_url):
    import redis

    upstream = upstream_of(redis_url, 6379)
    assert upstream is not None
    proxy = FaultProxy(upstream, name="redis").start()
    client = redis.Redis.from_url(
        proxied_url(redis_url, proxy), socket_timeout=1, socket_connect_timeout=1
    )
    try:
        assert client.ping()
        proxy.set(down=True)
        with pytest.raises(redis.ConnectionError):
            client.ping()
        proxy.reset()
        assert client.ping()
    finally:
        client.close()
        proxy.stop()
