"""Double-entry invariants, hot accounts and the trial balance on each backend."""

from __future__ import annotations

import random

import pytest
import sqlalchemy as sa

from paycore import BizContext, ChannelResult, PayRequest, PayTool, RefundRequest
from paycore.db.schema import Account, JournalLeg, PendingPosting
from paycore.errors import InsufficientBalance, PayCoreError, StorageError, UnbalancedEntry
from paycore.ledger import (
    AccountRef,
    balance_of,
    credit,
    debit,
    drain_pending,
    fee_income,
    merchant_payable,
    pending_count,
    platform_transit,
    trial_balance,
    user_balance,
)

CTX = BizContext("M1", "goods", "physical", "SANDBOX_A")


def post(core, legs, key="k1"):
    return core.db.run(
        lambda s: core.ledger.post(
            s, biz_type="test", biz_key=key, ctx=CTX, currency="CNY", legs=legs
        )
    )


def test_unbalanced_entries_are_refused_by_the_code(core, counts):
    before = counts(core.db)
    for legs in (
        [debit(merchant_payable("M1", "CNY"), 10), credit(fee_income("CNY"), 9)],
        [debit(merchant_payable("M1", "CNY"), 10)],
        [debit(merchant_payable("M1", "CNY"), 10), credit(fee_income("USD"), 10)],
    ):
        with pytest.raises(UnbalancedEntry):
            post(core, legs)
    assert counts(core.db) == before


def test_postgres_itself_refuses_an_unbalanced_entry(pg_url):
    from paycore import PayCore

    core = PayCore(pg_url)
    entry = post(core, [debit(merchant_payable("M1", "CNY"), 10), credit(fee_income("CNY"), 10)])
    with pytest.raises(StorageError), core.db.session() as s:
        acct = s.execute(sa.select(Account.id).limit(1)).scalar_one()
        s.execute(
            sa.insert(JournalLeg).values(
                id=1, entry_id=entry, account_id=acct, amount=5, currency="CNY"
            )
        )
    assert trial_balance(core.db).ok
    core.close()


def test_posting_is_idempotent_per_business_key(core):
    legs = [debit(merchant_payable("M1", "CNY"), 10), credit(fee_income("CNY"), 10)]
    assert post(core, legs, "once") is not None
    assert post(core, legs, "once") is None
    report = trial_balance(core.db)
    assert report.ok and report.pending_postings == 1
    assert report.legs_total == {"CNY": 0}


def test_processes_sharing_a_node_id_lose_no_posting_and_no_trade(migrated_db):
    """Two processes on one Snowflake node id (a misconfigured replica, or the crash
    test's restarted API and worker) draw the same ids. A clash on a generated key is
    retried with a fresh id; it once passed for "posted before" and dropped a posting."""
    from conftest import Shop

    from paycore import PayCore
    from paycore.ids import IdGenerator

    frozen = 1_800_000_000_000  # one millisecond forever: both draw id for id
    a, b = (PayCore(migrated_db, ids=IdGenerator(7, clock_ms=lambda: frozen)) for _ in "ab")
    shop_a = Shop(a)
    shop_b = Shop.__new__(Shop)  # the same merchant, served by the other process
    shop_b.__dict__.update(shop_a.__dict__, core=b)
    legs = [debit(merchant_payable("M1", "CNY"), 10), credit(fee_income("CNY"), 10)]
    posted = [
        post(core, legs, f"{name}{i}") for i in range(5) for name, core in (("a", a), ("b", b))
    ]
    assert None not in posted and len(set(posted)) == 10  # every event posted, each once
    trades = [shop.trade(amount=100) for _ in range(4) for shop in (shop_a, shop_b)]
    assert len({t.id for t in trades}) == 8
    assert shop_a.account(fee_income("CNY")) == 100
    assert trial_balance(a.db).ok
    for core in (a, b):
        core.lock.close()


def test_user_balance_cannot_go_negative(core, counts):
    before = counts(core.db)
    with pytest.raises(InsufficientBalance):
        post(core, [debit(user_balance("M1", "u9", "CNY"), 1), credit(platform_transit("CNY"), 1)])
    assert counts(core.db)["journal_entries"] == before["journal_entries"]
    # several accounts change in one statement on PostgreSQL: one short account refuses all
    refs = (user_balance("M1", "u9", "CNY"), platform_transit("CNY"), merchant_payable("M1", "CNY"))
    post(core, [debit(refs[1], 5), credit(refs[2], 5)], "in")
    with core.db.session() as s:
        kept = [balance_of(s, r) for r in refs]
    with pytest.raises(InsufficientBalance):
        post(core, [debit(refs[0], 1), debit(refs[1], 4), credit(refs[2], 5)], "short")
    with core.db.session() as s:
        assert [balance_of(s, r) for r in refs] == kept


def test_hot_accounts_use_sub_accounts_and_buffered_postings(core):
    for i in range(40):
        post(
            core,
            [
                debit(merchant_payable("M1", "CNY"), 100),
                credit(platform_transit("CNY"), 90),
                credit(fee_income("CNY"), 10),
            ],
            f"k{i}",
        )
    with core.db.session() as s:
        transit_rows = s.execute(
            sa.select(Account.id, Account.balance).where(Account.subject_code == "2101")
        ).all()
        fee_rows = s.execute(sa.select(Account.balance).where(Account.subject_code == "6001")).all()
    assert len(transit_rows) == 17  # parent + 16 sub-accounts
    assert sum(b for _, b in transit_rows) == 40 * 90
    assert sum(1 for _, b in transit_rows if b) > 1  # the postings were spread
    assert fee_rows == [(0,)]  # buffered: the balance row is untouched ...
    assert pending_count(core.db) == 40
    report = trial_balance(core.db)
    assert report.ok and report.pending_postings == 40  # ... but the books balance
    assert drain_pending(core.db, core.ids) == 40
    with core.db.session() as s:
        assert (
            s.execute(sa.select(Account.balance).where(Account.subject_code == "6001")).scalar_one()
            == 400
        )
    assert pending_count(core.db) == 0 and trial_balance(core.db).ok


