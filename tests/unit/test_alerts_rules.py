"""Rules, query specs, fingerprints, default rules and the Prometheus export (no database)."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from alerts import (
    DEFAULT_WINDOWS,
    BurnRateRule,
    MinTraffic,
    QuerySpec,
    RuleError,
    ThresholdRule,
    default_rules,
    to_prometheus_rules,
)
from alerts.export import GROUPS, emit_yaml, rule_groups
from alerts.slo_spec import SLO_WINDOWS
from collectors.query import MetricsQuery, Series

AT = 1_700_000_000.0
COLLECTOR_METRICS = {
    "paywatch_link_requests_total",
    "paywatch_link_latency_seconds_bucket",
    "paywatch_link_latency_seconds_count",
    "paywatch_guard_outcomes_total",
    "paywatch_guard_calls_total",
    "paywatch_breaker_state",
    "paywatch_breaker_tripped",
    "paywatch_compensation_backlog",
    "paywatch_notification_backlog",
    "paywatch_pending_postings",
    "paywatch_recon_differences",
    "paywatch_trial_balance_ok",
    "paywatch_business_snapshot_ok",  # meta-monitoring (alerts/meta_rules.py)
    "paywatch_build_info",
    "paywatch_job_runs_total",
    "paywatch_job_last_success_timestamp_seconds",
    "paywatch_job_interval_seconds",
    "paywatch_alert_rule_errors_total",
    "paywatch_grade_audit_contradicted",  # written by the grade audit (simulator/grade_audit)
}


class StubQuery(MetricsQuery):
    """Error ratios and rates per window, as given."""

    def __init__(self, ratios: dict[float, list[Series]], rates=None, latest=None) -> None:
        self.ratios, self.rates, self.latests = ratios, rates or {}, latest or []
        self.calls: list[tuple] = []

    def rate(self, metric, *, window, at, match=None, by=()):
        self.calls.append(("rate", metric, window, dict(match or {}), by))
        return self.rates.get(window, [Series({}, 100.0)])

    def count(self, metric, *, window, at, match=None, by=()):
        self.calls.append(("count", metric, window, dict(match or {}), by))
        if "outcome" in by:  # a burn rate's (bad, total): the given error ratios, 1000 events
            out = []
            for s in self.ratios.get(window, []):
                out.append(Series({**s.labels, "outcome": "error"}, s.value * 1000))
                out.append(Series({**s.labels, "outcome": "rejected"}, 77.0))  # neither
                out.append(Series({**s.labels, "outcome": "ok"}, (1 - s.value) * 1000))
            return out
        return [Series(s.labels, s.value * window) for s in self.rates.get(window, [])]

    def ratio(self, numerator, denominator, *, window, at, match_num=None, match_den=None, by=()):
        self.calls.append(
            ("ratio", numerator, window, dict(match_num or {}), dict(match_den or {}), by)
        )
        return self.ratios.get(window, [])

    def quantile(self, q, histogram, *, window, at, match=None, by=()):
        self.calls.append(("quantile", q, histogram, window, dict(match or {}), by))
        return [Series({"pay_org": "A"}, 1.5)]

    def latest(self, metric, *, at, match=None, by=(), max_age=300.0, agg="sum"):
        self.calls.append(("latest", metric, dict(match or {}), by, max_age))
        return self.latests

    def range(self, *a, **kw):
        raise NotImplementedError


def ratios(**by_window: float) -> dict[float, list[Series]]:
    sizes = {"h1": 3600, "m5": 300, "h6": 21600, "m30": 1800, "d3": 259200}
    return {sizes[k]: [Series({}, v)] for k, v in by_window.items()}


# -- query specs -----------------------------------------------------------------------------


def test_spec_promql_per_kind() -> None:
    rate = QuerySpec("rate", "m_total", {"step": "pay"}, by=("pay_org",), window=300)
    assert rate.promql() == 'sum by (pay_org) (rate(m_total{step="pay"}[5m]))'
    ratio = QuerySpec("ratio", "m_total", {"outcome": "ok"}, window=3600, match_den={})
    assert ratio.promql() == '(sum(rate(m_total{outcome="ok"}[1h])) / sum(rate(m_total[1h])))'
    q = QuerySpec("quantile", "lat_seconds", {"step": "pay"}, by=("pay_org",), q=0.99)
    assert q.promql() == (
        'histogram_quantile(0.99, sum by (le, pay_org) (rate(lat_seconds_bucket{step="pay"}[5m])))'
    )
    assert QuerySpec("latest", "g", by=("kind",)).promql() == "max by (kind) (g)"
    assert q.absent_promql(600) == 'absent_over_time(lat_seconds_bucket{step="pay"}[10m])'


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "median"},
        {"metric": "bad-name"},
        {"window": 0},
        {"q": 1.0},
        {"by": ("a-b",)},
        {"agg": "count"},
    ],
)
def test_spec_validation(kwargs) -> None:
    args = {"kind": "rate", "metric": "m", **kwargs}
    with pytest.raises(RuleError):
        QuerySpec(**args)


def test_spec_evaluates_through_the_query_interface() -> None:
    stub = StubQuery({})
    QuerySpec("quantile", "lat", {"step": "pay"}, by=("pay_org",), window=60).evaluate(stub, AT)
    QuerySpec("latest", "g", window=900).evaluate(stub, AT)
    assert stub.calls == [
        ("quantile", 0.99, "lat", 60, {"step": "pay"}, ("pay_org",)),
        ("latest", "g", {}, (), 900),
    ]


# -- threshold rules -------------------------------------------------------------------------


def test_threshold_rule_validation() -> None:
    spec = QuerySpec("latest", "g")
    bads: list[dict[str, Any]] = [
        {"op": "=>"},
        {"name": "has space"},
        {"labels": {"severity": "x"}},
        {"labels": {"alertname": "x"}},
        {"for_s": -1},
        {"absent_for_s": 0},
        {"severity": ""},
    ]
    for bad in bads:
        args: dict[str, Any] = {"name": "r", "query": spec, "op": ">", "threshold": 1, **bad}
        with pytest.raises(RuleError):
            ThresholdRule(**args)


def test_threshold_rule_evaluates_per_series_with_labels_and_annotations() -> None:
    stub = StubQuery(
        {},
        latest=[
            Series({"resource": "redis"}, 2.0),
            Series({"resource": "db"}, 0.0),
            Series({"resource": "mq"}, None),
        ],
    )
    rule = ThresholdRule(
        "breaker_open",
        QuerySpec("latest", "s", by=("resource",)),
        ">=",
        2,
        severity="page",
        labels={"team": "pay"},
        annotations={"summary": "{{ $labels.resource }} is {{ $value }}"},
    )
    (inst,) = rule.evaluate(stub, AT)
    assert inst.labels == {
        "resource": "redis",
        "team": "pay",
        "alertname": "breaker_open",
        "severity": "page",
    }
    assert inst.annotations == {"summary": "redis is 2"}


def test_min_traffic_guard_on_threshold_rule() -> None:
    spec = QuerySpec("quantile", "lat", by=("pay_org",))
    traffic = QuerySpec("rate", "req_total", by=("pay_org",))
    rule = ThresholdRule("p99", spec, ">", 1.0, min_traffic=MinTraffic(traffic, 0.05))
    quiet = StubQuery({}, rates={300: [Series({"pay_org": "A"}, 0.01)]})
    busy = StubQuery({}, rates={300: [Series({"pay_org": "A"}, 2.0)]})
    assert rule.evaluate(quiet, AT) == []
    assert [i.labels["pay_org"] for i in rule.evaluate(busy, AT)] == ["A"]
    assert rule.expr().endswith("and on(pay_org) sum by (pay_org) (rate(req_total[5m])) >= 0.05")
    with pytest.raises(RuleError):
        MinTraffic(spec, 1.0)


def test_callable_rule_needs_promql_to_export() -> None:
    rule = ThresholdRule("custom", lambda q, at: [], ">", 1)
    with pytest.raises(RuleError, match="promql"):
        rule.to_prometheus()
    rule = ThresholdRule("custom", lambda q, at: [], ">", 1, promql="x > 1", absent_for_s=60)
    with pytest.raises(RuleError, match="absent_promql"):
        rule.to_prometheus()


# -- burn-rate rules -------------------------------------------------------------------------


def test_burn_rate_needs_both_windows_over_the_threshold() -> None:
    rule = BurnRateRule("slo", 0.999, step="pay")
    assert rule.evaluate(StubQuery(ratios(h1=0.02, m5=0.01)), AT) == []  # short below 1.44%
    assert rule.evaluate(StubQuery(ratios(h1=0.01, m5=0.5)), AT) == []  # long below
    (inst,) = rule.evaluate(StubQuery(ratios(h1=0.02, m5=0.02)), AT)
    assert (inst.severity, inst.annotations["windows"]) == ("page", "1h/5m")
    assert inst.value == pytest.approx(20.0)
    assert inst.labels == {"alertname": "slo", "severity": "page", "step": "pay"}


def test_burn_rate_severity_follows_the_matching_pair() -> None:
    rule = BurnRateRule("slo", 0.999, step="pay")
    found = rule.evaluate(StubQuery(ratios(h6=0.007, m30=0.007, d3=0.002)), AT)
    assert {(i.severity, i.annotations["windows"]) for i in found} == {
        ("page", "6h/30m"),
        ("ticket", "3d/6h"),
    }
    # both page pairs match: one page instance, carrying the larger long-window burn
    (page,) = rule.evaluate(StubQuery(ratios(h1=0.02, m5=0.02, h6=0.03, m30=0.03)), AT)
    assert page.value == pytest.approx(30.0) and page.annotations["windows"] == "6h/30m"


def test_burn_rate_queries_errors_over_total() -> None:
    stub = StubQuery(ratios(h1=0.5, m5=0.5, h6=0.5, m30=0.5, d3=0.5))
    BurnRateRule("slo", 0.99, step="refund", by=("pay_org",)).evaluate(stub, AT)
    windows = sorted({c[2] for c in stub.calls})
    assert windows == [300, 1800, 3600, 21600, 259200]
    quiet = StubQuery(ratios())  # no long window burns: its short window is never read
    BurnRateRule("slo", 0.99, step="refund", by=("pay_org",)).evaluate(quiet, AT)
    assert sorted({c[2] for c in quiet.calls}) == [3600, 21600, 259200]
    assert stub.calls[0] == (
        "count",
        "paywatch_link_requests_total",
        3600,
        {"step": "refund"},
        ("pay_org", "outcome"),
    )


def test_burn_rate_counts_bad_over_good_and_bad_as_its_outcomes_say() -> None:
    """error and timeout are bad, ok and pending good, rejected neither (shipped default);
    other outcomes given: those count."""
    from alerts.slo_spec import Outcomes

    counts = [("ok", 90.0), ("pending", 5.0), ("error", 3.0), ("timeout", 2.0), ("rejected", 50.0)]

    class Counts(StubQuery):
        def count(self, metric, *, window, at, match=None, by=()):
            return [Series({"outcome": o}, v) for o, v in counts]

    assert BurnRateRule("slo", 0.99, step="pay").counts(Counts({}), 3600, AT) == {(): (5, 100)}
    odd = BurnRateRule("slo", 0.99, step="pay", outcomes=Outcomes(("ok",), ("rejected",)))
    assert odd.counts(Counts({}), 3600, AT) == {(): (50, 140)}
    expr = odd._ratio_promql(300)
    assert 'outcome=~"rejected"' in expr and 'outcome=~"ok|rejected"' in expr


def test_burn_rate_groups_by_labels_and_guards_traffic_per_group() -> None:
    by_org: dict[float, list[Series]] = {
        w: [Series({"pay_org": "A"}, 0.5), Series({"pay_org": "B"}, 0.5)] for w in (3600, 300)
    }
    rates = {3600: [Series({"pay_org": "A"}, 5.0), Series({"pay_org": "B"}, 0.001)]}
    rule = BurnRateRule(
        "slo", 0.999, step="pay", by=("pay_org",), min_traffic_rps=0.1, windows=DEFAULT_WINDOWS[:1]
    )
    found = rule.evaluate(StubQuery(by_org, rates=rates), AT)
    assert [i.labels["pay_org"] for i in found] == ["A"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"slo": 1.0},
        {"slo": 0},
        {"windows": ()},
        {"windows": ((300, 3600, 14.4, "page"),)},
        {"windows": ((3600, 300, 0, "page"),)},
        {"min_traffic_rps": -1},
        {"name": "9lives"},
    ],
)
def test_burn_rate_validation(kwargs) -> None:
    args = {"name": "slo", "slo": 0.999, **kwargs}
    with pytest.raises(RuleError):
        BurnRateRule(**args)


def test_burn_rate_export_is_the_workbook_form() -> None:
    rule = BurnRateRule(
        "slo_pay_success", 0.999, step="pay", min_traffic_rps=0.05, absent_for_s=1800
    )
    page, ticket, absent = rule.to_prometheus()
    assert page["labels"] == {"severity": "page", "step": "pay"}
    assert ticket["labels"] == {"severity": "ticket", "step": "pay"}
    assert page["expr"].count("(14.4 * 0.001)") == 2 and page["expr"].count("(6 * 0.001)") == 2
    assert "\nor\n" in page["expr"] and "\nor\n" not in ticket["expr"]  # pairs OR'ed
    assert "[3d]" in ticket["expr"] and "[6h]" in ticket["expr"]
    guard = 'and on()\n  sum(rate(paywatch_link_requests_total{step="pay"}[1h])) >= 0.05'
    assert guard in page["expr"]
    assert 'step="pay",outcome=~"error|timeout"' in page["expr"]
    assert 'outcome=~"error|ok|pending|timeout"' in page["expr"]
    assert absent == {
        "alert": "slo_pay_success_absent",
        # every process exports a zero series: absent is "no increase", or no series
        "expr": 'sum(increase(paywatch_link_requests_total{step="pay"}[30m])) == 0 '
        'or absent_over_time(paywatch_link_requests_total{step="pay"}[30m])',
        "labels": {"severity": "ticket"},
        "annotations": {"summary": "no data for slo_pay_success for 30m"},
    }


# -- default rules and export ----------------------------------------------------------------


def test_default_rules_cover_the_core_links() -> None:
    rules = default_rules(["SANDBOX_A", "SANDBOX_B"])
    by_name = {r.name: r for r in rules}
    for step in ("pay", "callback", "refund", "trade_create"):
        rule = by_name[f"slo_{step}_success"]
        assert isinstance(rule, BurnRateRule) and rule.match == {"step": step}
        assert rule.min_traffic_rps and rule.windows == SLO_WINDOWS  # the spec's 4 pairs
    channel = by_name["slo_channel_call_success_sandbox_a"]
    assert isinstance(channel, BurnRateRule)
    assert channel.match == {"step": "channel_call", "pay_org": "SANDBOX_A"}
    p99 = by_name["pay_latency_p99_high"]
    assert isinstance(p99, ThresholdRule) and (p99.op, p99.threshold, p99.for_s) == (">", 1.0, 300)
    breaker = by_name["breaker_open"]
    assert isinstance(breaker, ThresholdRule)
    assert (breaker.op, breaker.threshold, breaker.for_s, breaker.severity) == (">=", 1, 60, "page")
    assert breaker.query.metric == "paywatch_breaker_tripped"
    for name in (
        "compensation_backlog_high",
        "notification_backlog_high",
        "pending_postings_high",
        "trial_balance_broken",
        "recon_differences",
    ):
        assert name in by_name
    names = [n for r in rules for n in r.alert_names()]
    assert len(names) == len(set(names))


def test_default_rules_use_only_the_collectors_metrics() -> None:
    text = to_prometheus_rules(default_rules(["SANDBOX_A"]))
    used = set(re.findall(r"\b(paywatch_[a-z_]+)(?=[{\[)])", text))
    assert used and used <= COLLECTOR_METRICS, used - COLLECTOR_METRICS


def test_export_groups_and_yaml() -> None:
    rules = default_rules(["SANDBOX_A"])
    text = to_prometheus_rules(rules)
    doc = yaml.safe_load(text)
    assert [g["name"] for g in doc["groups"]] == list(GROUPS)
    assert doc == rule_groups(rules)
    assert yaml.safe_load(emit_yaml(doc)) == doc  # the no-PyYAML path says the same
    items = [r for g in doc["groups"] for r in g["rules"]]
    alerts = [r for r in items if "alert" in r]
    assert all(set(r) <= {"alert", "expr", "for", "labels", "annotations"} for r in alerts)
    assert all(set(r) == {"record", "expr", "labels"} for r in items if "alert" not in r)
    breaker = next(r for r in items if r.get("alert") == "breaker_open")
    assert breaker == {
        "alert": "breaker_open",
        "expr": "max by (resource) (paywatch_breaker_tripped) >= 1",
        "for": "1m",
        "labels": {"severity": "page"},
        "annotations": {
            "summary": "breaker for {{ $labels.resource }} has kept calls away for a minute",
            "runbook": "docs/runbook.md#breaker_open",
            "plan": "degrade {{ $labels.resource }}",  # the switch plan it proposes
        },
    }
    assert rule_groups([], prefix="x-") == {"groups": []}


def test_emitter_handles_edge_values() -> None:
    doc = {"a": [], "b": {}, "c": [1, "two", {"d": None, "e": True}], "f": 'q"\n'}
    assert yaml.safe_load(emit_yaml(doc)) == doc
