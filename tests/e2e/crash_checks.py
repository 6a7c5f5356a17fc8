"""The crash test's proofs (see test_crash.py): everything checked from the database and the
channel's statement, not from logs, and the evidence a failed check needs (items still
processing, what is left in transit).
"""

from __future__ import annotations

from collections import Counter, defaultdict

import sqlalchemy as sa
from crash_load import (  # tests/e2e/crash_load.py
    FEE_BPS,
    FUNDING,
    ORGS,
    SECRETS,
    USERS,
    Load,
)


def stuck(engine: sa.Engine, sandbox: str) -> list[tuple]:
    """Channel items still processing, with what the channel says about them."""
    from paycore.channels.gateway import build_gateway

    gateway = build_gateway(sandbox, SECRETS)
    try:
        return [
            (
                r.pay_org_no,
                r.channel_txn_no,
                r.pay_type,
                r.query_attempts,
                r.manual,
                gateway.query_status(r.pay_org_no, r.channel_txn_no).status,
            )
            for r in rows(
                engine,
                """
                    SELECT i.pay_org_no, i.channel_txn_no, o.pay_type, i.query_attempts, i.manual
                    FROM pay_items i JOIN pay_orders o ON o.id = i.pay_order_id
                    WHERE i.status = 'processing' AND i.tool = 'channel'""",
            )
        ]
    finally:
        gateway.close()


def transit_residue(engine: sa.Engine) -> dict:
    """What is left in platform transit, trade by trade, with the trades' entries,
    items and exceptions: the evidence a failed money check needs."""
    left = rows(
        engine,
        """
        SELECT e.trade_id, sum(l.amount) AS net FROM journal_legs l
        JOIN journal_entries e ON e.id = l.entry_id JOIN accounts a ON a.id = l.account_id
        WHERE a.owner_type = 'platform' AND a.owner_id = 'transit'
        GROUP BY e.trade_id HAVING sum(l.amount) <> 0""",
    )
    out = {}
    for trade_id, net in left:
        out[trade_id] = {
            "net": net,
            "entries": rows(
                engine,
                """
                SELECT e.biz_type, e.biz_key, e.created_at, a.owner_id, l.amount
                FROM journal_entries e JOIN journal_legs l ON l.entry_id = e.id
                JOIN accounts a ON a.id = l.account_id WHERE e.trade_id = :t
                ORDER BY e.created_at""",
                t=trade_id,
            ),
            "items": rows(
                engine,
                """
                SELECT i.id, o.id, o.pay_type, o.status, i.tool, i.status, i.amount,
                       i.settled_amount, i.channel_txn_no FROM pay_items i
                JOIN pay_orders o ON o.id = i.pay_order_id WHERE o.trade_id = :t""",
                t=trade_id,
            ),
            "exceptions": rows(
                engine,
                """
                SELECT id, kind, biz_key, pay_item_id, amount_taken, status FROM pay_exceptions
                WHERE trade_id = :t""",
                t=trade_id,
            ),
        }
    return out


def rows(engine: sa.Engine, sql: str, **params) -> list:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())


def verify(engine, pg_url, mid, load: Load, internal, external, statement) -> None:
    """Every trade final the way its client saw it, paid and posted once; every balance what
    the clients' outcomes say; the channel's statement equal to our books; no
    reconciliation difference."""
    plans = {p.no: p for p in load.plans}
    trades = verify_trades(engine, plans, load)
    verify_postings(engine)
    verify_balances(engine, pg_url, mid, plans, load)
    verify_statement(engine, plans, load, trades, statement)
    assert internal.counts == {}, internal.counts
    assert external == dict.fromkeys(ORGS, {}), external
    assert not rows(engine, "SELECT kind, ref, note FROM recon_differences")


def verify_trades(engine, plans: dict, load: Load) -> dict:
    """Each trade the clients sent, once, final as its client saw it and paid exactly once;
    the trades by number."""
    # every trade the clients sent exists once, and is final the way the client saw it
    trades = {
        r.out_trade_no: r
        for r in rows(
            engine,
            """
        SELECT id, out_trade_no, status, amount, paid_amount, refunded_amount FROM trades
        WHERE trade_type = 'instant'""",
        )
    }
    assert set(trades) == set(plans)
    for no, p in plans.items():
        t, o = trades[no], load.outcomes[no]
        assert t.status == ("paid" if o.paid else "closed"), (no, t.status, o)
        want_refunded = p.refund if o.refund_status == "paid" else 0
        assert (t.paid_amount, t.refunded_amount) == ((p.amount if o.paid else 0), want_refunded), (
            no
        )
    # paid exactly once: one successful pay order per paid trade, none per unpaid one
    success = Counter(
        r.trade_id
        for r in rows(
            engine,
            """
        SELECT trade_id FROM pay_orders WHERE pay_type = 'pay' AND status = 'success'""",
        )
    )
    for no, t in trades.items():
        assert success[t.id] == (1 if load.outcomes[no].paid else 0), no
    assert not rows(engine, "SELECT id FROM pay_orders WHERE status = 'processing'")
    assert not rows(engine, "SELECT id FROM pay_items WHERE status = 'processing' OR manual")
    return trades


