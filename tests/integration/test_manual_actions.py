"""Four-eyes actions on manual pay items (issue 21, point 5), over SQLite and PostgreSQL:
one person proposes, another approves, the settlement applies once; fail-and-refund fails
the order and compensation returns what the other tools took."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import select, update

from paycore import PayRequest, PayTool
from paycore.db.schema import JournalEntry, ManualAction, PayException, PayItem
from paycore.errors import (
    FourEyesRequired,
    InvalidRequest,
    ManualActionNotFound,
    PayCoreError,
    WrongState,
)
from paycore.jobs import Handlers, TaskQueue, Worker
from paycore.ledger import merchant_payable, platform_transit, trial_balance
from paycore.manual_actions import ManualActions


@pytest.fixture
def manual(core) -> ManualActions:
    return ManualActions(core.deps, core.payments.on_channel_result)


def stuck(shop, core, balance: int = 300, channel: int = 700):
    """A combined pay whose channel part the active query handed to a person."""
    if balance:
        shop.fund("u1", balance)
    t = shop.trade(amount=balance + channel)
    tools = ((PayTool("balance", balance),) if balance else ()) + (PayTool("channel", channel),)
    po = core.payments.pay(shop.mid, PayRequest(t.out_trade_no, tools))
    item = po.items[-1]
    with core.db.session() as s:  # what ActiveQuery._to_manual does after its last query
        s.execute(update(PayItem).where(PayItem.id == item.id).values(manual=True))
    return t, item


def entries(core) -> int:
    with core.db.session() as s:
        return len(s.execute(select(JournalEntry.id)).all())


def test_a_second_person_settles_a_manual_item_once(shop, core, manual):
    t, item = stuck(shop, core)
    aid = manual.propose(item.id, "settle_success", "olga", "channel confirmed by phone, INC-9")
    assert [p.id for p in manual.pending()] == [aid]
    with pytest.raises(FourEyesRequired) as err:
        manual.approve(aid, "olga")
    assert err.value.http_status == 403
    assert core.trades.get(shop.mid, t.out_trade_no).status == "paying"  # nothing applied
    assert manual.approve(aid, "pete") == "settled"
    row = manual.get(aid)
    assert (row.status, row.decided_by, row.outcome) == ("applied", "pete", "settled")
    assert core.trades.get(shop.mid, t.out_trade_no).status == "paid"
    assert shop.account(merchant_payable(shop.mid, "CNY")) == 1_000 - 6
    n = entries(core)
    with pytest.raises(WrongState):  # applied once: a second approval is refused
        manual.approve(aid, "quinn")
    with pytest.raises(WrongState):  # and the item is no longer waiting for anyone
        manual.propose(item.id, "settle_success", "olga", "again")
    assert entries(core) == n and manual.pending() == []
    with core.db.session() as s:
        settled = s.get_one(PayItem, item.id)
        assert (settled.status, settled.settled_amount) == ("success", 700)
    assert trial_balance(core.db).ok


def test_racing_approvers_apply_it_once(shop, core, manual):
    t, item = stuck(shop, core, balance=0, channel=500)
    aid = manual.propose(item.id, "settle_success", "olga", "bank statement shows it")
    barrier = threading.Barrier(4, timeout=30)

    def approve(who):
        barrier.wait()
        try:
            return manual.approve(aid, who)
        except PayCoreError as exc:
            return exc

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(approve, ["pete", "quinn", "rita", "sam"]))
    assert [r for r in results if r == "settled"] == ["settled"]
    assert all(isinstance(r, WrongState) for r in results if r != "settled"), results
    assert core.trades.get(shop.mid, t.out_trade_no).status == "paid"
    assert shop.account(merchant_payable(shop.mid, "CNY")) == 500 - 3
    assert trial_balance(core.db).ok


def test_reject_and_bad_proposals_change_nothing(shop, core, manual):
    t, item = stuck(shop, core)
    paid_t = shop.trade(amount=100)
    po = core.payments.pay(shop.mid, PayRequest(paid_t.out_trade_no, (PayTool("channel", 100),)))
    not_manual = po.items[0]
    with pytest.raises(WrongState):
        manual.propose(not_manual.id, "settle_success", "olga", "not handed to a person")
    with pytest.raises(InvalidRequest):
        manual.propose(item.id, "refund_twice", "olga", "no such action")
    with pytest.raises(InvalidRequest):
        manual.propose(item.id, "settle_success", "olga", "   ")
    with pytest.raises(InvalidRequest):
        manual.propose(item.id, "settle_success", "", "who?")
    aid = manual.propose(item.id, "fail_refund", "olga", "channel says it never arrived")
    with pytest.raises(WrongState):  # one waiting proposal per item
        manual.propose(item.id, "settle_success", "pete", "a second opinion")
    rejected = manual.reject(aid, "pete")
    assert (rejected.status, rejected.decided_by, rejected.outcome) == ("rejected", "pete", None)
    with pytest.raises(WrongState):
        manual.approve(aid, "quinn")
    with pytest.raises(WrongState):
        manual.reject(aid, "quinn")
    with pytest.raises(ManualActionNotFound):
        manual.approve(999_999, "quinn")
    assert core.trades.get(shop.mid, t.out_trade_no).status == "paying"
    assert [a.id for a in manual.recent()] == [aid]
    again = manual.propose(item.id, "settle_success", "pete", "after all: it did arrive")
    assert manual.approve(again, "olga") == "settled"
    with core.db.session() as s:
        statuses = s.execute(select(ManualAction.status).order_by(ManualAction.id)).scalars()
        assert list(statuses) == ["rejected", "applied"]


def test_fail_and_refund_fails_the_order_and_compensation_returns_the_balance(shop, core, manual):
    t, item = stuck(shop, core, balance=300, channel=700)
    assert shop.balance("u1") == 0 and shop.account(platform_transit("CNY")) == 300
    aid = manual.propose(item.id, "fail_refund", "olga", "the channel never took it, INC-12")
    assert manual.approve(aid, "pete") == "failed"
    assert core.trades.get(shop.mid, t.out_trade_no).status == "created"  # may be paid again
    with core.db.session() as s:
        exc = s.execute(select(PayException)).scalar_one()
        assert (exc.kind, exc.amount_taken, exc.status) == ("partial_payment", 300, "open")
    queue = TaskQueue(core.db, core.ids, clock=core.clock, worker_id="w1")
    handlers = Handlers(core, None, notify_url_for=lambda o: f"http://api/v1/channels/{o}/cb")
    worker = Worker(core, queue, handlers)
    assert handlers.enqueue_open_exceptions() == 1
    assert worker.run_once() == 1 and worker.counts["done"] == 1
    assert shop.balance("u1") == 300  # the balance part is back
    assert shop.account(platform_transit("CNY")) == 0
    with core.db.session() as s:
        assert s.execute(select(PayException.status)).scalar_one() == "resolved"
    assert manual.get(aid).outcome == "failed"
    assert trial_balance(core.db).ok
