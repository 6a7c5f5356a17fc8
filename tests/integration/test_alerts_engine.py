"""The alert engine on SQLite and PostgreSQL, driven by synthetic series and an injected clock.

``FakeQuery`` is a test double of the metrics *input* (the collectors' MetricsQuery):
counters and gauges are functions of time, so every window is exact and every
expected firing time can be computed by hand (the arithmetic is in the docstrings).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pytest
import sqlalchemy as sa
from conftest import Clock

from alerts import (
    AlertEngine,
    BurnRateRule,
    Delivery,
    Notification,
    Notifier,
    QuerySpec,
    RuleError,
    ThresholdRule,
)
from alerts.schema import AlertHistory, AlertNotification, AlertState
from collectors.query import MetricsQuery, Series

T0 = 1_700_000_000.0  # errors start here in the burn-rate scenarios
Fn = Callable[[float], float]


class _Line:
    def __init__(
        self, name: str, labels: dict[str, str], fn: Fn, since: float | None, until: float | None
    ) -> None:
        self.name, self.labels, self.fn, self.since, self.until = name, labels, fn, since, until

    def matches(self, name: str, match: Mapping[str, str] | None) -> bool:
        return self.name == name and all(self.labels.get(k) == v for k, v in (match or {}).items())

    def increase(self, at: float, window: float) -> float | None:
        """Increase over (at - window, at], only where the series has samples."""
        start, end = at - window, at
        if self.until is not None:
            end = min(end, self.until)
        if self.since is not None:
            start = max(start, self.since)
        if end <= start:
            return None
        return self.fn(end) - self.fn(start)


class FakeQuery(MetricsQuery):
    """In-memory MetricsQuery over synthetic series (counters, gauges, quantiles)."""

    def __init__(self) -> None:
        self.counters: list[_Line] = []
        self.gauges: list[_Line] = []
        self.quantiles: list[_Line] = []
        self.fail = False

    def counter(
        self,
        name: str,
        labels: dict[str, str],
        fn: Fn,
        *,
        since: float | None = None,
        until: float | None = None,
    ) -> None:
        self.counters.append(_Line(name, labels, fn, since, until))

    def gauge(
        self,
        name: str,
        labels: dict[str, str],
        fn: Fn,
        *,
        until: float | None = None,
    ) -> None:
        self.gauges.append(_Line(name, labels, fn, None, until))

    def set_quantile(self, histogram: str, labels: dict[str, str], fn: Fn) -> None:
        self.quantiles.append(_Line(histogram, labels, fn, None, None))

    @staticmethod
    def _group(labels: Mapping[str, str], by: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(labels.get(b, "") for b in by)

    def _increases(self, metric, window, at, match, by) -> dict[tuple[str, ...], float]:
        if self.fail:
            raise ConnectionError("metrics backend down")
        out: dict[tuple[str, ...], float] = {}
        for line in self.counters:
            if line.matches(metric, match):
                inc = line.increase(at, window)
                if inc is not None:
                    key = self._group(line.labels, by)
                    out[key] = out.get(key, 0.0) + inc
        return out

    def rate(self, metric, *, window, at, match=None, by=()):
        incs = self._increases(metric, window, at, match, by)
        return [Series(dict(zip(by, k, strict=True)), v / window) for k, v in incs.items()]

    def count(self, metric, *, window, at, match=None, by=()):
        incs = self._increases(metric, window, at, match, by)
        return [Series(dict(zip(by, k, strict=True)), v) for k, v in incs.items()]

    def ratio(self, numerator, denominator, *, window, at, match_num=None, match_den=None, by=()):
        num = self._increases(numerator, window, at, match_num, by)
        den = self._increases(denominator, window, at, match_den, by)
        return [
            Series(dict(zip(by, k, strict=True)), num.get(k, 0.0) / d if d > 0 else None)
            for k, d in den.items()
        ]

    def quantile(self, q, histogram, *, window, at, match=None, by=()):
        return [
            Series({b: line.labels.get(b, "") for b in by}, line.fn(at))
            for line in self.quantiles
            if line.matches(histogram, match)
        ]

    def latest(self, metric, *, at, match=None, by=(), max_age=300.0, agg="sum"):
        from collectors.query import check_agg

        if self.fail:
            raise ConnectionError("metrics backend down")
        out: dict[tuple[str, ...], list[float]] = {}
        for line in self.gauges:
            if line.matches(metric, match) and (line.until is None or at - line.until <= max_age):
                key = self._group(line.labels, by)
                out.setdefault(key, []).append(line.fn(min(at, line.until or at)))
        return [Series(dict(zip(by, k, strict=True)), check_agg(agg)(v)) for k, v in out.items()]

    def range(self, metric_kind, metric, *, start, end, step, match=None, by=(), window=300.0):
        raise NotImplementedError


class RecordingNotifier(Notifier):
    """Accepts everything and remembers it."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    def notify(self, notification: Notification) -> list[Delivery]:
        self.sent.append(notification)
        return [Delivery("recorder", "sent", 1, "", "{}")]


