"""Internal reconciliation (trade ↔ pay ↔ ledger ↔ channel) and the ledger jobs."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from paycore import ChannelResult, PayRequest, PayTool, RefundRequest
from paycore.db.schema import (
    Account,
    JournalEntry,
    JournalLeg,
    PayItem,
    ReconDifference,
    Trade,
)
from paycore.jobs.ledger_jobs import summary_posting_job, trial_balance_job
from paycore.ledger import pending_count
from paycore.recon import reconcile_internal


def business(shop) -> dict:
    """A small day of consistent business: balance and channel pays, refunds, a failure."""
    core = shop.core
    shop.fund("u1", 20_000)
    out = {}
    for name, tool in (
        ("balance", "balance"),
        ("channel", "channel"),
        ("refunded", "channel"),
        ("mixed", None),
        ("failed", "channel"),
    ):
        t = shop.trade("instant", 2_000)
        tools = (
            (PayTool("balance", 500), PayTool("channel", 1_500))
            if tool is None
            else (PayTool(tool, 2_000),)
        )
        po = core.payments.pay(shop.mid, PayRequest(t.out_trade_no, tools))
        for item in po.items:
            if item.tool == "channel":
                shop.settle(item, "failed" if name == "failed" else "success")
        out[name] = (t, po)
    t, _ = out["refunded"]
    rf = core.refunds.refund(shop.mid, RefundRequest(t.out_trade_no, "rf-1", 700))
    shop.settle(rf.pay_orders[0].items[0])
    core.refunds.refund(shop.mid, RefundRequest(t.out_trade_no, "rf-2", 300))  # still pending
    return out


def diffs(core) -> list[tuple[str, str]]:
    with core.db.session() as s:
        return sorted(s.execute(sa.select(ReconDifference.kind, ReconDifference.ref)).all())


class StubChannel:
    """Answers queries like a channel that agrees, except where told otherwise."""

    def __init__(self, core, disagree: set[str]) -> None:
        self.core, self.disagree = core, disagree
        self.asked: list[str] = []

    def query(self, org: str, txn: str) -> ChannelResult | None:
        self.asked.append(txn)
        if txn in self.disagree:
            return None  # the channel still has it pending
        with self.core.db.session() as s:
            item = s.execute(sa.select(PayItem).where(PayItem.channel_txn_no == txn)).scalar_one()
            return ChannelResult(org, txn, "success", item.settled_amount, "CNY")


def test_consistent_books_have_no_differences_and_corruption_is_found_once(shop):
    core = shop.core
    out = business(shop)
    report = reconcile_internal(core, gateway=StubChannel(core, set()))
    assert report.counts == {} and report.added == 0
    assert report.checked >= 8 and report.matched == report.checked

    paid_t, paid_po = out["balance"]
    chan_t, chan_po = out["channel"]
    mixed_t, mixed_po = out["mixed"]
    ref_t, _ = out["refunded"]
    with core.db.session() as s:  # break the books in four different ways
        entry = s.execute(
            sa.select(JournalEntry.id).where(
                JournalEntry.biz_type == "pay_complete", JournalEntry.biz_key == str(paid_po.id)
            )
        ).scalar_one()
        s.execute(sa.delete(JournalLeg).where(JournalLeg.entry_id == entry))
        s.execute(sa.delete(JournalEntry).where(JournalEntry.id == entry))
        s.execute(sa.update(Trade).where(Trade.id == chan_t.id).values(status="created"))
        s.execute(
            sa.update(PayItem).where(PayItem.id == mixed_po.items[1].id).values(status="processing")
        )
        s.execute(
            sa.update(Trade)
            .where(Trade.id == ref_t.id)
            .values(refunded_amount=Trade.refunded_amount + 1)
        )
    channel_item = out["failed"][1].items[0]  # failed: never asked; use a success instead
    disagree = {chan_po.items[0].channel_txn_no}
    stub = StubChannel(core, disagree)
    report = reconcile_internal(core, gateway=stub)
    assert channel_item.channel_txn_no not in stub.asked
    expected = [
        ("internal.channel_status_mismatch", chan_po.items[0].channel_txn_no),
        ("internal.missing_ledger_entry", f"pay_complete:{paid_po.id}"),
        ("internal.pay_item_mismatch", str(mixed_po.id)),
        ("internal.refund_sum_mismatch", str(ref_t.id)),
        ("internal.trade_pay_mismatch", str(chan_t.id)),
    ]
    assert diffs(core) == sorted(expected)
    assert report.added == 5 and sum(report.counts.values()) == 5
    # the next minute's window overlaps: the same differences, nothing new
    later = reconcile_internal(core, gateway=stub, now=core.clock() + timedelta(minutes=1))
    assert later.added == 0 and later.counts == report.counts
    assert diffs(core) == sorted(expected)
    with core.db.session() as s:
        resolutions = set(s.execute(sa.select(ReconDifference.resolution)).scalars())
    assert resolutions == {"manual"}


def test_old_business_is_outside_the_window(shop):
    core = shop.core
    out = business(shop)
    with core.db.session() as s:
        s.execute(sa.update(Trade).where(Trade.id == out["channel"][0].id).values(status="created"))
    later = core.clock() + timedelta(hours=1)
    assert reconcile_internal(core, now=later).checked == 0
    assert reconcile_internal(core).counts == {"internal.trade_pay_mismatch": 1}


def test_ledger_jobs_fold_hot_postings_and_report_the_trial_balance(shop):
    core = shop.core
    business(shop)  # fee income is a buffered hot account: postings queue up
    assert pending_count(core.db) > 0
    assert summary_posting_job(core) > 0
    assert pending_count(core.db) == 0 and summary_posting_job(core) == 0
    seen: list[bool] = []
    assert trial_balance_job(core, seen.append).ok and seen == [True]
    with core.db.session() as s:  # a balance that no journal leg explains
        acct = s.execute(
            sa.select(Account.id).where(Account.owner_type == "merchant").limit(1)
        ).scalar_one()
        s.execute(sa.update(Account).where(Account.id == acct).values(balance=Account.balance + 1))
    tb = trial_balance_job(core, seen.append)
    assert not tb.ok and seen == [True, False] and tb.account_mismatches[0][0] == acct
    assert trial_balance_job(core).ok is False  # no callback: still returns the result
