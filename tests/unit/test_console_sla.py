"""Console SLA report over a fake MetricsQuery: availability, budget and burn, counts of whole
requests, the chart, and Prometheus counts as increases."""

from __future__ import annotations

import csv
import io

import pytest

from collectors.query import MetricsQuery, Series
from console.reports.charts import MET, MISSED, sla_chart
from console.reports.sla import budget_text, display_rows, has_traffic, sla_csv, sla_report
from stability.depmap import DependencyMap, ResourceSpec

# -- SLA -------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def map_targets_only(monkeypatch):
    """These tests are about the map's targets: the SLO spec (which wins over the map) is
    left out; its precedence is tested in tests/integration/test_slo_spec.py."""
    monkeypatch.setattr("console.reports.sla.spec_objectives", dict)


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


REQ, GUARD = "paywatch_link_requests_total", "paywatch_guard_calls_total"


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
            ({"caller": "link.pay", "resource": "risk", "outcome": "pass"}, 980),
            ({"caller": "link.refund", "resource": "risk", "outcome": "pass"}, 10),
            ({"resource": "risk", "outcome": "breaker_open"}, 6),
            ({"resource": "risk", "outcome": "bulkhead_full"}, 4),
            ({"resource": "risk", "outcome": "fallback"}, 30),
            ({"resource": "risk", "outcome": "blocked"}, 20),
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
    from urllib.parse import parse_qsl

    from conftest import LiveServer
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from collectors import PrometheusQuery

    asked: list[str] = []

    async def answer(request: Request) -> JSONResponse:
        form = dict(parse_qsl((await request.body()).decode()))
        asked.append(form["query"])
        result = []
        if form["query"].startswith("sum by (step, outcome) (increase("):
            result = [
                {"metric": {"step": "pay", "outcome": "ok"}, "value": [0, "2999.7"]},
                {"metric": {"step": "pay", "outcome": "error"}, "value": [0, "3.2"]},
            ]
        return JSONResponse(
            {"status": "success", "data": {"resultType": "vector", "result": result}}
        )

    app = Starlette(routes=[Route("/api/v1/query", answer, methods=["POST"])])
    with LiveServer(app) as prometheus:
        q = PrometheusQuery(prometheus.url)
        rows = sla_report(q, None, now=1_000.0, window_s=30 * 86400.0)
        q.close()
    pay = next(r for r in rows if r.name == "pay")
    assert (pay.good, pay.bad) == (3000, 3)
    counts = [a for a in asked if "increase(" in a]
    assert counts and all("[2592000s]" in a for a in counts)
    assert not [a for a in asked if a.startswith("sum by (step, outcome) (rate(")]