def pay_traffic(q: FakeQuery, errors: Fn, rps: float = 10.0, step: str = "pay") -> None:
    """``rps`` requests/s on ``step``; ``errors(t)`` of them (cumulative) failed."""
    m = "paywatch_link_requests_total"
    q.counter(m, {"step": step, "outcome": "ok", "pay_org": "A"}, lambda t: rps * t - errors(t))
    q.counter(m, {"step": step, "outcome": "error", "pay_org": "A"}, errors)


def ramp(start: float, per_s: float, stop: float | None = None) -> Fn:
    """Cumulative errors: ``per_s`` errors/s from ``start`` until ``stop``."""
    return lambda t: per_s * max(0.0, min(t, stop if stop is not None else t) - start)


def run(eng: AlertEngine, start: float, end: float, step: float) -> None:
    t = start
    while t <= end + 1e-9:
        eng.evaluate(now=t)
        t += step


def transitions(eng: AlertEngine, rule: str, severity: str | None = None) -> list[tuple]:
    return [
        (h.from_state, h.to_state, h.at - T0)
        for h in reversed(eng.history(limit=1000))
        if h.rule == rule and (severity is None or h.labels.get("severity") == severity)
    ]


@pytest.fixture
def db(migrated_db):
    return migrated_db.engine


# -- burn rate ---------------------------------------------------------------------------


def test_fast_burn_pages_at_the_first_evaluation_both_windows_exceed_and_resolves(db) -> None:
    """10 req/s, 5% errors from T0 to T0+1800 s; budget 0.1%, page threshold 14.4 × 0.1%.

    1h window: 0.5·x / 36000 > 0.0144 ⇔ x > 1036.8 s → first evaluation (60 s grid) 1080.
    5m window: 5% once x > 86.4 s. After the errors stop at 1800 the 5m window holds
    0.5·(300 − y)/3000, below 0.0144 once y > 213.6 → resolved at 1800 + 240 = 2040.
    6h/30m (needs 0.6%) peaks at 900/216000 = 0.42%, 3d/6h at 0.035%: neither fires.
    """
    q = FakeQuery()
    pay_traffic(q, ramp(T0, 0.5, stop=T0 + 1800))
    notifier = RecordingNotifier()
    eng = AlertEngine(
        db, q, [BurnRateRule("slo_pay_success", 0.999, step="pay")], notifier=notifier, group_wait=0
    )
    run(eng, T0 - 600, T0 + 3600, 60)

    assert transitions(eng, "slo_pay_success") == [
        ("inactive", "firing", 1080.0),
        ("firing", "resolved", 2040.0),
    ]
    states = {a.labels["severity"] for a in eng.alerts(("firing", "resolved"))}
    assert states == {"page"}  # the ticket pair never fired
    firing = [n for n in notifier.sent if n.status == "firing"]
    resolved = [n for n in notifier.sent if n.status == "resolved"]
    assert [n.at - T0 for n in firing] == [1080.0]
    assert [n.at - T0 for n in resolved] == [2040.0]
    alert = firing[0].alerts[0]
    assert alert.labels == {"alertname": "slo_pay_success", "severity": "page", "step": "pay"}
    assert alert.value == pytest.approx(15.0)  # 1h error ratio 1.5% = 15 × budget
    assert alert.annotations["windows"] == "1h/5m"


