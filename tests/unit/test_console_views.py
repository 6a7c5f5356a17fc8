"""Console read functions and chart builders, without Streamlit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collectors.query import MetricsQuery, Series
from console.auth import (
    ROLE_PAGES,
    can,
    check_password,
    hash_password,
    oidc_configured,
    oidc_role,
    page_allowed,
)
from console.views.depmap import lint_rows
from console.views.depmap_live import breaker_states
from console.views.overview import (
    STEPS,
    channel_health,
    guard_fallbacks,
    health,
    link_chart,
    link_series,
    link_stats,
    overview,
    sparkline,
)
from console.views.switches import (
    approvable,
    audit_rows,
    knob_request,
    preview_switch,
    switch_rows,
    switch_targets,
)
from stability.depmap import DependencyMap, EdgeSpec, ResourceSpec
from stability.limits import LimitRule
from stability.switches import SwitchRecord

NOW = 1_800_000_000.0


class FakeQuery(MetricsQuery):
    """Canned answers keyed by (method, metric, frozen match)."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def rate(self, metric, *, window, at, match=None, by=()):
        self.calls.append(("rate", metric, dict(match or {}), by))
        m = dict(match or {})
        if metric.startswith("paywatch_guard"):
            if m.get("outcome") == "fallback":
                return [Series({"resource": "coupon"}, 0.1)]
            return [Series({"resource": "risk"}, 0.02)]
        if by == ("step",):
            return [Series({"step": "pay"}, 10.0), Series({"step": "refund"}, 1.0)]
        return [Series({"pay_org": "SANDBOX_A"}, 4.0), Series({"pay_org": "EXTRA"}, 1.0)]

    def count(self, metric, *, window, at, match=None, by=()):
        """The canned rates' events over the window (a young series is not modelled)."""
        return [
            Series(s.labels, s.value * window)
            for s in self.rate(metric, window=window, at=at, match=match, by=by)
        ]

    def ratio(self, numerator, denominator, *, window, at, match_num=None, match_den=None, by=()):
        outcome = (match_num or {}).get("outcome")
        key = by[0]
        if key == "step":
            vals = {  # pay: 10 % refused (rejected), neither good nor bad
                "ok": {"pay": 0.77, "refund": None},
                "pending": {"pay": 0.1, "refund": None},
                "error": {"pay": 0.01, "refund": None},
                "timeout": {"pay": 0.02, "refund": None},
            }
            return [Series({"step": k}, v) for k, v in vals[outcome].items()]
        vals = {
            "ok": {"SANDBOX_A": 0.5},
            "pending": {},
            "error": {"SANDBOX_A": 0.0},
            "timeout": {"SANDBOX_A": 0.5},
        }
        return [Series({"pay_org": k}, v) for k, v in vals[outcome].items()]

    def quantile(self, q, histogram, *, window, at, match=None, by=()):
        return [Series({by[0]: "pay" if by == ("step",) else "SANDBOX_A"}, 0.25)]

    def latest(self, metric, *, at, match=None, by=(), max_age=300.0, agg="sum"):
        return []

    def range(self, metric_kind, metric, *, start, end, step, match=None, by=(), window=300.0):
        self.calls.append(("range", metric_kind, metric, dict(match or {}), step))
        ts = [start, start + step]
        if metric_kind == "p99":
            return {(("pay_org", "A"),): [(t, 0.3) for t in ts]}
        if (match or {}).get("outcome") == "timeout":
            return {}
        return {
            (("pay_org", "A"),): [(ts[0], 1.0), (ts[1], None)],
            (("pay_org", "B"),): [(ts[0], 2.0), (ts[1], 3.0)],
        }


def test_health_thresholds():
    assert health(None) == "unknown"
    assert health(0.999) == "ok"
    assert health(0.97) == "warn"
    assert health(0.5) == "bad"


def test_link_stats_every_step_with_rate_success_p99():
    rows = {r["step"]: r for r in link_stats(FakeQuery(), NOW)}
    assert list(rows) == list(STEPS)
    assert rows["pay"]["rate"] == 10.0
    # 87 % good, 3 % bad, 10 % refused: the refusals count neither way, as in the SLO
    assert rows["pay"]["success"] == pytest.approx(0.87 / 0.90)
    assert rows["pay"]["p99_s"] == 0.25
    assert rows["pay"]["health"] == "warn"
    assert rows["refund"]["success"] is None and rows["refund"]["health"] == "unknown"
    assert rows["trade_create"] == {
        "step": "trade_create",
        "rate": None,
        "success": None,
        "p99_s": None,
        "health": "unknown",
    }


