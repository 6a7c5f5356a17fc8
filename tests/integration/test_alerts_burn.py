"""The alert engine's burn-rate rules on SQLite and PostgreSQL, driven by synthetic series and
an injected clock: fast and slow burn, the minimum-traffic guard, missing data (series in
``alert_series``).
"""

from __future__ import annotations

import pytest
from alert_series import (
    T0,
    FakeQuery,
    RecordingNotifier,
    db,  # noqa: F401 - fixture
    pay_traffic,
    ramp,
    run,
    transitions,
)

from alerts import AlertEngine, BurnRateRule

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
