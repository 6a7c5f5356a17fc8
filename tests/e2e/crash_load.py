"""The crash test's load and processes: the merchants' retrying clients, the platform's
CLI processes, and the operator's recovery loop (used by ``test_crash.py``)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SECRETS = {"SANDBOX_A": "crash-test-channel-secret-A", "SANDBOX_B": "crash-test-channel-secret-B"}
ORGS = tuple(SECRETS)
#: A fails 12 % of its transactions (pays and refunds); B settles 8 % of its pays for one
#: minor unit more than asked (amount mismatch: refunded in full through B by compensation).
#: Both answer 6 % of sends with a 503 before booking them, are slow, and call back twice.
KNOBS = {
    "SANDBOX_A": {"fail_rate": 0.12},
    "SANDBOX_B": {"amount_mismatch_rate": 0.08},
}
COMMON_KNOBS = {
    "error_rate": 0.06,
    "latency_ms": 30.0,
    "callback_delay_ms": 400.0,
    "duplicate_callbacks": 1,
}
ADMIN = "crash-admin"
FEE_BPS = 60
OPERATOR_NODE = 1  # the Snowflake node id of the operator's tools; processes get 10, 11, ...
USERS = [f"u{i}" for i in range(4)]
FUNDING = 500_000  # per user, by a channel recharge before the load
THREADS, PER_THREAD = 6, 14  # 84 trades
BUSY = {429, 500, 502, 503, 504}  # retry: the platform is down, restarting or shedding


@dataclass
class Plan:
    no: str
    user: str
    kind: str  # channel | balance | combo
    amount: int
    refund: int  # 0: no refund
    org: str

    @property
    def tools(self) -> list[dict]:
        if self.kind == "channel":
            return [{"tool": "channel", "amount": self.amount}]
        if self.kind == "balance":
            return [{"tool": "balance", "amount": self.amount}]
        return [
            {"tool": "balance", "amount": self.balance_part},
            {"tool": "channel", "amount": self.amount - self.balance_part},
        ]

    @property
    def balance_part(self) -> int:
        return {"channel": 0, "balance": self.amount, "combo": self.amount * 3 // 10}[self.kind]


@dataclass
class Outcome:
    paid: bool = False
    refund_status: str = ""  # paid | closed | "" (none)


@dataclass
class Load:
    """What the clients did and saw; shared by the client threads."""

    plans: list[Plan] = field(default_factory=list)
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    pays_sent: int = 0
    retries: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    half_way: threading.Event = field(default_factory=threading.Event)


def make_plans() -> list[list[Plan]]:
    rng = random.Random(8)
    kinds = ("channel", "balance", "combo")
    out = []
    for t in range(THREADS):
        plans = []
        for j in range(PER_THREAD):
            kind = kinds[(t + j) % 3]
            amount = rng.randrange(1_000, 20_000)
            refund = 0
            if kind != "balance" and j % 3 == 0:
                refund = amount * 6 // 10  # a combo refund also reaches its channel part
            org = ORGS[(t * PER_THREAD + j) % len(ORGS)]
            plans.append(Plan(f"k{t}-{j}", USERS[(t + j) % len(USERS)], kind, amount, refund, org))
        out.append(plans)
    return out


class Merchant:
    """A merchant's HTTP client that retries each request until it has a definite answer."""

    def __init__(self, base: str, token: str, load: Load, deadline: float) -> None:
        self.http = httpx.Client(
            base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        self.load = load
        self.deadline = deadline

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        while True:
            if time.monotonic() > self.deadline:
                raise AssertionError(f"{method} {path}: no answer before the deadline")
            try:
                r = self.http.request(method, path, json=body)
            except httpx.TransportError as exc:  # the platform died mid-request, or is down
                self._retry(type(exc).__name__)
                continue
            code = r.json().get("error", {}).get("code") if r.status_code >= 400 else None
            if r.status_code in BUSY or code == "order_busy":  # a dead holder's lock: wait
                self._retry(str(code or r.status_code))
                continue
            if r.status_code != 200:
                raise AssertionError(f"{method} {path} -> {r.status_code} {r.text}")
            return r.json()

    def _retry(self, why: str) -> None:
        with self.load.lock:
            self.load.retries[why] += 1
        time.sleep(0.2)

    def wait_trade(self, no: str, done: set[str]) -> dict:
        while True:
            detail = self.call("GET", f"/v1/trades/{no}")
            if detail["trade"]["status"] in done:
                return detail
            time.sleep(0.15)

    def run(self, p: Plan) -> Outcome:
        self.call(
            "POST",
            "/v1/trades",
            {
                "out_trade_no": p.no,
                "trade_type": "instant",
                "amount": p.amount,
                "currency": "CNY",
                "user_id": p.user,
                "order_type": "goods",
                "sub_type": "physical",
                "pay_org_no": p.org,
            },
        )
        with self.load.lock:
            self.load.pays_sent += 1
            if self.load.pays_sent >= len(self.load.plans) // 2:
                self.load.half_way.set()
        self.call("POST", f"/v1/trades/{p.no}/pay", {"tools": p.tools})
        # created: the pay failed (the trade is open to pay again; this merchant closes it)
        detail = self.wait_trade(p.no, {"paid", "created"})
        if detail["trade"]["status"] == "created":
            assert [po["status"] for po in detail["pay_orders"]] == ["failed"], detail
            self.call("POST", f"/v1/trades/{p.no}/close")
            return Outcome(paid=False)
        out = Outcome(paid=True)
        if p.refund:
            self.call(
                "POST",
                f"/v1/trades/{p.no}/refunds",
                {"out_refund_no": f"{p.no}-r", "amount": p.refund},
            )
            refund = self.wait_trade(f"{p.no}-r", {"paid", "closed"})
            out.refund_status = refund["trade"]["status"]
        return out

    def run_all(self, plans: list[Plan]) -> None:
        try:
            for p in plans:
                outcome = self.run(p)
                with self.load.lock:
                    self.load.outcomes[p.no] = outcome
        except BaseException as exc:  # noqa: BLE001 - reported by the test thread
            with self.load.lock:
                self.load.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            self.http.close()


class Stack:
    """The platform's processes, started through the CLI."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.procs: dict[str, subprocess.Popen] = {}
        self.starts: Counter = Counter()

    def start(self, name: str, *args: str) -> subprocess.Popen:
        self.starts[name] += 1
        log = (self.tmp / f"{name}.{self.starts[name]}.log").open("w")
        # one Snowflake node id per process ever started: a restarted API and worker once
        # shared one, and a clash of their ids dropped a ledger posting
        env = self.env | {"PAYWATCH_NODE_ID": str(10 + sum(self.starts.values()))}
        proc = subprocess.Popen(
            [sys.executable, "-m", "runtime.cli", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs[name] = proc
        return proc

    def kill9(self, name: str) -> None:
        proc = self.procs[name]
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown hook of any kind runs
        assert proc.wait(10) == -signal.SIGKILL

    def log(self, name: str) -> str:
        return "".join(
            (self.tmp / f"{name}.{n}.log").read_text() for n in range(1, self.starts[name] + 1)
        )

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.25)


class Operator:
    """What the on-call engineer runs after the restart (docs/runbook.md, crash recovery):
    the active query of channel items stuck in processing, at once and then every
    second, instead of waiting for the worker's 30 s timer and 60 s first delay."""

    def __init__(self, pg_url: str, redis_url: str, sandbox_url: str) -> None:
        from paycore import PayCore
        from paycore.channels.gateway import build_gateway
        from paycore.ids import IdGenerator
        from paycore.jobs.active_query import ActiveQuery
        from paycore.locks import make_lock

        self.core = PayCore(pg_url, lock=make_lock(redis_url), ids=IdGenerator(OPERATOR_NODE))
        self.gateway = build_gateway(sandbox_url, SECRETS)
        self.active = ActiveQuery(
            self.core, self.gateway, first_after_s=2, interval_s=1, max_attempts=60
        )
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.wait(1.0):
            with contextlib.suppress(Exception):  # retried next second, like the scheduled job
                self.active.run_once()

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(10)
        self.gateway.close()
        self.core.close()
