"""The coupon pay tool against the sandbox's coupon service over real HTTP, on SQLite and
PostgreSQL: a coupon pays its part from the platform's coupon funding, a full refund gives
the money back and the coupon to its user; a used coupon is refused with nothing written;
a coupon service outage lets the pay go on without the coupon only where the merchant
allows it (else 503 naming ``coupon``, nothing written); a failed order's coupon comes back
through compensation. Every coupon call goes through the guard's weak ``coupon`` edge."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from conftest import LiveServer, Shop, table_counts
from sqlalchemy import select

from paycore import Database, PayCore, PayRequest, PayTool, RefundRequest
from paycore.coupons import CouponRejected, HttpCouponClient
from paycore.db.schema import PayException
from paycore.ledger import coupon_funding, platform_transit, trial_balance
from paycore.tools import ToolEnv
from paycore.tools.coupon import CouponTool
from runtime.wiring import BUSINESS_ERRORS
from stability.depmap_seed import default_map
from stability.errors import DependencyFailed
from stability.guard import Guard, calling_as
from stability.switches import SwitchSnapshot

SECRET, ADMIN = "coupon-secret-for-tests", "adm"
ORGS = ("SANDBOX_A", "SANDBOX_B")


class Calls:
    """A guard recorder: (caller, outcome) of every ``coupon`` decision."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def outcome(self, resource: str, caller: str, outcome: str, duration_s: float) -> None:
        if resource == "coupon":
            self.seen.append((caller, outcome))

    def breaker_changed(self, *args: object) -> None:
        pass


class World:
    """The pay core with a guard over the seeded map and the coupon client, the sandbox's
    coupon service on 127.0.0.1, a merchant (``shop``) and its user ``u1``."""

    def __init__(self, db_url: str, server: LiveServer) -> None:
        self.server = server
        self.calls = Calls()
        self.guard = Guard(default_map(ORGS), ignore=BUSINESS_ERRORS, recorders=[self.calls])
        self.coupons = HttpCouponClient(server.url, SECRET, timeout=2.0)
        self.core = PayCore(Database(db_url), guard=self.guard, coupons=self.coupons)
        self.shop = Shop(self.core)
        self.book = server.server.config.app.state.coupons

    def close(self) -> None:
        self.coupons.close()
        self.core.close()

    def issue(self, code: str, amount: int = 300, **kw: object) -> None:
        body = {"merchant_id": self.shop.mid, "user_id": "u1", "amount": amount}
        body |= {"currency": "CNY", "code": code, **kw}
        r = httpx.post(
            f"{self.server.url}/coupons/admin/issue", json=body, headers={"X-Sandbox-Admin": ADMIN}
        )
        assert r.status_code == 200, r.text

    def knobs(self, **changes: object) -> None:
        r = httpx.put(
            f"{self.server.url}/coupons/admin/knobs",
            json=changes,
            headers={"X-Sandbox-Admin": ADMIN},
        )
        assert r.status_code == 200, r.text

    def pay(self, trade, *parts: PayTool, pay_no: str | None = None):
        with calling_as("link.pay"):
            return self.core.payments.pay(
                self.shop.mid, PayRequest(trade.out_trade_no, tuple(parts), out_pay_no=pay_no)
            )

    def refund(self, trade, amount: int, no: str = "r1"):
        with calling_as("link.refund"):
            return self.core.refunds.refund(
                self.shop.mid, RefundRequest(trade.out_trade_no, no, amount)
            )

    def status(self, code: str) -> str:
        return self.book.get(code).status

    def funding(self) -> int:
        return self.shop.account(coupon_funding("CNY"))


@pytest.fixture
def service() -> Iterator[LiveServer]:
    from simulator.sandbox import create_sandbox_app
    from simulator.sandbox_config import SandboxConfig

    app = create_sandbox_app(
        SandboxConfig(secrets={o: "s" for o in ORGS}, admin_token=ADMIN, coupon_secret=SECRET)
    )
    with LiveServer(app) as server:
        yield server


@pytest.fixture
def world(db_url: str, service: LiveServer) -> Iterator[World]:
    w = World(db_url, service)
    yield w
    w.close()


def test_coupon_and_channel_pay_then_a_full_refund_restores_the_coupon(world: World) -> None:
    world.issue("C1", 300)
    t = world.shop.trade(amount=1_000)
    po = world.pay(t, PayTool("coupon", 300, "C1"), PayTool("channel", 700))
    coupon_item, channel_item = po.items
    assert (coupon_item.tool, coupon_item.amount, coupon_item.tool_ref) == ("coupon", 300, "C1")
    assert coupon_item.status == "success" and channel_item.status == "processing"
    assert world.status("C1") == "redeemed"
    assert world.funding() == 300  # the marketing expense that paid the part
    assert world.shop.settle(channel_item) == "settled"
    assert world.calls.seen == [("link.pay", "pass")]

    detail = world.refund(t, 1_000)
    (refund,) = detail.pay_orders
    ch = next(i for i in refund.items if i.tool == "channel")
    assert world.status("C1") == "redeemed"  # the coupon waits for the channel's part
    world.shop.settle(ch)
    assert world.status("C1") == "unused"  # back to its user, usable again
    assert world.funding() == 0
    assert world.shop.account(platform_transit("CNY")) == 0
    assert trial_balance(world.core.db).ok
    assert world.calls.seen[-1][1] == "pass" and len(world.calls.seen) == 2


