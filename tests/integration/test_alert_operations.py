"""Alert operations (issue 22, point 7): acknowledgements stop repeat pages, inhibition
rules (database down suppresses the per-link pages, logged as inhibited), the history and
notification log readers. SQLite and PostgreSQL (the ``migrated_db`` fixture)."""

from __future__ import annotations

import json

import pytest
from alert_series import T0, FakeQuery, RecordingNotifier

from alerts import AlertEngine, QuerySpec, ThresholdRule
from alerts.acks import AckStore
from alerts.errors import AckError, RuleError, SilenceError
from alerts.history import notification_log, transitions
from alerts.inhibit import DEFAULT_INHIBIT_RULES, InhibitRule, inhibited, parse_matcher
from alerts.silences import SilenceStore, parse_duration, parse_matchers, parse_silence_matchers


@pytest.fixture
def db(migrated_db):
    return migrated_db.engine


def gauge_rule(name: str, metric: str, by: str, severity: str = "page") -> ThresholdRule:
    return ThresholdRule(
        name, QuerySpec("latest", metric, by=(by,)), ">=", 1, severity=severity, for_s=0
    )


def breakers(q: FakeQuery, until: dict[str, float] | None = None) -> ThresholdRule:
    for res in ("database", "redis"):
        end = (until or {}).get(res)
        q.gauge("breaker", {"resource": res}, lambda t, e=end: 1.0 if e is None or t < e else 0.0)
    return gauge_rule("breaker_open", "breaker", "resource")


# -- acknowledgements ---------------------------------------------------------------------
def test_ack_stops_repeat_pages_until_the_alert_fires_again(db) -> None:
    q = FakeQuery()
    q.gauge(
        "breaker",
        {"resource": "database"},
        lambda t: 1.0 if t < T0 + 1800 or t >= T0 + 2400 else 0.0,
    )
    q.gauge("breaker", {"resource": "redis"}, lambda t: 1.0)
    rule = gauge_rule("breaker_open", "breaker", "resource")
    notifier = RecordingNotifier()
    eng = AlertEngine(
        db,
        q,
        [rule],
        notifier=notifier,
        group_by=("rule", "resource"),
        group_wait=0,
        group_interval=60,
        repeat_interval=600,
    )
    eng.evaluate(now=T0)
    sent = lambda res: [  # noqa: E731
        (n.at - T0, n.status) for n in notifier.sent if n.group_labels["resource"] == res
    ]
    assert sent("database") == [(0, "firing")] and sent("redis") == [(0, "firing")]
    db_fp = next(a.fingerprint for a in eng.active() if a.labels["resource"] == "database")
    acks = AckStore(db)
    ack = acks.ack(db_fp[:12], "olive", "on it: failing over", now=T0 + 30)
    assert (ack.fingerprint, ack.rule, ack.creator) == (db_fp, "breaker_open", "olive")
    for t in range(60, 1800, 60):
        eng.evaluate(now=T0 + t)
    # redis (not acknowledged) is repeated every 10 min; the acknowledged database is not
    assert sent("redis") == [(0, "firing"), (600, "firing"), (1200, "firing")]
    assert sent("database") == [(0, "firing")]
    (alert,) = [a for a in eng.active() if a.fingerprint == db_fp]
    assert alert.state == "firing"  # an acknowledged alert stays firing
    acked = [r for r in notification_log(db, fingerprint=db_fp) if r.status == "acked"]
    assert acked and all(r.receiver == "ack" for r in acked)
    assert json.loads(acked[0].payload)[db_fp] == {"ack_id": ack.id, "by": "olive"}
    # it resolves: the resolved notice still goes out; firing again pages again
    eng.evaluate(now=T0 + 1800)
    assert sent("database")[-1] == (1800, "resolved")
    eng.evaluate(now=T0 + 2400)
    assert sent("database")[-1] == (2400, "firing")
    with pytest.raises(AckError, match="comment"):
        acks.ack(db_fp, "olive", "  ")
    with pytest.raises(AckError, match="creator"):
        acks.ack(db_fp, "", "x")
    with pytest.raises(AckError, match="no alert"):
        acks.ack("0" * 16, "olive", "x")


