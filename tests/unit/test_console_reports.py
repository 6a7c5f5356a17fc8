"""Console fund report: against the ledger (SQLite and PostgreSQL), its breakdowns, period
bounds and CSV, and money as people read it in its tables and charts."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta

import pytest

from console.reports.funds import DIMENSIONS, SubjectRow, columns_of, fund_report, to_csv
from paycore import CreateTrade, PayRequest, PayTool, RefundRequest
from paycore.ledger import fee_income, merchant_payable, platform_transit
from paycore.ledger.subjects import SUBJECTS
from paycore.money import fee_for


def _pay(shop, out_trade_no: str, tool: str, amount: int):
    po = shop.core.payments.pay(shop.mid, PayRequest(out_trade_no, (PayTool(tool, amount),)))
    if tool == "channel":
        assert shop.settle(po.items[0]) == "settled"
    return po


def _seed(shop):
    """Recharge, two channel pays (two sub types / pay orgs), one balance pay, refunds."""
    core = shop.core
    shop.fund("u1", 10_000)
    a = shop.trade(amount=1_000)
    _pay(shop, a.out_trade_no, "channel", 1_000)
    b = core.trades.create(
        shop.mid,
        CreateTrade(
            trade_type="instant",
            amount=3_000,
            currency="CNY",
            user_id="u2",
            order_type="goods",
            sub_type="virtual",
            pay_org_no="SANDBOX_B",
            out_trade_no="virt1",
        ),
    )
    _pay(shop, b.out_trade_no, "channel", 3_000)
    c = shop.trade(amount=2_000)
    _pay(shop, c.out_trade_no, "balance", 2_000)
    r = core.refunds.refund(shop.mid, RefundRequest(a.out_trade_no, "r1", 400))
    for po in r.pay_orders:
        for item in po.items:
            if item.tool == "channel" and item.status != "success":
                shop.settle(item)
    core.refunds.refund(shop.mid, RefundRequest(c.out_trade_no, "r2", 500))
    return {"pays": [1_000, 3_000, 2_000], "refunds": 900}


def _window(core):
    now = core.clock()
    return now - timedelta(days=1), now + timedelta(days=1)


def test_fund_report_matches_the_ledger(shop, core):
    seeded = _seed(shop)
    start, end = _window(core)
    rep = fund_report(core.db, start, end)
    fees = sum(fee_for(a, 60) for a in seeded["pays"])
    fee = rep.subject("6001")
    assert fee is not None and fee.income == fees and fee.outgo == 0 and fee.closing == fees
    assert rep.total("CNY").platform_income == fees
    payable = rep.subject("2002")
    expected = sum(seeded["pays"]) - fees - seeded["refunds"]
    assert payable is not None and payable.net == expected == payable.closing
    assert payable.outgo == seeded["refunds"]
    assert shop.account(merchant_payable(shop.mid, "CNY")) == payable.closing
    assert shop.account(fee_income("CNY")) == fee.closing
    assert shop.account(platform_transit("CNY")) == rep.subject("2101").closing
    ub = rep.subject("2001")
    assert ub is not None and ub.closing == shop.balance("u1") + shop.balance("u2")
    tot = rep.total("CNY")
    assert tot.debits == tot.credits > 0 and tot.entries > 0
    for row in rep.subjects:
        assert row.subject_code in SUBJECTS
        assert row.opening == 0
        assert row.income - row.outgo == row.net
        side = SUBJECTS[row.subject_code].normal_side
        assert (row.income, row.outgo) == (
            (row.debits, row.credits) if side == "debit" else (row.credits, row.debits)
        )


def test_fund_report_breakdowns_add_up(shop, core):
    _seed(shop)
    rep = fund_report(core.db, *_window(core))
    for dim in DIMENSIONS:
        groups = rep.by(dim)
        for subj in rep.subjects:
            mine = [g for g in groups if g.subject_code == subj.subject_code]
            for attr in ("income", "outgo", "net", "opening", "closing"):
                assert sum(getattr(g, attr) for g in mine) == getattr(subj, attr), (dim, attr)
    orgs = {g.value for g in rep.by("pay_org_no")}
    assert {"SANDBOX_A", "SANDBOX_B"} <= orgs
    subs = {g.value: g for g in rep.by("sub_type") if g.subject_code == "6001"}
    assert subs["virtual"].income == fee_for(3_000, 60)
    assert subs["physical"].income == fee_for(1_000, 60) + fee_for(2_000, 60)
    merchants = {g.value for g in rep.by("merchant_id")}
    assert shop.mid in merchants
    with pytest.raises(ValueError):
        rep.by("user_id")


def test_fund_report_period_bounds_give_opening_balances(shop, core):
    _seed(shop)
    later = core.clock() + timedelta(hours=1)
    rep = fund_report(core.db, later, later + timedelta(days=1))
    payable = rep.subject("2002")
    assert payable is not None and payable.income == payable.outgo == 0
    assert payable.opening == payable.closing == shop.account(merchant_payable(shop.mid, "CNY"))
    assert rep.total("CNY").entries == 0 and rep.total("CNY").platform_income == 0
    earlier = core.clock() - timedelta(days=3)
    empty = fund_report(core.db, earlier, earlier + timedelta(days=1))
    assert empty.subjects == [] and empty.details == [] and empty.totals == []
    with pytest.raises(ValueError):
        fund_report(core.db, later, later)
    with pytest.raises(ValueError):
        fund_report(core.db, datetime(2026, 1, 1), datetime(2026, 1, 2))


def test_fund_csv_has_header_and_rows(shop, core):
    _seed(shop)
    rep = fund_report(core.db, *_window(core))
    text = to_csv(rep.subjects)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert text.splitlines()[0].split(",") == columns_of(SubjectRow)
    assert len(rows) == len(rep.subjects)
    fee = next(r for r in rows if r["subject_code"] == "6001")
    assert int(fee["income"]) == rep.subject("6001").income
    assert to_csv([], columns_of(SubjectRow)).strip() == ",".join(columns_of(SubjectRow))
    assert to_csv([]) == ""
    assert len(to_csv(rep.by("merchant_id")).splitlines()) == len(rep.by("merchant_id")) + 1


# -- money as people read it ----------------------------------------------------------------------
def test_format_money_uses_each_currencys_exponent_and_separators():
    from console.reports.funds import format_money

    assert format_money(21_357_566, "CNY") == "213,575.66 CNY"
    assert format_money(5, "CNY") == "0.05 CNY" and format_money(-5, "USD") == "-0.05 USD"
    assert format_money(-123_456_789, "JPY") == "-123,456,789 JPY"  # exponent 0
    assert format_money(0, "KRW") == "0 KRW"
    assert format_money(10**18 + 7, "EUR") == "10,000,000,000,000,000.07 EUR"  # no float
    assert format_money(42, "XTS") == "42 (minor units) XTS"  # unknown: says what it is


def test_fund_tables_and_charts_show_money_and_say_when_empty(shop, core):
    from console.reports.charts import dimension_chart, subject_chart
    from console.reports.funds import format_money, has_movement, money_table

    _seed(shop)
    rep = fund_report(core.db, *_window(core))
    rows = money_table(rep.subjects)
    fee = next(r for r in rows if r["subject_code"] == "6001")
    assert fee["income"] == format_money(rep.subject("6001").income, "CNY")
    assert all(str(r[k]).endswith(" CNY") for r in rows for k in ("debits", "net", "closing"))
    assert money_table(rep.by("pay_org_no"), drop=("dimension",))[0].keys() >= {"value", "net"}
    fig = subject_chart(rep, "CNY")
    assert fig is not None and "CNY" in fig.layout.yaxis.title.text
    assert format_money(rep.subject("1002").income, "CNY") in fig.data[0].customdata
    assert dimension_chart(rep.by("merchant_id"), "CNY") is not None
    assert has_movement(rep, "CNY") and not has_movement(rep, "JPY")
    later = _window(core)[1] + timedelta(days=3)
    quiet = fund_report(core.db, later, later + timedelta(days=1))
    assert not has_movement(quiet)
    assert subject_chart(quiet, "CNY") is None and dimension_chart(quiet.by("order_type")) is None
