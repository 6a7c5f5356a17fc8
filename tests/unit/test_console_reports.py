"""Console report reads: the fund report against the ledger (SQLite and PostgreSQL),
the SLA report over a fake MetricsQuery, and the operations reads."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import insert

from collectors.query import MetricsQuery, Series
from console.reports.charts import MET, MISSED, sla_chart
from console.reports.funds import DIMENSIONS, SubjectRow, columns_of, fund_report, to_csv
from console.reports.ops import (
    compensation_rows,
    manual_items,
    notification_rows,
    parse_statement_csv,
    recon_differences,
    recon_runs,
    resolve_difference,
)
from console.reports.sla import budget_text, display_rows, has_traffic, sla_csv, sla_report
from paycore import CreateTrade, PayRequest, PayTool, RefundRequest
from paycore.db.schema import Notification, NotificationAttempt, ReconDifference
from paycore.jobs.tasks import TaskQueue
from paycore.ledger import fee_income, merchant_payable, platform_transit
from paycore.ledger.subjects import SUBJECTS
from paycore.money import fee_for
from stability.depmap import DependencyMap, ResourceSpec


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


# -- SLA -------------------------------------------------------------------------------------


class FakeQuery(MetricsQuery):
    """Counts per (labels) over the window. ``rate`` fails: the SLA report must count the
    counters' increase, never scale a rate by the window."""

    def __init__(
        self, counters: dict[str, list[tuple[dict[str, str], float]]], p99: dict[str, float]
    ) -> None:
        self.counters, self.p99 = counters, p99
        self.calls: list[tuple[str, float, float]] = []

    def count(self, metric, *, window, at, match=None, by=()):
        self.calls.append((metric, window, at))
        out: dict[tuple[str, ...], float] = {}
        for labels, count in self.counters.get(metric, []):
            key = tuple(labels.get(b, "") for b in by)
            out[key] = out.get(key, 0.0) + count
        return [Series(dict(zip(by, k, strict=True)), v) for k, v in out.items()]

    def rate(self, metric, *, window, at, match=None, by=()):
        raise AssertionError("the SLA report scaled a rate by the window")

    def ratio(self, *a, **kw):  # pragma: no cover - unused
        return []

    def quantile(self, q, histogram, *, window, at, match=None, by=()):
        return [Series({"step": s}, v) for s, v in self.p99.items()]

    def latest(self, *a, **kw):  # pragma: no cover - unused
        return []

    def range(self, *a, **kw):  # pragma: no cover - unused
        return {}


REQ, GUARD = "paywatch_link_requests_total", "paywatch_guard_outcomes_total"