def test_channel_health_per_pay_org_includes_configured_and_seen():
    q = FakeQuery()
    rows = channel_health(q, NOW, ["SANDBOX_A", "SANDBOX_B"])
    assert [r["pay_org"] for r in rows] == ["SANDBOX_A", "SANDBOX_B", "EXTRA"]
    a = rows[0]
    assert (a["rate"], a["success"], a["p99_s"], a["health"]) == (4.0, 0.5, 0.25, "bad")
    assert rows[1]["health"] == "unknown"
    assert all(c[2].get("step") == "channel_call" for c in q.calls if c[0] == "rate")


def test_guard_fallbacks_counts_over_window():
    rows = guard_fallbacks(FakeQuery(), NOW, window=100)
    assert rows == [
        {"resource": "coupon", "degraded": 0.0, "fallback": 10.0},
        {"resource": "risk", "degraded": 2.0, "fallback": 0.0},
    ]


def test_overview_bundles_everything():
    data = overview(FakeQuery(), NOW, pay_orgs=("SANDBOX_A",), window=60)
    assert set(data) == {"at", "window", "links", "channels", "guard"}
    assert data["window"] == 60 and len(data["links"]) == len(STEPS)


def test_link_series_sums_groups_and_filters_pay_org():
    q = FakeQuery()
    s = link_series(q, "pay", start=NOW - 600, end=NOW, points=61, pay_org="A")
    assert s["rate"] == [(NOW - 600, 3.0), (NOW - 590, 3.0)]
    assert s["failed"] == [(NOW - 600, 3.0), (NOW - 590, 3.0)]
    assert s["p99"] == [(NOW - 600, 0.3), (NOW - 590, 0.3)]
    ranges = [c for c in q.calls if c[0] == "range"]
    assert all(c[3]["step"] == "pay" and c[3]["pay_org"] == "A" for c in ranges)
    assert ranges[0][4] == 10.0


def test_charts_are_plotly_figures():
    spark = sparkline([(1.0, 2.0), (2.0, None)])
    assert spark.data[0].y == (2.0, None) and spark.layout.height == 60
    fig = link_chart({"rate": [(NOW, 1.0)], "failed": [], "p99": [(NOW, 0.2)]}, title="pay")
    assert [t.name for t in fig.data] == ["req/s", "failed/s", "p99 s"]
    assert fig.data[2].yaxis == "y2"


def _dmap() -> DependencyMap:
    res = [
        ResourceSpec("pay", "link", core_link=True),
        ResourceSpec("risk", "service"),
        ResourceSpec("coupon", "service"),
        ResourceSpec("db", "database"),
    ]
    edges = [
        EdgeSpec("pay", "risk", "strong", 300),
        EdgeSpec("pay", "coupon", "weak", 200, fallback="no coupon"),
        EdgeSpec("risk", "db", "strong", 300),
    ]
    return DependencyMap(res, edges)


def test_breaker_states_most_severe_state_of_the_processes_wins():
    rows = [
        {"resource": "risk", "state": "closed/half_open/open"},
        {"resource": "db", "state": "forced_open"},
        {"resource": "coupon", "state": None},
    ]
    assert breaker_states(rows) == {"risk": "open", "db": "forced_open", "coupon": "closed"}


def test_lint_rows():
    rows = lint_rows(_dmap())
    assert [(r["caller"], r["callee"]) for r in rows] == [("pay", "risk")]
    assert "300 ms" in rows[0]["message"]


def _rec(i: int, status: str, actor: str = "otto", **kw) -> SwitchRecord:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    base = dict(
        id=i,
        kind="degrade",
        target="coupon",
        params={},
        reason="r",
        actor=actor,
        status=status,
        requires_approval=status == "pending",
        approved_by=None,
        created_at=now,
        expires_at=now + timedelta(hours=1),
    )
    return SwitchRecord(**{**base, **kw})