def test_slow_burn_pages_on_6h_and_tickets_on_3d(db) -> None:
    """0.8% errors from T0 (8 × budget): 1h/5m never (needs 1.44%).

    6h: 0.008·x/21600 > 0.006 ⇔ x > 16200 → first evaluation on the 300 + 600k grid: 16500.
    3d: 0.008·x/259200 > 0.001 ⇔ x > 32400 (6h short window long past) → 32700.
    """
    q = FakeQuery()
    pay_traffic(q, ramp(T0, 0.08))
    eng = AlertEngine(db, q, [BurnRateRule("slo_pay_success", 0.999, step="pay")])
    run(eng, T0 + 300, T0 + 33300, 600)
    assert transitions(eng, "slo_pay_success", "page") == [("inactive", "firing", 16500.0)]
    assert transitions(eng, "slo_pay_success", "ticket") == [("inactive", "firing", 32700.0)]
    page = next(a for a in eng.active() if a.severity == "page")
    assert page.annotations["windows"] == "6h/30m"


def test_min_traffic_guard_prevents_a_page_at_one_request_a_minute(db) -> None:
    """1 req/min and a single error: 1h ratio 1/60 = 1.7% and 5m ratio 20% both exceed
    1.44%, so the unguarded rule pages; the guarded one (≥ 0.1 req/s) does not."""
    q = FakeQuery()
    pay_traffic(q, lambda t: 1.0 if t >= T0 else 0.0, rps=1 / 60)
    rules = [
        BurnRateRule("guarded", 0.999, step="pay", min_traffic_rps=0.1),
        BurnRateRule("unguarded", 0.999, step="pay"),
    ]
    eng = AlertEngine(db, q, rules)
    run(eng, T0 + 60, T0 + 240, 60)
    assert transitions(eng, "unguarded", "page")[0][:2] == ("inactive", "firing")
    assert transitions(eng, "guarded") == []


def test_burn_rate_missing_data_fires_an_absent_alert(db) -> None:
    q = FakeQuery()
    m = "paywatch_link_requests_total"
    q.counter(m, {"step": "pay", "outcome": "ok"}, lambda t: 10 * t, until=T0)
    rule = BurnRateRule("slo_pay_success", 0.999, step="pay", absent_for_s=900)
    eng = AlertEngine(db, q, [rule])
    run(eng, T0 - 120, T0 + 1200, 60)
    # the last sample is at T0; the look-back (at − 900, at] is empty from T0 + 900 on
    assert transitions(eng, "slo_pay_success_absent") == [("inactive", "firing", 900.0)]
    (absent,) = eng.active()
    assert absent.labels == {
        "alertname": "slo_pay_success_absent",
        "severity": "ticket",
        "step": "pay",
    }


# -- thresholds: lifecycle, missing data, dedup, errors --------------------------------------


def backlog_rule(**kw) -> ThresholdRule:
    kw.setdefault("for_s", 600)
    return ThresholdRule(
        "notification_backlog_high",
        QuerySpec("latest", "paywatch_notification_backlog"),
        ">",
        1000,
        **kw,
    )


def test_threshold_pending_then_firing_after_for_then_resolved(db) -> None:
    q = FakeQuery()
    # backlog 5000 from T0 to T0 + 1500, and a 2-minute blip at T0 + 3000
    high = lambda t: T0 <= t < T0 + 1500 or T0 + 3000 <= t < T0 + 3120  # noqa: E731
    q.gauge("paywatch_notification_backlog", {}, lambda t: 5000.0 if high(t) else 10.0)
    notifier = RecordingNotifier()
    eng = AlertEngine(db, q, [backlog_rule()], notifier=notifier, group_wait=0)
    run(eng, T0 - 120, T0 + 3600, 60)
    assert transitions(eng, "notification_backlog_high") == [
        ("inactive", "pending", 0.0),
        ("pending", "firing", 600.0),
        ("firing", "resolved", 1500.0),
        ("resolved", "pending", 3000.0),
        ("pending", "inactive", 3120.0),  # cleared before for_s: back to inactive
    ]
    assert [(n.status, n.at - T0) for n in notifier.sent] == [
        ("firing", 600.0),
        ("resolved", 1500.0),
    ]
    assert eng.active() == []


