"""``channel_down`` in paywatch's own engine over the real time-series store (SQLite and
PostgreSQL): the shipped rule, fed by ``CoreMetrics`` through the sampler every 5 s and
evaluated every 5 s, as the worker does (a 10 s job; here finer, to time the rule itself).

A hard outage of SANDBOX_A (every call fails) pages within a minute on the ratio alone;
the page holds while the breaker is open and calls stop (the ratio has no data), and
resolves when the breaker closes and calls succeed again. A 5 % error rate (SANDBOX_B) and
2 failures out of 3 calls a minute (SANDBOX_C, under the 10-call guard) never page. The
same scenario runs in Prometheus's rule engine in ``deploy/prometheus/paywatch-rules.test.yml``.
"""

from __future__ import annotations

from alert_series import T0, db  # noqa: F401 - fixture
from prometheus_client import CollectorRegistry

from alerts import AlertEngine
from alerts.defaults import channel_down_rule, default_rules
from collectors import CoreMetrics, Sampler, TimeSeriesStore

STEP = 5.0


class Scenario:
    """Channel calls per 5 s step and breaker changes, sampled and evaluated each step."""

    def __init__(self, db) -> None:  # noqa: F811 - the fixture's engine
        self.now = T0
        self.store = TimeSeriesStore(db, clock=lambda: self.now)
        self.metrics = CoreMetrics(CollectorRegistry())
        self.sampler = Sampler(self.metrics.registry, self.store, interval=STEP)
        self.engine = AlertEngine(db, self.store, [channel_down_rule()])
        self.tick = 0
        for org in ("SANDBOX_A", "SANDBOX_B", "SANDBOX_C"):
            self.metrics.set_breaker_state(f"channel.{org}", "closed")

    def calls(self, org: str, ok: int, error: int) -> None:
        for _ in range(ok):
            self.metrics.observe("channel_call", "ok", "", org, seconds=0.1)
        for _ in range(error):
            self.metrics.observe("channel_call", "error", "", org, seconds=0.1)

    def step(self, a_ok: int, a_error: int, a_timeout: int = 0) -> list[tuple[str, str, str]]:
        """One 5 s step: SANDBOX_A as given, B at 5 % errors of 4 calls/s, C 3 calls a
        minute of which 2 fail; returns the active (rule, pay_org, state) after it."""
        self.calls("SANDBOX_A", a_ok, a_error)
        for _ in range(a_timeout):
            self.metrics.observe("channel_call", "timeout", "", "SANDBOX_A", seconds=3.0)
        self.calls("SANDBOX_B", 19 if self.tick % 2 else 20, 1 if self.tick % 2 else 0)
        if self.tick % 4 == 0:  # every 20 s: ok, error, error
            self.calls("SANDBOX_C", *((1, 0) if self.tick % 12 == 0 else (0, 1)))
        self.tick += 1
        self.now += STEP
        self.sampler.sample_once(self.now)
        self.engine.evaluate(now=self.now)
        return [(a.rule, a.labels.get("pay_org", ""), a.state) for a in self.engine.active()]


def test_a_hard_outage_pages_within_a_minute_holds_on_the_breaker_and_resolves(db) -> None:  # noqa: F811
    s = Scenario(db)
    for _ in range(36):  # 3 healthy minutes, 2 calls/s
        assert s.step(10, 0) == []
    flipped = s.now
    paged = None
    while paged is None and s.now - flipped < 120:
        if s.step(0, 10):
            paged = s.now - flipped
    print(f"paged {paged} s after the flip")
    assert paged is not None and paged <= 40.0, paged  # half the minute failed, at most
    (page,) = s.engine.active()
    assert (page.rule, page.severity, page.state) == ("channel_down", "page", "firing")
    assert page.labels["pay_org"] == "SANDBOX_A"
    assert page.labels["resource"] == "channel.SANDBOX_A"
    assert page.annotations["plan"] == "channel SANDBOX_A outage"
    assert page.annotations["runbook"] == "docs/runbook.md#channel_down"

    # the breaker opens: calls stop, the last minute empties, the breaker holds the page
    s.metrics.breaker_changed("channel.SANDBOX_A", "closed", "open", "failures")
    for i in range(36):  # 3 minutes, cycling open <-> half_open with a failed probe
        state = "half_open" if i % 2 else "open"
        s.metrics.breaker_changed("channel.SANDBOX_A", "x", state, "cool-down")
        assert s.step(0, 1 if state == "half_open" and i % 6 == 1 else 0) == [
            ("channel_down", "SANDBOX_A", "firing")
        ], i

    # the channel is back: probes pass, the breaker closes, calls succeed
    s.metrics.breaker_changed("channel.SANDBOX_A", "half_open", "closed", "probes passed")
    assert s.step(10, 0) == []
    for _ in range(24):
        assert s.step(10, 0) == []


def test_a_low_error_rate_and_a_quiet_night_never_page(db) -> None:  # noqa: F811
    s = Scenario(db)
    for _ in range(60):  # 5 minutes: SANDBOX_A healthy, B at 5 %, C 2 of 3 failing
        assert s.step(10, 0) == []


def test_the_rule_is_shipped_once_and_exported_with_the_same_judgement() -> None:
    rules = [r for r in default_rules(("SANDBOX_A", "SANDBOX_B")) if r.name == "channel_down"]
    assert len(rules) == 1
    (item,) = rules[0].to_prometheus()
    assert "for" not in item and item["labels"] == {"severity": "page"}
    expr = item["expr"]
    assert ">= 0.5" in expr and ">= 10" in expr and "[1m]" in expr
    assert 'paywatch_breaker_tripped{resource=~"channel\\\\..+"}) >= 1' in expr


def test_calls_that_time_out_count_as_failed_as_in_the_channel_slo(db) -> None:  # noqa: F811
    s = Scenario(db)
    for _ in range(24):
        assert s.step(10, 0) == []
    flipped, paged = s.now, None
    while paged is None and s.now - flipped < 120:
        if s.step(0, 4, 6):  # 40 % errors and 60 % timeouts: neither half alone
            paged = s.now - flipped
    assert paged is not None and paged <= 40.0, paged
    assert [(a.rule, a.labels["pay_org"]) for a in s.engine.active()] == [
        ("channel_down", "SANDBOX_A")
    ]
