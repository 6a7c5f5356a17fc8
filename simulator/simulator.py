"""The simulator: Poisson merchant traffic through the HTTP API, and its receivers.

``Simulator(config, merchants).start()`` starts (on daemon threads, nothing at import
time) the merchants' notification receivers, an arrival thread drawing Poisson
arrivals at ``config.rate`` per second, a small pool executing them, and a follow-up
thread that asks the API about trades still processing (a merchant's active query),
closes failed ones and confirms guaranteed ones. :meth:`Simulator.stop` joins them.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .client import MerchantClient
from .flows import Flows, Plan, draw_plan
from .ledger import AuditResult, ClientLedger, TradeRecord, audit
from .marketing import CouponIssuer
from .merchants import SimMerchant, sim_users
from .receiver import ReceivedEvent, ReceiverServer
from .stats import SimStats
from .traffic import DEFAULT_MIX, Mix, interarrival

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SimConfig:
    """How the simulator behaves and where it sends traffic."""

    api_url: str = "http://127.0.0.1:8000"
    rate: float = 2.0  #: arrivals per second (Poisson)
    seed: int | None = None  #: fixes the traffic shape (not the trade numbers)
    receiver_host: str = "127.0.0.1"
    receiver_port: int | None = 0  #: 0 = a free port; None = no receivers
    receiver_failure_ratio: float = 0.1  #: notifications failed on purpose (500/timeout)
    notify_secret: str | None = field(default=None, repr=False)  #: to verify notifications
    sandbox_url: str | None = None  #: for drills (fault knobs)
    sandbox_admin_token: str | None = field(default=None, repr=False)
    mix: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_MIX))
    users: int = 40
    concurrency: int = 8
    max_queue: int = 200  #: arrivals waiting beyond this are shed (counted)
    poll_interval_s: float = 1.0
    poll_after_s: float = 1.5  #: ask about a processing trade once it is this old
    confirm_ratio: float = 0.5  #: guaranteed trades confirmed once paid


class Simulator:
    """Merchant traffic with a client-side ledger; see the module docstring."""

    def __init__(self, config: SimConfig, merchants: Sequence[SimMerchant]) -> None:
        if not merchants:
            raise ValueError("the simulator needs at least one merchant")
        self.config = config
        self.merchants = list(merchants)
        self.mix = Mix(config.mix)
        self.stats = SimStats()
        self.ledger = ClientLedger()
        self.run_id = secrets.token_hex(3)
        self.clients = {
            m.merchant_id: MerchantClient(config.api_url, m.token) for m in self.merchants
        }
        self.coupons = CouponIssuer(config.sandbox_url, config.sandbox_admin_token)
        self.flows = Flows(self.clients, self.ledger, self.stats, self.run_id, self.coupons)
        self.receiver: ReceiverServer | None = None
        self.started_at: float | None = None
        self._rng = random.Random(config.seed)
        self._users = sim_users(config.users)
        self._traffic = threading.Event()  # set: stop arrivals
        self._stop = threading.Event()  # set: stop everything
        self._pool = ThreadPoolExecutor(config.concurrency, thread_name_prefix="sim-flow")
        self._queued = 0
        self._qlock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._by_key = {m.key: m for m in self.merchants}

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> Simulator:
        """Start receivers, arrivals and follow-ups; returns self."""
        if self._threads:
            return self
        cfg = self.config
        if cfg.receiver_port is not None and cfg.notify_secret:
            own = {
                urlsplit(m.notify_url).path: m.notify_secret
                for m in self.merchants
                if m.notify_url and m.notify_secret
            }
            self.receiver = ReceiverServer(
                cfg.notify_secret,
                host=cfg.receiver_host,
                port=cfg.receiver_port,
                failure_ratio=cfg.receiver_failure_ratio,
                seed=cfg.seed,
                on_event=self._on_event,
                path_secrets=own,
            ).start()
        elif cfg.receiver_port is not None:
            log.warning("no notification secret: the simulator runs without receivers")
        self.started_at = time.time()
        for target, name in ((self._arrive, "sim-arrivals"), (self._follow, "sim-follow-up")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def stop_traffic(self) -> None:
        """Stop new arrivals (follow-ups go on) and wait for the running ones."""
        self._traffic.set()
        deadline = time.monotonic() + 30
        while self._queued and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop everything: arrivals, the pool, follow-ups, receivers, HTTP clients."""
        self._traffic.set()
        self._stop.set()
        for t in self._threads:
            t.join(30)
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self.receiver is not None:
            self.receiver.stop()
        for c in self.clients.values():
            c.close()
        self.coupons.close()

    # -- arrivals --------------------------------------------------------------------------
    def _arrive(self) -> None:
        rate = self.config.rate
        while not self._traffic.wait(interarrival(self._rng, rate) if rate > 0 else 1.0):
            if rate <= 0:
                continue
            plan = draw_plan(self._rng, self.mix.choose(self._rng), self.merchants, self._users)
            if plan is None:
                continue
            with self._qlock:
                if self._queued >= self.config.max_queue:
                    self.stats.add("shed")
                    continue
                self._queued += 1
            self._pool.submit(self._run, plan)

    def _run(self, plan: Plan) -> None:
        try:
            self.flows.run(plan)
        except Exception:  # noqa: BLE001 - one broken flow must not stop the traffic
            log.exception("simulated %s failed", plan.action)
        finally:
            with self._qlock:
                self._queued -= 1

    # -- follow-ups ------------------------------------------------------------------------
    def _follow(self) -> None:
        while not self._stop.wait(self.config.poll_interval_s):
            try:
                self.follow_up()
            except Exception:  # noqa: BLE001
                log.exception("simulator follow-up failed")

    def pending(self) -> list[TradeRecord]:
        """Trades still processing, or with a refund still pending."""
        return self.ledger.records(
            lambda r: r.state == "paying" or any(s == "pending" for _, s in r.refunds.values())
        )

    def follow_up(self, *, min_age_s: float | None = None, limit: int = 50) -> int:
        """Ask the API about pending trades (oldest first); returns how many are left."""
        age = self.config.poll_after_s if min_age_s is None else min_age_s
        now = time.monotonic()
        todo = sorted((r for r in self.pending() if now - r.since >= age), key=lambda r: r.since)
        for rec in todo[:limit]:
            self._check(rec)
        ratio = self.config.confirm_ratio
        for rec in self.ledger.records(
            lambda r: (
                r.state == "paid"
                and r.trade_type == "guaranteed"
                and wants_confirm(r.out_trade_no, ratio)
            )
        ):
            self.flows.confirm(rec)
        return len(self.pending())

    def _check(self, rec: TradeRecord) -> None:
        client = self.clients[rec.merchant_id]
        if rec.state == "paying":
            got = client.detail(rec.out_trade_no)
            status = got.body.get("trade", {}).get("status") if got.ok else None
            if status in ("paid", "confirmed"):
                self.flows.paid(rec)
            elif status == "created" and not any(
                o["status"] == "processing" for o in got.body.get("pay_orders", [])
            ):
                self.flows.failed(rec)
            elif status == "closed":
                rec.move("closed")
            rec.since = time.monotonic()  # ask again one interval later
        for no, (_, state) in list(rec.refunds.items()):
            if state != "pending":
                continue
            got = client.detail(no)
            status = got.body.get("trade", {}).get("status") if got.ok else None
            if status in ("paid", "closed"):
                self.flows.refund_done(rec, no, status == "paid")
            elif got.status == 404:
                self.flows.refund_done(rec, no, False)

    def _on_event(self, event: ReceivedEvent) -> None:
        """A notification reached a receiver (once per event id): learn from it."""
        self.stats.add("notifications")
        key = event.path.rstrip("/").rsplit("/", 1)[-1]
        m = self._by_key.get(key)
        if m is None:
            return
        data = event.data
        if event.event_type == "trade.paid":
            rec = self.ledger.get(m.merchant_id, str(data.get("out_trade_no")))
            if rec is not None:
                self.flows.paid(rec)
        elif event.event_type in ("refund.succeeded", "refund.failed"):
            rec = self.ledger.get(m.merchant_id, str(data.get("origin_out_trade_no")))
            if rec is not None:
                self.flows.refund_done(
                    rec, str(data.get("out_refund_no")), event.event_type == "refund.succeeded"
                )

    # -- the end of a run ------------------------------------------------------------------
    def settle(self, timeout_s: float = 60.0) -> int:
        """After :meth:`stop_traffic`: follow up until nothing is pending or the time is
        up; returns how many trades are still pending."""
        deadline = time.monotonic() + timeout_s
        left = self.follow_up(min_age_s=0.0, limit=500)
        while left and time.monotonic() < deadline:
            time.sleep(min(1.0, self.config.poll_interval_s))
            left = self.follow_up(min_age_s=0.0, limit=500)
        return left

    def audit(self) -> AuditResult:
        """Compare the ledger with the pay core (through the API): lost and doubled."""

        def fetch(rec: TradeRecord) -> dict[str, Any] | None:
            got = self.clients[rec.merchant_id].detail(rec.out_trade_no)
            return got.body if got.ok else None

        return audit(self.ledger, fetch)


def wants_confirm(out_trade_no: str, ratio: float) -> bool:
    """Whether the merchant confirms this guaranteed trade (a stable choice per trade)."""
    return zlib.crc32(out_trade_no.encode()) % 1000 < ratio * 1000