def test_threshold_missing_data_alert(db) -> None:
    q = FakeQuery()
    q.gauge("paywatch_notification_backlog", {}, lambda t: 3.0, until=T0)
    eng = AlertEngine(db, q, [backlog_rule(absent_for_s=600)])
    run(eng, T0, T0 + 900, 60)
    assert transitions(eng, "notification_backlog_high_absent") == [("inactive", "firing", 660.0)]


def test_callable_query_and_missing_data_as_for(db) -> None:
    data: list[Series] = [Series({"resource": "redis"}, 3.0)]
    rule = ThresholdRule(
        "breaker_open",
        lambda query, at: list(data),
        ">=",
        2,
        absent_for_s=120,
        promql="max by (resource) (x) >= 2",
    )
    eng = AlertEngine(db, FakeQuery(), [rule])
    eng.evaluate(now=T0)
    assert [a.rule for a in eng.active()] == ["breaker_open"]
    data.clear()
    eng.evaluate(now=T0 + 60)
    assert [(a.rule, a.state) for a in eng.active()] == [("breaker_open_absent", "pending")]
    eng.evaluate(now=T0 + 180)
    assert [(a.rule, a.state) for a in eng.active()] == [("breaker_open_absent", "firing")]


def test_fingerprint_dedup_across_evaluations(db) -> None:
    q = FakeQuery()
    q.gauge("paywatch_breaker_state", {"resource": "redis"}, lambda t: 2.0)
    rule = ThresholdRule(
        "breaker_open",
        QuerySpec("latest", "paywatch_breaker_state", by=("resource",)),
        ">=",
        2,
        severity="page",
    )
    notifier = RecordingNotifier()
    eng = AlertEngine(db, q, [rule], notifier=notifier, group_wait=0, repeat_interval=3600)
    run(eng, T0, T0 + 3000, 60)
    with db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(AlertState)).scalar() == 1
        assert conn.execute(sa.select(sa.func.count()).select_from(AlertHistory)).scalar() == 1
    assert len(notifier.sent) == 1
    (alert,) = eng.active()
    assert alert.fired_at == T0 and alert.last_eval == T0 + 3000
    run(eng, T0 + 3600, T0 + 3600, 60)  # repeat_interval elapsed: notified again
    assert len(notifier.sent) == 2
    assert notifier.sent[0].alerts[0].fingerprint == notifier.sent[1].alerts[0].fingerprint


def opens_at(since: float) -> Fn:
    return lambda t: 2.0 if t >= since else 0.0


def test_grouping_group_wait_and_group_interval(db) -> None:
    q = FakeQuery()
    opened = {"redis": T0, "db": T0 + 10, "channel": T0 + 100}
    for res, since in opened.items():
        q.gauge("paywatch_breaker_state", {"resource": res}, opens_at(since))
    rule = ThresholdRule(
        "breaker_open",
        QuerySpec("latest", "paywatch_breaker_state", by=("resource",)),
        ">=",
        2,
        severity="page",
    )
    notifier = RecordingNotifier()
    eng = AlertEngine(db, q, [rule], notifier=notifier, group_wait=30, group_interval=300)
    run(eng, T0, T0 + 420, 10)
    sent = [(n.at - T0, sorted(a.labels["resource"] for a in n.alerts)) for n in notifier.sent]
    # one group (rule, severity): waits 30 s, then carries both; the third joins 300 s later
    assert sent == [(30.0, ["db", "redis"]), (330.0, ["channel", "db", "redis"])]
    assert notifier.sent[0].group_labels == {"rule": "breaker_open", "severity": "page"}


def test_group_by_resource_splits_notifications(db) -> None:
    q = FakeQuery()
    for res in ("redis", "db"):
        q.gauge("paywatch_breaker_state", {"resource": res}, lambda t: 3.0)
    rule = ThresholdRule(
        "breaker_open", QuerySpec("latest", "paywatch_breaker_state", by=("resource",)), ">=", 2
    )
    notifier = RecordingNotifier()
    eng = AlertEngine(db, q, [rule], notifier=notifier, group_by=("rule", "resource"), group_wait=0)
    eng.evaluate(now=T0)
    assert sorted(len(n.alerts) for n in notifier.sent) == [1, 1]
    assert len({n.group_key for n in notifier.sent}) == 2


