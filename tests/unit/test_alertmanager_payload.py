"""The Alertmanager API v2 payload: labels, links, endsAt windows (no network)."""

from __future__ import annotations

import dataclasses
import re
from datetime import datetime
from pathlib import Path

import pytest

from alerts import Alert, AlertmanagerNotifier, default_rules
from alerts.alertmanager import runbook_anchor

T0 = 1_700_000_000.0
RUNBOOK = Path(__file__).resolve().parents[2] / "docs" / "runbook.md"


def alert(state: str = "firing", rule: str = "breaker_open", **notes: str) -> Alert:
    labels = {"alertname": rule, "severity": "page", "resource": "redis", "env": "metric's"}
    return Alert(
        "ab" * 32,
        rule,
        labels,
        {"summary": "breaker for redis is open", **notes},
        "page",
        state,
        2.0,
        T0,
        T0 + 60,
        T0 + 600 if state == "resolved" else None,
        T0 + 600,
    )


def ts(text: str) -> float:
    assert text.endswith("Z")
    return datetime.fromisoformat(text).timestamp()


def notifier(**kw) -> AlertmanagerNotifier:
    return AlertmanagerNotifier("http://am:9093/", **kw)


def test_firing_alert_ends_four_resend_intervals_ahead_with_routing_labels_and_links() -> None:
    am = notifier(
        console_url="https://console.example/",
        runbook_base_url="https://git.example/paywatch/docs/runbook.md",
        service="paywatch-eu",
        env="prod",
        resend_interval=60,
    )
    item = am.item(alert(runbook="docs/runbook.md#breaker_open"), T0 + 900)
    assert item["labels"] == {
        "alertname": "breaker_open",
        "severity": "page",
        "resource": "redis",
        "service": "paywatch-eu",
        "env": "prod",  # stable: the setting wins over a metric's label
    }
    assert ts(item["startsAt"]) == T0 + 60
    assert ts(item["endsAt"]) == T0 + 900 + 240
    assert item["generatorURL"] == "https://console.example/oncall_alerts?alert=" + "ab" * 32
    notes = item["annotations"]
    assert notes["runbook_url"] == "https://git.example/paywatch/docs/runbook.md#breaker_open"
    assert notes["summary"] == "breaker for redis is open"


def test_resolved_alert_ends_at_its_end_and_window_is_configurable() -> None:
    am = notifier(resend_interval=2, resolve_window=10)
    assert ts(am.item(alert("resolved"), T0 + 5000)["endsAt"]) == T0 + 600
    assert ts(am.item(alert(), T0 + 5000)["endsAt"]) == T0 + 5010
    # a resolved row without an end (not expected) ends now, never before it started
    odd = dataclasses.replace(alert("resolved"), resolved_at=None)
    assert ts(am.item(odd, T0 + 700)["endsAt"]) == T0 + 700


def test_runbook_url_defaults_to_the_local_runbook_and_falls_back_to_the_alert_name() -> None:
    am = notifier()
    url = am.item(alert(rule="slo_pay_success_absent"), T0)["annotations"]["runbook_url"]
    assert url == RUNBOOK.as_uri() + "#slo_pay_success_absent"
    assert am.runbook_url(alert(runbook="docs/runbook.md#x")) == RUNBOOK.as_uri() + "#x"


def test_bad_windows_are_refused() -> None:
    with pytest.raises(ValueError):
        notifier(resend_interval=0)
    with pytest.raises(ValueError):
        notifier(resend_interval=60, resolve_window=30)


def github_slug(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation but ``-`` and ``_`` dropped,
    spaces to ``-``."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def runbook_slugs() -> set[str]:
    slugs: set[str] = set()
    fenced = False
    for line in RUNBOOK.read_text(encoding="utf-8").splitlines():
        if line.startswith("```"):
            fenced = not fenced
        m = None if fenced else re.match(r"#{1,6} (.+)", line)
        if m:
            slugs.add(github_slug(m.group(1)))
    return slugs


def test_every_default_alert_links_to_a_runbook_heading_that_exists() -> None:
    slugs = runbook_slugs()
    assert "slo_channel_call_success_org" in slugs  # `<org>` dropped as GitHub does
    missing = []
    for rule in default_rules(("SANDBOX_A", "SANDBOX_B")):
        notes = dict(getattr(rule, "annotations", {}) or {})
        for name in rule.alert_names():
            own = notes if not name.endswith("_absent") or name == rule.name else {}
            a = alert(rule=name, **{k: v for k, v in own.items() if k == "runbook"})
            anchor = runbook_anchor(a)
            if anchor not in slugs:
                missing.append((name, anchor))
            assert notifier().runbook_url(a).startswith("file:///")
    assert missing == []