def test_sla_report_availability_budget_and_burn():
    counters = {
        REQ: [
            ({"step": "pay", "outcome": "ok", "reason": "", "pay_org": "A"}, 9_980),
            ({"step": "pay", "outcome": "ok", "reason": "", "pay_org": "B"}, 10),
            ({"step": "pay", "outcome": "error", "reason": "x", "pay_org": "A"}, 5),
            ({"step": "pay", "outcome": "timeout", "reason": "", "pay_org": "A"}, 5),
            ({"step": "pay", "outcome": "rejected", "reason": "r", "pay_org": "A"}, 1_000),
            ({"step": "refund", "outcome": "ok"}, 100),
        ],
        GUARD: [
            ({"resource": "risk", "outcome": "pass"}, 990),
            ({"resource": "risk", "outcome": "breaker_open"}, 10),
            ({"resource": "risk", "outcome": "fallback"}, 50),
            ({"resource": "coupon", "outcome": "pass"}, 10),
        ],
    }
    dmap = DependencyMap(
        [
            ResourceSpec("link.pay", "link", sla_target=0.999, core_link=True),
            ResourceSpec("risk", "service", sla_target=0.99),
            ResourceSpec("database", "database", sla_target=0.9999),
        ]
    )
    q = FakeQuery(counters, {"pay": 0.42})
    rows = sla_report(q, dmap, now=1_000_000.0, window_s=3600.0)
    by = {(r.kind, r.name): r for r in rows}
    pay = by[("link", "pay")]
    assert (pay.requests, pay.total, pay.good, pay.bad, pay.excluded) == (
        11_000,
        10_000,
        9_990,
        10,
        1_000,
    )
    assert all(isinstance(v, int) for v in (pay.requests, pay.total, pay.good, pay.bad))
    assert pay.availability == pytest.approx(0.999) and pay.met
    assert pay.allowed_errors == pytest.approx(10) and pay.budget_left == pytest.approx(0.0)
    assert pay.burn_rate == pytest.approx(1.0) and pay.p99_s == 0.42
    refund = by[("link", "refund")]
    assert refund.slo == 0.999 and refund.availability == 1.0 and refund.budget_left == 1.0
    idle = by[("link", "trade_create")]
    assert idle.availability is None and idle.met is None and idle.total == 0
    risk = by[("dependency", "risk")]
    assert risk.slo == 0.99 and (risk.total, risk.excluded) == (1_000, 50)
    assert risk.availability == pytest.approx(0.99) and risk.burn_rate == pytest.approx(1.0)
    assert by[("dependency", "coupon")].slo == 0.999  # not in the map: default target
    assert by[("dependency", "database")].total == 0
    assert ("dependency", "link.pay") not in by
    assert all(c[1] == 3600.0 and c[2] == 1_000_000.0 for c in q.calls)
    text = sla_csv(rows)
    lines = list(csv.DictReader(io.StringIO(text)))
    assert text.startswith("kind,name,slo,") and len(lines) == len(rows)
    assert next(r for r in lines if r["name"] == "pay")["good"] == "9990"


def test_sla_overspent_budget_goes_negative_and_reads_as_exhausted():
    q = FakeQuery(
        {REQ: [({"step": "pay", "outcome": "ok"}, 990), ({"step": "pay", "outcome": "error"}, 10)]},
        {},
    )
    pay = next(r for r in sla_report(q, None, now=0.0, window_s=60.0) if r.name == "pay")
    assert pay.availability == pytest.approx(0.99) and pay.met is False
    assert pay.budget_left == pytest.approx(-9.0) and pay.burn_rate == pytest.approx(10.0)
    assert pay.p99_s is None
    shown = next(d for d in display_rows([pay]))
    assert shown["status"] == "missed" and shown["error budget"] == "exhausted by 900.0 %"
    assert shown["availability"] == "99.000 %" and shown["burn rate"] == "10.00×"
    assert shown["target"] == "99.9 %" and (shown["good"], shown["bad"]) == (990, 10)


def test_sla_counts_are_whole_requests_and_display_reads_well():
    """Prometheus' increase() extrapolates (fractions): the report shows whole requests."""
    q = FakeQuery(
        {
            REQ: [
                ({"step": "pay", "outcome": "ok"}, 1999.6),
                ({"step": "pay", "outcome": "timeout"}, 0.4),
            ]
        },
        {"pay": 0.0123},
    )
    pay = next(r for r in sla_report(q, None, now=0.0, window_s=60.0) if r.name == "pay")
    assert (pay.good, pay.bad, pay.total) == (2000, 0, 2000) and pay.met is True
    shown = display_rows([pay])[0]
    assert shown["error budget"] == "100.0 % left" and shown["p99"] == "12.3 ms"
    idle = display_rows(
        [r for r in sla_report(q, None, now=0.0, window_s=60.0) if r.name == "refund"]
    )[0]
    assert (idle["status"], idle["availability"], idle["error budget"]) == ("no traffic", "—", "—")
    assert has_traffic([pay]) and not has_traffic(
        [r for r in sla_report(FakeQuery({}, {}), None, now=0.0, window_s=60.0)]
    )
    # a 100 % target has no budget: the first error exhausts it (no division by zero)
    from types import SimpleNamespace  # the map refuses 1.0; the report must still not divide by 0

    strict = SimpleNamespace(
        resources=[SimpleNamespace(name="link.pay", sla_target=1.0, core_link=True)]
    )
    q2 = FakeQuery(
        {REQ: [({"step": "pay", "outcome": "ok"}, 5), ({"step": "pay", "outcome": "error"}, 1)]}, {}
    )
    row = next(r for r in sla_report(q2, strict, now=0.0, window_s=60.0) if r.name == "pay")
    assert row.met is False and budget_text(row).startswith("exhausted")