def test_ack_refuses_an_alert_that_is_not_firing(db) -> None:
    q = FakeQuery()
    eng = AlertEngine(db, q, [breakers(q, until={"redis": T0 + 60})], group_wait=0)
    eng.evaluate(now=T0)
    eng.evaluate(now=T0 + 60)
    fp = next(t.fingerprint for t in transitions(db) if t.to_state == "resolved")
    with pytest.raises(AckError, match="resolved, not firing"):
        AckStore(db).ack(fp, "olive", "late")


# -- inhibition ---------------------------------------------------------------------------
def test_database_down_inhibits_the_per_link_pages_and_logs_them(db) -> None:
    q = FakeQuery()
    breaker = breakers(q, until={"database": T0 + 600})
    for step in ("pay", "trade_create"):
        q.gauge("link_errors", {"step": step}, lambda t: 1.0)
    links = gauge_rule("slo_link_success", "link_errors", "step")
    tickets = gauge_rule("slo_link_ticket", "link_errors", "step", severity="ticket")
    notifier = RecordingNotifier()
    eng = AlertEngine(db, q, [breaker, links, tickets], notifier=notifier, group_wait=0)
    eng.evaluate(now=T0)
    notified = {
        (a.rule, a.labels.get("resource", a.labels.get("step")))
        for n in notifier.sent
        for a in n.alerts
    }
    # the database page and the redis page go out, tickets too; the link pages do not
    assert notified == {
        ("breaker_open", "database"),
        ("breaker_open", "redis"),
        ("slo_link_ticket", "pay"),
        ("slo_link_ticket", "trade_create"),
    }
    firing = {a.labels.get("step"): a for a in eng.active() if a.rule == "slo_link_success"}
    assert {a.state for a in firing.values()} == {"firing"}  # inhibited, still firing
    source = next(a for a in eng.active() if a.labels.get("resource") == "database")
    (log,) = [r for r in notification_log(db) if r.status == "inhibited"]
    assert (log.receiver, sorted(log.fingerprints)) == (
        "inhibit",
        sorted(a.fingerprint for a in firing.values()),
    )
    why = json.loads(log.payload)[firing["pay"].fingerprint]
    assert why == {
        "rule": "database_breaker_open",
        "source": source.fingerprint,
        "by": "breaker_open",
    }
    # the history of one inhibited alert shows it
    assert [r.status for r in notification_log(db, fingerprint=firing["pay"].fingerprint)] == [
        "inhibited"
    ]
    # the database comes back: the still-firing link pages are notified now
    eng.evaluate(now=T0 + 600)
    last = [a.labels.get("step") for a in notifier.sent[-1].alerts]
    assert notifier.sent[-1].status == "firing" and sorted(last) == ["pay", "trade_create"]