def test_trial_balance_detects_a_tampered_balance(core):
    post(
        core,
        [debit(merchant_payable("M1", "CNY"), 10), credit(user_balance("M1", "u1", "CNY"), 10)],
    )
    with core.db.session() as s:
        s.execute(sa.update(Account).where(Account.owner_id == "M1:u1").values(balance=11))
    report = trial_balance(core.db)
    assert not report.ok and len(report.account_mismatches) == 1


def test_summary_posting_by_two_threads_applies_each_delta_once(core):
    import threading

    for i in range(200):
        post(core, [debit(merchant_payable("M1", "CNY"), 3), credit(fee_income("CNY"), 3)], f"b{i}")
    threads = [
        threading.Thread(target=drain_pending, args=(core.db, core.ids), kwargs={"batch": 17})
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with core.db.session() as s:
        fee = s.execute(
            sa.select(sa.func.sum(Account.balance)).where(Account.subject_code == "6001")
        ).scalar_one()
        open_rows = s.execute(
            sa.select(sa.func.count())
            .select_from(PendingPosting)
            .where(PendingPosting.summary_id.is_(None))
        ).scalar_one()
    assert (fee, open_rows) == (600, 0)
    assert trial_balance(core.db).ok


def test_randomised_mixed_operations_keep_the_books_balanced(shop, core):
    """A seeded random script of a few thousand operations (pays, callbacks, refunds ...)."""
    rng = random.Random(20261123)
    users = [f"u{i}" for i in range(6)]
    for u in users:
        shop.fund(u, 50_000)
    open_items: list = []
    paid: list = []
    ops = 0
    while ops < 2000:
        ops += 1
        op = rng.random()
        try:
            if op < 0.35:
                kind = rng.choice(
                    ["instant", "instant", "guaranteed", "transfer", "withdraw", "recharge"]
                )
                amount = rng.randint(1, 3_000)
                user = rng.choice(users)
                extra = (
                    {"payee_user_id": rng.choice([u for u in users if u != user])}
                    if kind == "transfer"
                    else {}
                )
                t = shop.trade(kind, amount, user, **extra)
                if kind in ("instant", "guaranteed") and amount > 1 and rng.random() < 0.5:
                    part = rng.randint(1, amount - 1)
                    tools = (PayTool("balance", part), PayTool("channel", amount - part))
                elif kind in ("transfer",) or (
                    kind in ("instant", "guaranteed") and rng.random() < 0.5
                ):
                    tools = (PayTool("balance", amount),)
                else:
                    tools = (PayTool("channel", amount),)
                po = core.payments.pay(shop.mid, PayRequest(t.out_trade_no, tools))
                open_items += [i for i in po.items if i.status == "processing"]
                if po.status == "success":
                    paid.append(t)
            elif op < 0.7 and open_items:
                item = open_items.pop(rng.randrange(len(open_items)))
                roll = rng.random()
                status = "failed" if roll < 0.15 else "success"
                amount = item.amount - 1 if roll > 0.97 and item.amount > 1 else item.amount
                core.payments.on_channel_result(
                    ChannelResult(item.pay_org_no, item.channel_txn_no, status, amount, "CNY")
                )
                if rng.random() < 0.1:  # a duplicate callback
                    core.payments.on_channel_result(
                        ChannelResult(item.pay_org_no, item.channel_txn_no, status, amount, "CNY")
                    )
            elif op < 0.85:
                detail_src = [t for t in paid if t.trade_type in ("instant", "guaranteed")]
                if detail_src:
                    t = rng.choice(detail_src)
                    r = core.refunds.refund(
                        shop.mid,
                        RefundRequest(t.out_trade_no, shop.no("r"), rng.randint(1, t.amount)),
                    )
                    open_items += [
                        i for po in r.pay_orders for i in po.items if i.status == "processing"
                    ]
            elif op < 0.9:
                g = [t for t in paid if t.trade_type == "guaranteed"]
                if g:
                    core.trades.confirm(shop.mid, rng.choice(g).out_trade_no)
            elif op < 0.93:
                drain_pending(core.db, core.ids, batch=50)
            else:
                for t in list(paid[-5:]):
                    if core.trades.get(shop.mid, t.out_trade_no).status == "created":
                        paid.remove(t)
        except PayCoreError:
            pass  # refused requests (insufficient balance, refund past paid, wrong state)
        # trades paid via callbacks join the refundable set
        if op < 0.7 and ops % 50 == 0:
            with core.db.session() as s:
                from paycore.db.schema import Trade

                rows = (
                    s.execute(
                        sa.select(Trade.out_trade_no).where(
                            Trade.status.in_(["paid", "confirmed"]),
                            Trade.trade_type.in_(["instant", "guaranteed"]),
                        )
                    )
                    .scalars()
                    .all()
                )
            known = {t.out_trade_no for t in paid}
            paid += [core.trades.get(shop.mid, n) for n in rows if n not in known]
    report = trial_balance(core.db)
    assert report.ok, report
    assert report.legs_total == {"CNY": 0}
    with core.db.session() as s:
        n_entries = s.execute(sa.text("select count(*) from journal_entries")).scalar_one()
    assert n_entries > 1000
    drain_pending(core.db, core.ids)
    assert trial_balance(core.db).ok
    # every user balance is what its legs say, and none is negative
    for u in users:
        assert shop.balance(u) >= 0
    assert AccountRef  # the public constructor used by reports