def test_sla_chart_colours_met_and_missed_and_says_when_empty():
    q = FakeQuery(
        {
            REQ: [
                ({"step": "pay", "outcome": "ok"}, 990),
                ({"step": "pay", "outcome": "error"}, 10),
                ({"step": "refund", "outcome": "ok"}, 50),
            ]
        },
        {},
    )
    rows = sla_report(q, None, now=0.0, window_s=60.0)
    fig = sla_chart(rows)
    bars = {t.name: t for t in fig.data if t.type == "bar"}
    assert list(bars["met"].x) == ["link:refund"] and bars["met"].marker.color == MET
    assert list(bars["missed"].x) == ["link:pay"] and bars["missed"].marker.color == MISSED
    assert MET != MISSED
    assert sla_chart([r for r in rows if r.name == "trade_create"]) is None


def test_prometheus_counts_are_increase_not_rate_times_window():
    """The SLA report over Prometheus asks for increase() over the window."""
    import httpx

    from collectors import PrometheusQuery

    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        form = dict(httpx.QueryParams(request.content.decode()))
        asked.append(form["query"])
        result = []
        if form["query"].startswith("sum by (step, outcome) (increase("):
            result = [
                {"metric": {"step": "pay", "outcome": "ok"}, "value": [0, "2999.7"]},
                {"metric": {"step": "pay", "outcome": "error"}, "value": [0, "3.2"]},
            ]
        return httpx.Response(
            200, json={"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    q = PrometheusQuery(
        "http://prom.test", client=httpx.Client(transport=httpx.MockTransport(answer))
    )
    rows = sla_report(q, None, now=1_000.0, window_s=30 * 86400.0)
    pay = next(r for r in rows if r.name == "pay")
    assert (pay.good, pay.bad) == (3000, 3)
    counts = [a for a in asked if "increase(" in a]
    assert counts and all("[2592000s]" in a for a in counts)
    assert not [a for a in asked if a.startswith("sum by (step, outcome) (rate(")]


# -- operations reads ------------------------------------------------------------------------


def test_compensation_rows_filter(core):
    q = TaskQueue(core.db, core.ids, clock=core.clock)
    q.enqueue(None, "refund_retry", "k1", {"a": 1}, merchant_id="m1")
    q.enqueue(None, "notify", "k2", {})
    t = q.list()[0]
    q.resolve_manually(next(x.id for x in q.list() if x.biz_key == "k2"), "ops", "done by hand")
    assert {r.biz_key for r in compensation_rows(core.db)} == {"k1", "k2"}
    assert [r.biz_key for r in compensation_rows(core.db, status="pending")] == ["k1"]
    assert [r.biz_key for r in compensation_rows(core.db, kind="notify")] == ["k2"]
    assert compensation_rows(core.db, kind="notify", status="pending") == []
    done = compensation_rows(core.db, status="done")[0]
    assert "resolved by ops: done by hand" in done.note and t.id


def test_notification_rows_with_attempts(core):
    now = datetime.now(UTC)
    with core.db.session() as s:
        for i, status in enumerate(("pending", "gave_up", "delivered"), start=1):
            s.execute(
                insert(Notification).values(
                    id=i,
                    event_id=f"e{i}",
                    merchant_id="m",
                    event_type="trade.paid",
                    trade_id=None,
                    payload="{}",
                    url="http://x",
                    status=status,
                    attempts=i,
                    next_attempt_at=now,
                    last_error="boom",
                    created_at=now,
                )
            )
        s.execute(
            insert(NotificationAttempt),
            [
                {
                    "id": 10,
                    "notification_id": 1,
                    "at": now,
                    "status_code": 500,
                    "error": "e",
                    "duration_ms": 5,
                },
                {
                    "id": 11,
                    "notification_id": 2,
                    "at": now,
                    "status_code": None,
                    "error": "t",
                    "duration_ms": 3000,
                },
                {
                    "id": 12,
                    "notification_id": 2,
                    "at": now + timedelta(seconds=1),
                    "status_code": 502,
                    "error": "",
                    "duration_ms": 7,
                },
            ],
        )
    rows = {r.id: r for r in notification_rows(core.db)}
    assert set(rows) == {1, 2}
    assert [a.status_code for a in rows[2].history] == [None, 502]
    assert rows[1].history[0].duration_ms == 5
    assert [r.id for r in notification_rows(core.db, statuses=("delivered",))] == [3]


def _diff(i: int, **kw):
    base = {
        "id": i,
        "run_id": 1,
        "kind": "missing_ours",
        "pay_org_no": "SANDBOX_A",
        "day": "2026-01-01",
        "ref": f"ref{i}",
        "our_amount": None,
        "channel_amount": 5,
        "our_status": "",
        "channel_status": "success",
        "resolution": "manual",
        "status": "open",
        "note": "",
        "created_at": datetime.now(UTC),
    }
    return base | kw


def test_recon_reads_and_resolving_a_difference(shop, core):
    from paycore.recon import reconcile_day

    day = date(2026, 1, 1)
    lines = parse_statement_csv(
        "channel_txn_no,channel_ref,kind,amount,currency,status,settled_at\n"
        "X1,,pay,700,CNY,success,2026-01-01T10:00:00+00:00\n"
    )
    rep = reconcile_day(core, lambda org, d: lines, "SANDBOX_A", day)
    assert rep.counts == {"missing_ours": 1}
    runs = recon_runs(core.db, kind="external")
    assert len(runs) == 1 and runs[0].status == "done" and runs[0].day == "2026-01-01"
    assert recon_runs(core.db, pay_org_no="SANDBOX_B") == []
    with core.db.session() as s:
        s.execute(insert(ReconDifference), [_diff(900, kind="amount_mismatch", day="2026-01-02")])
    diffs = recon_differences(core.db, day="2026-01-01")
    assert [d.ref for d in diffs] == ["X1"] and diffs[0].channel_amount == 700
    assert [d.id for d in recon_differences(core.db, kind="amount_mismatch")] == [900]
    assert len(recon_differences(core.db, pay_org_no="SANDBOX_A", status="open")) == 2
    with pytest.raises(ValueError):
        resolve_difference(core.db, 900, "ops", "  ", datetime.now(UTC))
    assert resolve_difference(core.db, 900, "ops", "booked by hand", datetime.now(UTC))
    assert not resolve_difference(core.db, 900, "ops", "again", datetime.now(UTC))
    resolved = recon_differences(core.db, status="resolved")
    assert [d.id for d in resolved] == [900] and "resolved by ops: booked by hand" in resolved[
        0
    ].note
    assert json.dumps(runs[0].stats)


def test_statement_csv_errors():
    with pytest.raises(ValueError, match="lacks columns"):
        parse_statement_csv("channel_txn_no,amount\nX,1\n")
    head = "channel_txn_no,kind,amount,currency,status,settled_at\n"
    with pytest.raises(ValueError, match="line 2"):
        parse_statement_csv(head + "X,pay,abc,CNY,success,2026-01-01T00:00:00+00:00\n")
    with pytest.raises(ValueError, match="offset"):
        parse_statement_csv(head + "X,pay,1,CNY,success,2026-01-01T00:00:00\n")
    assert parse_statement_csv(head.encode()) == []


def test_manual_items(shop, core):
    from sqlalchemy import update

    from paycore.db.schema import PayItem

    t = shop.trade(amount=500)
    po = core.payments.pay(shop.mid, PayRequest(t.out_trade_no, (PayTool("channel", 500),)))
    assert manual_items(core.db) == []
    with core.db.session() as s:
        s.execute(update(PayItem).where(PayItem.id == po.items[0].id).values(manual=True))
    rows = manual_items(core.db)
    assert [r.id for r in rows] == [po.items[0].id] and rows[0].amount == 500


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