def test_an_inhibit_rule_needs_equal_labels_and_never_inhibits_its_source() -> None:
    from alerts.model import Alert

    def alert(rule: str, **labels: str) -> Alert:
        sev = labels.pop("severity", "page")
        return Alert(rule + str(labels), rule, labels, {}, sev, "firing", 1, T0, T0, None, T0)

    rule = InhibitRule.of("db", ["alertname=db_down"], ["severity=page"], equal=["env"])
    src = alert("db_down", env="prod")
    assert rule.inhibits(src, alert("slo_pay_success", env="prod", step="pay"))
    assert not rule.inhibits(src, alert("slo_pay_success", env="test", step="pay"))
    assert not rule.inhibits(src, src)
    default = DEFAULT_INHIBIT_RULES[0]
    dbb = alert("breaker_open", resource="database")
    assert default.inhibits(dbb, alert("slo_pay_success", step="pay"))
    assert default.inhibits(dbb, alert("pay_latency_p99_high", pay_org="A"))
    assert not default.inhibits(dbb, alert("breaker_open", resource="redis"))
    assert not default.inhibits(alert("breaker_open", resource="redis"), alert("slo_x", step="p"))
    # a channel down: its breaker's and its channel SLO's pages held, another org's not
    down = alert("channel_down", pay_org="SANDBOX_A", resource="channel.SANDBOX_A")
    same_org = [
        alert("breaker_open", resource="channel.SANDBOX_A"),
        alert("slo_channel_call_success_sandbox_a", pay_org="SANDBOX_A"),
    ]
    other_org = [
        alert("breaker_open", resource="channel.SANDBOX_B"),
        alert("slo_channel_call_success_sandbox_b", pay_org="SANDBOX_B"),
    ]
    held = inhibited([down, *same_org, *other_org], DEFAULT_INHIBIT_RULES)
    assert set(held) == {a.fingerprint for a in same_org}
    assert str(parse_matcher('step=~"p.+"')) == "step=~p.+"
    assert parse_matcher("env!=test").matches({"env": "prod"})
    for bad in ("nope", "1x=y", "a=~("):
        with pytest.raises(RuleError):
            parse_matcher(bad)
    with pytest.raises(RuleError):
        InhibitRule("x", (), (parse_matcher("a=b"),))


# -- silences from text -------------------------------------------------------------------
def test_silence_matchers_and_durations_from_text() -> None:
    assert parse_matchers(["alertname=breaker_open", ' resource = "redis" ']) == {
        "alertname": "breaker_open",
        "resource": "redis",
    }
    for bad, msg in (
        (["a!=b"], "equality"),
        (["a=~x"], "equality"),
        (["a"], "equality"),
        ([], "at least one"),
        (["a="], "non-empty"),
        (["1a=b"], "label"),
    ):
        with pytest.raises(SilenceError, match=msg):
            parse_matchers(bad)
    assert [parse_duration(x) for x in ("90", "30m", "2h", "1d")] == [90, 1800, 7200, 86400]
    for bad in ("", "0", "-1h", "2w", "soon"):
        with pytest.raises(SilenceError):
            parse_duration(bad)


def test_silences_with_regex_and_negative_matchers(db) -> None:
    eq, extra = parse_silence_matchers(["alertname=breaker_open", "resource=~red.*|db"])
    assert eq == {"alertname": "breaker_open"} and [str(m) for m in extra] == ["resource=~red.*|db"]
    store = SilenceStore(db, clock=lambda: T0)
    made = store.create(eq, "olive", "redis and db work", T0 + 3600, extra=extra)
    again = store.get(made.id)
    assert again == made and again.matchers_text() == [
        "alertname=breaker_open",
        "resource=~red.*|db",
    ]
    base = {"alertname": "breaker_open"}
    assert store.matches({**base, "resource": "redis"}, now=T0 + 1) == made
    assert store.matches({**base, "resource": "db"}, now=T0 + 1) == made
    assert store.matches({**base, "resource": "xdb"}, now=T0 + 1) is None  # anchored
    assert store.matches({"alertname": "other", "resource": "db"}, now=T0 + 1) is None
    _, only_not = parse_silence_matchers(["env!=test"])
    with pytest.raises(SilenceError, match="absent label"):
        store.create({}, "olive", "everything but test", T0 + 60, extra=only_not)
    _, env = parse_silence_matchers(["env!~test|dev", "resource=~.+"])
    wide = store.create({}, "olive", "prod resources", T0 + 60, extra=env)
    assert wide.matches({"env": "prod", "resource": "db"})
    assert not wide.matches({"env": "dev", "resource": "db"})
    for bad in (["resource=~("], ["resource="], ["-x=1"]):
        with pytest.raises(SilenceError):
            parse_silence_matchers(bad)