def verify_postings(engine) -> None:
    """One ledger posting per business event; exceptions refunded; no task left."""
    # one ledger posting per business event: each successful item and order posted once
    missing = rows(
        engine,
        """
        SELECT i.id FROM pay_items i JOIN pay_orders o ON o.id = i.pay_order_id
        WHERE i.status = 'success' AND NOT EXISTS (SELECT 1 FROM journal_entries e
          WHERE e.biz_key = CAST(i.id AS TEXT)
            AND e.biz_type = CASE o.pay_type WHEN 'refund' THEN 'refund_item'
                                             ELSE 'pay_item' END)
        UNION ALL
        SELECT o.id FROM pay_orders o WHERE o.status = 'success' AND o.pay_type <> 'refund'
          AND NOT EXISTS (SELECT 1 FROM journal_entries e
                          WHERE e.biz_type = 'pay_complete' AND e.biz_key = CAST(o.id AS TEXT))
        """,
    )
    assert not missing, missing
    stray = rows(
        engine,
        """
        SELECT e.biz_type, e.biz_key FROM journal_entries e
        WHERE e.biz_type = 'pay_complete' AND NOT EXISTS (SELECT 1 FROM pay_orders o
          WHERE CAST(o.id AS TEXT) = e.biz_key AND o.status = 'success')""",
    )
    assert not stray, stray  # no completion posted for an order that did not succeed
    # the exceptions the crash and the failing channel caused were all refunded in full
    exceptions = rows(engine, "SELECT kind, status, amount_taken FROM pay_exceptions")
    assert all(e.status == "resolved" for e in exceptions), exceptions
    # ... and only the ones the channels' knobs cause: a repeated callback is no new case
    assert {e.kind for e in exceptions} <= {"partial_payment", "amount_mismatch"}, exceptions
    assert not rows(
        engine,
        """SELECT id FROM compensation_tasks WHERE status <> 'done'
                               OR (status = 'running' AND lease_until < now())""",
    )


def verify_balances(engine, pg_url, mid, plans: dict, load: Load) -> None:
    """Every balance is what the clients' own record of outcomes says; trial balance zero."""
    from paycore import Database
    from paycore.ledger import (
        balance_of,
        channel_clearing,
        fee_income,
        merchant_payable,
        platform_transit,
        trial_balance,
        user_balance,
    )
    from paycore.money import fee_for

    # money: every balance is what the clients' own record of outcomes says
    cur = "CNY"
    user_want = dict.fromkeys(USERS, FUNDING)
    merchant_want = fee_want = channel_want = 0
    for no, p in plans.items():
        o = load.outcomes[no]
        if not o.paid:
            continue  # whatever the failed pay took was refunded: it nets to zero
        fee = fee_for(p.amount, FEE_BPS)
        merchant_want += p.amount - fee
        fee_want += fee
        user_want[p.user] -= p.balance_part
        channel_want += p.amount - p.balance_part
        if o.refund_status == "paid":  # a refund returns the balance part first
            back_to_balance = min(p.refund, p.balance_part)
            user_want[p.user] += back_to_balance
            channel_want -= p.refund - back_to_balance
            merchant_want -= p.refund
    channel_want += FUNDING * len(USERS)
    db = Database(pg_url)
    try:
        with db.session() as s:
            got_users = {u: balance_of(s, user_balance(mid, u, cur)) for u in USERS}
            got = (
                balance_of(s, merchant_payable(mid, cur)),
                balance_of(s, fee_income(cur)),
                sum(balance_of(s, channel_clearing(org, cur)) for org in ORGS),
                balance_of(s, platform_transit(cur)),
            )
        assert got_users == user_want
        assert got == (merchant_want, fee_want, channel_want, 0), (got, transit_residue(engine))
        tb = trial_balance(db)
        assert tb.ok and tb.legs_total == {cur: 0}, tb
    finally:
        db.dispose()


def verify_statement(engine, plans: dict, load: Load, trades: dict, statement) -> None:
    """The channel's record, trade by trade: what it kept equals what we say was paid."""
    # the channel's record, trade by trade: what it kept equals what we say was paid
    items = {
        r.channel_txn_no: r
        for r in rows(
            engine,
            """
        SELECT i.id, i.channel_txn_no, o.trade_id, o.pay_type, t.origin_trade_id
        FROM pay_items i JOIN pay_orders o ON o.id = i.pay_order_id
        JOIN trades t ON t.id = o.trade_id WHERE i.tool = 'channel'""",
        )
    }
    by_item = {str(r.id): r for r in items.values()}
    kept: dict[int, int] = defaultdict(int)
    for line in (ln for lines in statement.values() for ln in lines):
        txn = line.channel_txn_no
        if txn.startswith("x"):  # a compensation refund of one of our pay items
            it, sign = by_item[txn[1:]], -1
        else:
            it = items[txn]
            sign = -1 if it.pay_type == "refund" else 1
        kept[it.origin_trade_id or it.trade_id] += sign * line.amount
    ours = {
        t.id: (plans[no].amount - plans[no].balance_part if load.outcomes[no].paid else 0)
        - (
            plans[no].refund - min(plans[no].refund, plans[no].balance_part)
            if load.outcomes[no].refund_status == "paid"
            else 0
        )
        for no, t in trades.items()
    }
    assert {k: v for k, v in kept.items() if k in ours and v} == {
        k: v for k, v in ours.items() if v
    }