def test_switch_rows_and_approvable():
    now = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    recs = [
        _rec(1, "active"),
        _rec(2, "pending"),
        _rec(3, "pending", actor="olga"),
        _rec(4, "active", params={"state": "forced_open"}, kind="force_breaker"),
    ]
    rows = switch_rows(recs, now)
    assert [r["in_force"] for r in rows] == [True, False, False, True]
    assert rows[3]["params"] == '{"state": "forced_open"}'
    assert [r.id for r in approvable(recs, "otto", now)] == [3]
    assert [r.id for r in approvable(recs, "olga", now)] == [2]
    late = datetime(2026, 1, 1, 2, tzinfo=UTC)
    assert approvable(recs, "ada", late) == []


def test_audit_rows_serialises_before_after():
    e = {
        "id": 1,
        "at": "t",
        "actor": "a",
        "action": "apply",
        "target": "coupon",
        "switch_id": 3,
        "reason": "r",
        "before": None,
        "after": {"status": "active"},
        "version": 2,
    }
    row = audit_rows([e])[0]
    assert row["before"] == "null" and row["after"] == '{"status": "active"}'


def test_preview_switch_dry_run():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rules = [LimitRule("risk.total", "risk", rate=10, burst=10)]
    p = preview_switch(
        _dmap(),
        rules,
        "degrade",
        "coupon",
        reason="x",
        expires_at=now + timedelta(hours=1),
        now=now,
    )
    assert (p.needs_approval, p.problems, p.degrades, p.fails) == (False, [], ["pay"], [])
    p = preview_switch(_dmap(), rules, "degrade", "risk", now=now)
    assert p.needs_approval and p.strong_dependency and p.fails == ["pay"]
    assert p.problems == ["a reason is required", "an expiry is required"]
    p = preview_switch(
        _dmap(),
        rules,
        "set_limit",
        "risk.total",
        reason="x",
        expires_at=now + timedelta(days=8),
        now=now,
    )
    assert p.needs_approval and p.problems == ["expiry must be in the future and within 7 days"]
    p = preview_switch(
        _dmap(),
        rules,
        "force_breaker",
        "coupon",
        reason="x",
        expires_at=now + timedelta(hours=1),
        now=now,
    )
    assert p.problems == ["force_breaker needs state forced_open or forced_closed"]
    assert switch_targets(_dmap(), rules, "set_limit") == ["risk.total"]
    # only switches that act: called resources (a core link no one calls is not offered)
    assert switch_targets(_dmap(), rules, "degrade") == ["coupon", "db", "risk"]


def test_knob_request():
    url, headers, body = knob_request("http://sb:8100/", "SANDBOX A", {"error_rate": 0.5}, "tok")
    assert url == "http://sb:8100/admin/knobs/SANDBOX%20A"
    assert headers == {"X-Sandbox-Admin": "tok"} and body == {"error_rate": 0.5}


def test_roles_and_pages():
    assert can("viewer", "oncall") and not can("viewer", "sre")
    assert not can("viewer", "switch.propose")
    assert can("operator", "switch.propose") and can("operator", "switch.approve")
    assert can("operator", "drill.knobs") and not can("operator", "user.manage")
    assert can("admin", "user.manage") and can("admin", "mgr")
    assert not can(None, "view") and not can("root", "view")
    assert page_allowed("viewer", "oncall_overview.py")
    assert not page_allowed("viewer", "sre_switches.py")
    assert page_allowed("manager", "mgr_funds.py") and not page_allowed("operator", "mgr_x.py")
    assert set(ROLE_PAGES) == {"viewer", "operator", "manager", "admin"}


def test_password_hashing_salted_and_checked():
    a, b = hash_password("secret-pass"), hash_password("secret-pass")
    assert a != b and a.startswith("scrypt$")
    assert check_password("secret-pass", a) and not check_password("other", a)
    assert not check_password("secret-pass", "garbage")


def test_oidc_only_when_configured():
    assert not oidc_configured({})
    assert oidc_configured({"auth": {"client_id": "x"}})
    assert oidc_configured({"auth": {"google": {"client_id": "x"}}})

    class Broken:
        def get(self, key):
            raise FileNotFoundError

    assert not oidc_configured(Broken())
    assert oidc_role("a@x", {"a@x": "operator"}) == "operator"
    assert oidc_role("b@x", {"a@x": "operator"}) == "viewer"