def test_a_failing_query_keeps_alerts_as_they_are(db) -> None:
    q = FakeQuery()
    q.gauge("paywatch_notification_backlog", {}, lambda t: 5000.0)
    eng = AlertEngine(db, q, [backlog_rule(for_s=0)])
    eng.evaluate(now=T0)
    q.fail = True
    result = eng.evaluate(now=T0 + 60)
    assert "notification_backlog_high" in result.errors
    assert [a.state for a in eng.active()] == ["firing"]  # not resolved by an outage


def test_duplicate_alert_names_are_refused(db) -> None:
    with pytest.raises(RuleError):
        AlertEngine(db, FakeQuery(), [backlog_rule(), backlog_rule()])


def test_state_and_history_survive_a_new_engine(db) -> None:
    """State lives in the database: a restarted engine continues the lifecycle."""
    q = FakeQuery()
    q.gauge("paywatch_notification_backlog", {}, lambda t: 5000.0 if t < T0 + 900 else 0.0)
    AlertEngine(db, q, [backlog_rule()]).evaluate(now=T0)
    again = AlertEngine(db, q, [backlog_rule()], clock=Clock(T0 + 600))
    again.evaluate()  # injected clock
    assert [(a.state, a.active_since, a.fired_at) for a in again.active()] == [
        ("firing", T0, T0 + 600)
    ]
    again.evaluate(now=T0 + 900)
    with db.connect() as conn:
        rows = conn.execute(
            sa.select(AlertHistory.from_state, AlertHistory.to_state, AlertHistory.at).order_by(
                AlertHistory.id
            )
        ).all()
        assert [tuple(r) for r in rows] == [
            ("inactive", "pending", T0),
            ("pending", "firing", T0 + 600),
            ("firing", "resolved", T0 + 900),
        ]
        notes = conn.execute(sa.select(sa.func.count()).select_from(AlertNotification)).scalar()
        assert notes == 0  # no notifier configured


def test_default_breaker_rule_pages_a_flapping_breaker_but_not_forced_closed(db) -> None:
    """A dead dependency's breaker cycles open -> half_open -> open every cool-down. The
    shipped rule must page after its minute; the state gauge alone (>= 2) never holds."""
    from prometheus_client import CollectorRegistry

    from alerts import default_rules
    from collectors import CoreMetrics, Sampler, TimeSeriesStore

    now = [T0]
    store = TimeSeriesStore(db, clock=lambda: now[0])
    metrics = CoreMetrics(CollectorRegistry())
    sampler = Sampler(metrics.registry, store, interval=5.0)
    rule = next(r for r in default_rules(["SANDBOX_A"]) if r.name == "breaker_open")
    eng = AlertEngine(db, store, [rule])
    metrics.set_breaker_state("channel.SANDBOX_A", "closed")
    metrics.set_breaker_state("channel.SANDBOX_B", "closed")
    metrics.breaker_changed("channel.SANDBOX_B", "closed", "forced_closed", "switch")
    for i in range(0, 24):  # 2 minutes: open for 5 s, probing for 5 s, again
        now[0] = T0 + 5 * i
        state = "open" if i % 2 == 0 else "half_open"
        metrics.breaker_changed("channel.SANDBOX_A", "x", state, "cool-down")
        sampler.sample_once(now[0])
        eng.evaluate(now=now[0])
    firing = [(a.rule, a.labels.get("resource"), a.state) for a in eng.active()]
    assert firing == [("breaker_open", "channel.SANDBOX_A", "firing")]
    old_style = store.latest("paywatch_breaker_state", at=now[0], by=("resource",), agg="max")
    # what a "state >= 2" rule sees on every other evaluation: half_open, the hold restarts
    assert {s.labels["resource"]: s.value for s in old_style}["channel.SANDBOX_A"] == 1.0
