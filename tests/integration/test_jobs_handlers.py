"""Compensation handlers and the worker's scheduling, over SQLite, PostgreSQL and the sandbox."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from types import SimpleNamespace

from fastapi import FastAPI, Request
from sqlalchemy import select
from test_jobs_tasks import Clock, entries

from paycore import ChannelRequest, PayRequest, PayTool
from paycore.channels.client import ChannelStatus
from paycore.channels.errors import ChannelRejected, ChannelUnavailable
from paycore.context import BizContext
from paycore.db.schema import JournalEntry, PayException, PayItem
from paycore.jobs import (
    EXCEPTION_REFUND,
    LEDGER_POSTING,
    STUCK_CHANNEL_CALL,
    Handlers,
    TaskQueue,
    Worker,
    channel_request_payload,
    ledger_posting_payload,
    refund_txn_no,
)
from paycore.ledger import (
    channel_clearing,
    credit,
    debit,
    merchant_payable,
    platform_transit,
    trial_balance,
    user_balance,
)
from runtime.worker import build_scheduler, run_worker

T0 = datetime(2025, 1, 1, tzinfo=UTC)
CTX = BizContext("m1", "goods", "physical", "SANDBOX_A")


# -- handlers ------------------------------------------------------------------------------
class StubChannel:
    """A channel gateway double: records sends, answers queries from ``states``."""

    def __init__(self) -> None:
        self.sent: list[ChannelRequest] = []
        self.states: dict[str, tuple[str, int | None]] = {}
        self.after_send = "processing"
        self.send_error: Exception | None = None

    def send(self, request: ChannelRequest, notify_url: str) -> None:
        assert notify_url.endswith(f"/v1/channels/{request.pay_org_no}/callback")
        if self.send_error is not None:
            raise self.send_error
        self.sent.append(request)
        self.states.setdefault(request.channel_txn_no, (self.after_send, request.amount))

    def query_status(self, org: str, txn: str) -> ChannelStatus:
        status, amount = self.states.get(txn, ("unknown", None))
        return ChannelStatus(org, txn, status, amount, "CNY" if amount else None, "ref")


def jobs(core, gateway=None, clock=None, **kw):
    queue = TaskQueue(core.db, core.ids, clock=clock or core.clock, worker_id="w1", **kw)
    handlers = Handlers(
        core, gateway, notify_url_for=lambda o: f"http://api/v1/channels/{o}/callback"
    )
    return queue, handlers, Worker(core, queue, handlers)


def exception_row(core) -> PayException:
    with core.db.session() as s:
        return s.execute(select(PayException)).scalar_one()


def test_exception_refund_returns_a_partial_payment_in_full(shop, core):
    shop.fund("u1", 300)
    t = shop.trade(amount=1_000)
    po = core.payments.pay(
        shop.mid, PayRequest(t.out_trade_no, (PayTool("balance", 300), PayTool("channel", 700)))
    )
    assert shop.settle(po.items[1], "failed") == "failed"
    assert (shop.balance("u1"), shop.account(platform_transit("CNY"))) == (0, 300)
    queue, handlers, worker = jobs(core)
    assert handlers.enqueue_open_exceptions() == 1
    assert handlers.enqueue_open_exceptions() == 0  # idempotent by biz_key
    assert worker.run_once() == 1 and worker.counts["done"] == 1
    assert shop.balance("u1") == 300
    assert shop.account(platform_transit("CNY")) == 0
    assert exception_row(core).status == "resolved"
    assert trial_balance(core.db).ok
    (task,) = queue.list(kind=EXCEPTION_REFUND)
    assert task.status == "done" and task.attempts == 1
    n = entries(core.db)
    handlers.run(task)  # a repeated run (a worker died before recording it) changes nothing
    with core.db.session() as s:  # even with the exception reopened: postings are keyed
        s.execute(PayException.__table__.update().values(status="open"))
    handlers.run(task)
    assert (entries(core.db), shop.balance("u1")) == (n, 300)
    assert shop.account(platform_transit("CNY")) == 0 and trial_balance(core.db).ok


def mismatch(shop, core) -> PayItem:
    """A channel payment the channel settled one unit short: 999 sits in transit."""
    t = shop.trade(amount=1_000)
    po = core.payments.pay(shop.mid, PayRequest(t.out_trade_no, (PayTool("channel", 1_000),)))
    assert shop.settle(po.items[0], amount=999) == "exception"
    assert shop.account(platform_transit("CNY")) == 999
    with core.db.session() as s:
        return s.get_one(PayItem, po.items[0].id)


def test_exception_refund_through_the_channel_waits_for_its_result(shop, core):
    item = mismatch(shop, core)
    stub, clock = StubChannel(), Clock(datetime.now(UTC))
    queue, handlers, worker = jobs(core, stub, clock)
    handlers.enqueue_open_exceptions()
    worker.run_once()
    (sent,) = stub.sent
    assert (sent.kind, sent.channel_txn_no, sent.amount) == ("refund", refund_txn_no(item.id), 999)
    assert sent.origin_channel_txn_no == item.channel_txn_no
    assert worker.counts["retried"] == 1 and "RefundPending" in queue.list()[0].last_error
    assert exception_row(core).status == "open"
    stub.states[sent.channel_txn_no] = ("success", 999)
    clock.advance(60)
    assert worker.run_once() == 1 and len(stub.sent) == 1  # asked first: not sent twice
    assert exception_row(core).status == "resolved"
    assert shop.account(platform_transit("CNY")) == 0
    assert shop.account(channel_clearing("SANDBOX_A", "CNY")) == 0
    assert trial_balance(core.db).ok


def test_exception_refund_refused_by_the_channel_goes_to_manual(shop, core):
    mismatch(shop, core)
    stub = StubChannel()
    stub.send_error = ChannelRejected("origin transaction not found")
    queue, handlers, worker = jobs(core, stub)
    handlers.enqueue_open_exceptions()
    worker.run_once()
    (task,) = queue.list()
    assert (task.status, worker.counts["failed"]) == ("failed", 1)
    assert "origin transaction not found" in task.last_error
    assert exception_row(core).status == "manual"
    assert shop.account(platform_transit("CNY")) == 999  # nothing moved: a human decides
    assert handlers.enqueue_open_exceptions() == 0


def test_exception_refund_retries_an_unavailable_channel_then_hands_over(shop, core):
    mismatch(shop, core)
    stub, clock = StubChannel(), Clock(datetime.now(UTC))
    stub.send_error = ChannelUnavailable("timeout")
    queue, handlers, worker = jobs(core, stub, clock)
    handlers.enqueue_open_exceptions()
    queue.enqueue(None, "noop", "n", {})  # a kind this worker has no handler for: left alone
    for _ in range(8):
        worker.run_once()
        clock.advance(7200)
    assert worker.counts == {
        "done": 0,
        "retried": 7,
        "deferred": 0,
        "failed": 0,
        "manual": 1,
        "lost": 0,
    }
    assert exception_row(core).status == "manual"
    assert queue.backlog()["pending"] == 1  # the unknown kind


def test_ledger_posting_task_posts_once_or_fails_for_good(core):
    queue, handlers, worker = jobs(core)
    legs = [debit(merchant_payable("m1", "CNY"), 500), credit(user_balance("m1", "u9", "CNY"), 500)]
    payload = ledger_posting_payload(
        biz_type="bonus", biz_key="b1", ctx=CTX, currency="CNY", legs=legs, memo="async posting"
    )
    queue.enqueue(None, LEDGER_POSTING, "bonus:b1", payload)
    queue.enqueue(None, LEDGER_POSTING, "bonus:b1-again", payload)  # same entry: posted once
    bad = dict(payload, biz_key="b2", legs=payload["legs"][:1])
    queue.enqueue(None, LEDGER_POSTING, "bonus:b2", bad)
    queue.enqueue(None, LEDGER_POSTING, "bonus:b3", {"legs": "nonsense"})
    overdraw = ledger_posting_payload(
        biz_type="bonus",
        biz_key="b4",
        ctx=CTX,
        currency="CNY",
        legs=[debit(user_balance("m1", "u0", "CNY"), 1), credit(merchant_payable("m1", "CNY"), 1)],
    )
    queue.enqueue(None, LEDGER_POSTING, "bonus:b4", overdraw)
    assert worker.run_once() == 5
    assert worker.counts == {
        "done": 2,
        "retried": 0,
        "deferred": 0,
        "failed": 3,
        "manual": 0,
        "lost": 0,
    }
    with core.db.session() as s:
        posted = s.execute(select(JournalEntry.biz_key).where(JournalEntry.biz_type == "bonus"))
        assert posted.scalars().all() == ["b1"]
    errors = {t.biz_key: t.last_error for t in queue.list(status="failed")}
    assert "unbalanced_entry" in errors["bonus:b2"] and "malformed" in errors["bonus:b3"]
    assert "insufficient_balance" in errors["bonus:b4"]
    assert trial_balance(core.db).ok


def test_stuck_channel_call_is_sent_again_unless_settled_meanwhile(shop, core):
    t = shop.trade(amount=700)
    po = core.payments.pay(shop.mid, PayRequest(t.out_trade_no, (PayTool("channel", 700),)))
    item = po.items[0]
    req = ChannelRequest(
        "pay", "SANDBOX_A", str(item.channel_txn_no), 700, "CNY", shop.mid, t.id, po.id
    )
    stub = StubChannel()
    queue, handlers, worker = jobs(core, stub)
    queue.enqueue(
        None, STUCK_CHANNEL_CALL, f"pay:{item.channel_txn_no}", channel_request_payload(req)
    )
    worker.run_once()
    assert stub.sent == [req] and queue.backlog()["done"] == 1
    shop.settle(item)
    queue.enqueue(
        None, STUCK_CHANNEL_CALL, f"again:{item.channel_txn_no}", channel_request_payload(req)
    )
    worker.run_once()
    assert stub.sent == [req] and queue.backlog()["done"] == 2  # settled: nothing sent


# -- scheduling ----------------------------------------------------------------------------
def test_scheduler_jobs_never_overlap_and_nothing_starts_by_itself(core):
    _, _, worker = jobs(core)
    scheduler = build_scheduler(worker, [(lambda: None, 30, "recon")])
    assert not scheduler.running
    found = {j.id: j for j in scheduler.get_jobs()}
    assert set(found) == {"compensation", "exception_scan", "recon"}
    assert all(j.max_instances == 1 and j.coalesce for j in found.values())


def test_run_worker_processes_tasks_until_stopped(shop, core):
    platform = SimpleNamespace(paycore=core, settings=SimpleNamespace(api_url="http://api"))
    shop.fund("u1", 300)
    t = shop.trade(amount=1_000)
    po = core.payments.pay(
        shop.mid, PayRequest(t.out_trade_no, (PayTool("balance", 300), PayTool("channel", 700)))
    )
    shop.settle(po.items[1], "failed")
    stop = threading.Event()
    runner = threading.Thread(
        target=run_worker, args=(platform, stop), kwargs={"install_signals": False}
    )
    runner.start()
    try:
        deadline = time.monotonic() + 30
        while exception_row(core).status != "resolved" and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        stop.set()
        runner.join(15)
    assert not runner.is_alive()
    assert exception_row(core).status == "resolved" and shop.balance("u1") == 300


# -- against the sandbox channel over HTTP -------------------------------------------------
def test_exception_refund_at_the_sandbox_channel(shop, core):
    """An amount mismatch at a real (sandbox) channel is refunded there, then posted."""
    from conftest import LiveServer

    from paycore.channels.gateway import build_gateway
    from simulator.sandbox import Knobs, SandboxConfig, create_sandbox_app

    secrets = {"SANDBOX_A": "secret-a-0123"}
    fast = Knobs(latency_ms=1.0, latency_jitter=0.0, callback_delay_ms=10.0)
    sandbox_app = create_sandbox_app(
        SandboxConfig(secrets=secrets, admin_token="admin", knobs={"SANDBOX_A": fast})
    )
    receiver = FastAPI()
    callbacks: list[bytes] = []

    @receiver.post("/v1/channels/{org}/callback")
    async def callback(org: str, request: Request) -> dict[str, str]:
        callbacks.append(await request.body())
        return {"result": "ok"}

    with LiveServer(sandbox_app) as sandbox, LiveServer(receiver) as api:
        gateway = build_gateway(sandbox.url, secrets)
        notify = f"{api.url}/v1/channels/SANDBOX_A/callback"
        t = shop.trade(amount=1_000)
        po = core.payments.pay(shop.mid, PayRequest(t.out_trade_no, (PayTool("channel", 1_000),)))
        item = po.items[0]
        sandbox_app.state.sandbox.update_knobs("SANDBOX_A", {"amount_mismatch_rate": 1.0})
        gateway.send(
            ChannelRequest(
                "pay", "SANDBOX_A", str(item.channel_txn_no), 1_000, "CNY", shop.mid, t.id, po.id
            ),
            notify,
        )
        result = None
        for _ in range(100):
            result = gateway.query("SANDBOX_A", str(item.channel_txn_no))
            if result is not None:
                break
            time.sleep(0.05)
        assert result is not None and result.amount == 1_001  # the channel took one unit more
        sandbox_app.state.sandbox.update_knobs("SANDBOX_A", {"amount_mismatch_rate": 0.0})
        assert core.payments.on_channel_result(result) == "exception"
        assert shop.account(platform_transit("CNY")) == 1_001

        clock = Clock(datetime.now(UTC))
        queue = TaskQueue(core.db, core.ids, clock=clock, worker_id="w1")
        handlers = Handlers(core, gateway, notify_url_for=lambda org: notify)
        worker = Worker(core, queue, handlers)
        handlers.enqueue_open_exceptions()
        for _ in range(50):
            worker.run_once()
            if exception_row(core).status == "resolved":
                break
            clock.advance(600)
            time.sleep(0.05)
        gateway.close()
        refund = sandbox_app.state.sandbox.get("SANDBOX_A", refund_txn_no(item.id))
    assert exception_row(core).status == "resolved"
    assert (refund.kind, refund.status, refund.amount) == ("refund", "success", 1_001)
    assert refund.origin_channel_txn_no == item.channel_txn_no
    assert shop.account(platform_transit("CNY")) == 0
    assert shop.account(channel_clearing("SANDBOX_A", "CNY")) == 0
    assert trial_balance(core.db).ok
