"""What the sandbox-channel tests share: a sandbox channel and a callback receiver, each under
uvicorn in a background thread on 127.0.0.1 (a free port), a gateway client to the
sandbox, fast knobs for every test, and channel requests to send.
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

from paycore.channels import ChannelRequest
from paycore.channels.gateway import HttpChannelClient
from paycore.channels.signing import verify_headers
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