def test_coupon_and_balance_pay_then_a_full_refund_restores_the_coupon(world: World) -> None:
    world.shop.fund("u1", 500)
    world.issue("C2", 200)
    t = world.shop.trade(amount=700)
    po = world.pay(t, PayTool("balance", 500), PayTool("coupon", 200, "C2"))
    assert po.status == "success" and [i.status for i in po.items] == ["success", "success"]
    assert world.shop.balance("u1") == 0 and world.funding() == 200
    assert world.status("C2") == "redeemed"
    world.refund(t, 700)
    assert world.shop.balance("u1") == 500 and world.funding() == 0
    assert world.status("C2") == "unused"
    assert ("link.refund", "pass") in world.calls.seen
    assert trial_balance(world.core.db).ok


def test_a_partial_refund_keeps_the_coupon_used(world: World) -> None:
    world.shop.fund("u1", 500)
    world.issue("C3", 200)
    t = world.shop.trade(amount=700)
    world.pay(t, PayTool("balance", 500), PayTool("coupon", 200, "C3"))
    world.refund(t, 350)
    assert world.status("C3") == "redeemed"
    assert trial_balance(world.core.db).ok


def test_a_coupon_used_twice_is_refused_and_nothing_is_written(world: World) -> None:
    world.issue("C4", 300)
    first = world.shop.trade(amount=1_000)
    world.pay(first, PayTool("coupon", 300, "C4"), PayTool("channel", 700))
    second = world.shop.trade(amount=1_000)
    before = table_counts(world.core.db)
    with pytest.raises(CouponRejected) as err:
        world.pay(second, PayTool("coupon", 300, "C4"), PayTool("channel", 700))
    assert err.value.http_status == 422 and err.value.code == "coupon_rejected"
    assert err.value.details["reason"] == "used"
    assert table_counts(world.core.db) == before
    assert world.funding() == 300  # the first pay's only
    assert world.calls.seen[-1] == ("link.pay", "pass")  # a refusal is no outage


@pytest.mark.parametrize(
    ("parts", "reason"),
    [
        ((PayTool("coupon", 301, "C5"), PayTool("channel", 699)), "too_small"),
        ((PayTool("coupon", 300, "NOPE"), PayTool("channel", 700)), "unknown"),
    ],
)
def test_an_unusable_coupon_is_refused_and_nothing_is_written(
    world: World, parts: tuple[PayTool, ...], reason: str
) -> None:
    world.issue("C5", 300)
    t = world.shop.trade(amount=1_000)
    before = table_counts(world.core.db)
    with pytest.raises(CouponRejected) as err:
        world.pay(t, *parts)
    assert err.value.details["reason"] == reason
    assert table_counts(world.core.db) == before and world.status("C5") == "unused"


def test_down_and_allowed_the_pay_goes_on_without_the_coupon(world: World) -> None:
    world.core.merchants.configure(world.shop.mid, pay_without_coupon=True)
    world.issue("C6", 300)
    world.knobs(outage_rate=1.0)
    t = world.shop.trade(amount=1_000)
    parts = (PayTool("coupon", 300, "C6"), PayTool("channel", 700))
    po = world.pay(t, *parts, pay_no="p-c6")
    assert po.skipped_tools == ("coupon",)
    ((tool, amount),) = [(i.tool, i.amount) for i in po.items]
    assert (tool, amount) == ("channel", 1_000)  # the whole amount on the channel part
    # stored: the trade's read and a replay of the pay say the same as the pay's answer
    (read,) = world.core.trades.detail(world.shop.mid, t.out_trade_no).pay_orders
    assert read.skipped_tools == ("coupon",)
    assert world.pay(t, *parts, pay_no="p-c6").skipped_tools == ("coupon",)
    assert world.funding() == 0 and world.status("C6") == "unused"
    assert world.calls.seen[-1] == ("link.pay", "fallback")
    assert world.shop.settle(po.items[0]) == "settled"
    assert trial_balance(world.core.db).ok


def test_a_redeem_answered_too_late_is_given_back_and_the_pay_goes_on(world: World) -> None:
    world.core.merchants.configure(world.shop.mid, pay_without_coupon=True)
    world.issue("C12", 300)
    world.knobs(timeout_rate=1.0, timeout_ms=800)  # the service works, answers after 0.5 s
    t = world.shop.trade(amount=1_000)
    po = world.pay(t, PayTool("coupon", 300, "C12"), PayTool("channel", 700))
    assert po.skipped_tools == ("coupon",) and [i.amount for i in po.items] == [1_000]
    assert world.status("C12") == "unused"  # redeemed at the service, then given back
    assert world.book.redeemed == 1 and world.book.released == 1
    # the redeem and the release: each timed out by the client, tried again, given up
    tried = [("link.pay", "error"), ("link.pay", "error"), ("link.pay", "fallback")]
    assert world.calls.seen == tried * 2
    assert world.funding() == 0


@pytest.mark.parametrize("how", ["outage", "degraded"])
def test_down_and_not_allowed_is_503_naming_coupon_and_nothing_is_written(
    world: World, how: str
) -> None:
    world.issue("C7", 300)
    if how == "outage":
        world.knobs(outage_rate=1.0)
    else:  # the SRE's switch: the guard does not even call it
        world.guard.apply(SwitchSnapshot(degraded=frozenset({"coupon"})))
    t = world.shop.trade(amount=1_000)
    before = table_counts(world.core.db)
    with pytest.raises(DependencyFailed) as err:
        world.pay(t, PayTool("coupon", 300, "C7"), PayTool("channel", 700))
    assert err.value.resource == "coupon" and err.value.http_status == 503
    assert table_counts(world.core.db) == before and world.status("C7") == "unused"
    outcome = "fallback" if how == "outage" else "degraded"
    assert world.calls.seen[-1] == ("link.pay", outcome)


def test_a_pay_order_never_begun_gives_its_coupon_back(world: World) -> None:
    from paycore.errors import InsufficientBalance

    world.issue("C8", 300)
    t = world.shop.trade(amount=1_000)
    before = table_counts(world.core.db)
    with pytest.raises(InsufficientBalance):  # redeemed first, then the balance is short
        world.pay(t, PayTool("coupon", 300, "C8"), PayTool("balance", 700))
    assert table_counts(world.core.db) == before
    assert world.status("C8") == "unused"
    assert world.calls.seen == [("link.pay", "pass"), ("link.pay", "pass")]  # redeem, release


def test_a_failed_order_gets_its_coupon_back_through_compensation(world: World) -> None:
    from paycore.jobs import Handlers, TaskQueue, Worker

    world.issue("C10", 300)
    t = world.shop.trade(amount=1_000)
    po = world.pay(t, PayTool("coupon", 300, "C10"), PayTool("channel", 700))
    assert world.shop.settle(po.items[1], "failed") == "failed"
    assert world.status("C10") == "redeemed" and world.funding() == 300
    core = world.core
    queue = TaskQueue(core.db, core.ids, clock=core.clock, worker_id="w1")
    handlers = Handlers(core, None, notify_url_for=lambda o: f"http://api/v1/channels/{o}/cb")
    worker = Worker(core, queue, handlers)
    with calling_as("job.compensation"):
        assert handlers.enqueue_open_exceptions() == 1
        assert worker.run_once() == 1
    assert world.funding() == 0 and world.status("C10") == "unused"
    assert world.shop.account(platform_transit("CNY")) == 0
    with core.db.session() as s:
        assert s.execute(select(PayException.status)).scalar_one() == "resolved"
    assert ("job.compensation", "pass") in world.calls.seen
    assert trial_balance(core.db).ok


def test_the_cashier_offer_lists_usable_coupons_or_says_unavailable(world: World) -> None:
    world.issue("BIG", 300, min_trade_amount=5_000)
    world.issue("OK", 300)
    world.issue("USD", 300, currency="USD")
    t = world.shop.trade(amount=1_000)
    env = ToolEnv(
        world.core.db, world.core.ledger, world.guard, world.core.merchants, world.coupons
    )
    offer = CouponTool().offer(env, t)
    assert offer == {
        "tool": "coupon",
        "available": True,
        "coupons": [{"code": "OK", "amount": 300, "face_value": 300, "currency": "CNY"}],
    }
    world.knobs(outage_rate=1.0)
    down = CouponTool().offer(env, t)
    assert down is not None and down["available"] is False and down["reason"] == "unavailable"
    recharge = world.shop.trade("recharge", 1_000)
    assert CouponTool().offer(env, recharge) is None


def test_a_release_the_service_refuses_never_fails_the_refund(world: World) -> None:
    world.shop.fund("u1", 500)
    world.issue("C11", 200)
    t = world.shop.trade(amount=700)
    world.pay(t, PayTool("balance", 500), PayTool("coupon", 200, "C11"))
    world.knobs(outage_rate=1.0)
    world.refund(t, 700)  # the money goes back; the coupon stays used (logged)
    assert world.shop.balance("u1") == 500 and world.funding() == 0
    world.knobs(outage_rate=0.0)
    assert world.status("C11") == "redeemed"
    assert ("link.refund", "fallback") in world.calls.seen


def test_coupon_parts_need_a_code(world: World) -> None:
    t = world.shop.trade(amount=1_000)
    with pytest.raises(Exception) as err:  # noqa: PT011
        world.pay(t, PayTool("coupon", 300), PayTool("channel", 700))
    assert getattr(err.value, "code", "") == "invalid_pay_tools"
